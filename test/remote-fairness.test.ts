/**
 * The BullMQ backend honours priorities, keys and shared runs on the executor's side:
 * with `maxSegmentsInFlight`, segments wait in the executor and go to Redis highest
 * priority first, keys in turn; runs with the same `dedupeKey` are one run. A real
 * redis-server and a real worker process; the order is read from what the nodes wrote.
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bullmqBackend, type NodeDefinition, type ProgressEvent } from '../src/index';
import { fixture, useExecutors } from './helpers';
import { startCluster } from './remote-cluster';
import { FIXTURES, RedisServer, WorkerProcess, requireRedisServer } from './remote-env';

const GATE = fixture('file-gate.js');

describe('BullMQ backend: fair scheduling on the executor side (redis-server, a worker process)', function () {
  this.timeout(120_000);
  let redis: RedisServer | undefined;
  const workers: WorkerProcess[] = [];
  let dir: string;
  const newExecutor = useExecutors();

  before(async function () {
    requireRedisServer(this);
    redis = await RedisServer.start();
    dir = mkdtempSync(join(tmpdir(), 'lukhas-remote-fair-'));
  });

  afterEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.stop()));
  });

  after(async () => {
    await redis?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a bad maxSegmentsInFlight, naming it', () => {
    for (const bad of [0, 1.5, '8', -Infinity]) {
      expect(() => bullmqBackend({ connection: redis!.url, maxSegmentsInFlight: bad as number })).to.throw(RangeError, /`maxSegmentsInFlight`/);
    }
  });

  it('sends waiting segments by priority, then keys in turn; runs with one dedupeKey run once', async () => {
    const args = ['--threads', '1', '--module-root', FIXTURES];
    const { executor } = await startCluster(redis!.url, `fair-${process.pid}`, 1, args, workers, newExecutor, {}, { maxSegmentsInFlight: 1 });
    const gate = join(dir, 'gate');
    const log = join(dir, 'log');
    writeFileSync(log, '');
    const record = (tag: number): NodeDefinition[] => [{ id: 'record', module: GATE, export: 'record', params: { log, tag } }];
    let held!: (event: ProgressEvent) => void;
    const holding = new Promise<ProgressEvent>((resolve) => (held = resolve));
    const first = executor.executePipeline({ nodes: [{ id: 'hold', module: GATE, export: 'hold', params: { gate } }], onProgress: held });
    await holding;
    // The worker process holds the one segment allowed in Redis; these wait in the executor.
    const a = [0, 1, 2, 3, 4].map((tag) => executor.executePipeline({ nodes: record(tag), concurrencyKey: 'A' }));
    const b = [10, 11].map((tag) => executor.executePipeline({ nodes: record(tag), concurrencyKey: 'B' }));
    const shared = [1, 2].map(() => executor.executePipeline({ nodes: record(99), dedupeKey: 'the-same' }));
    const urgent = executor.executePipeline({ nodes: record(50), concurrencyKey: 'A', priority: 10 });
    await new Promise(setImmediate);
    expect(executor.stats()).to.include({ tasksQueued: 9, sharedRuns: 1, runsJoined: 1 });
    writeFileSync(gate, '');
    const results = await Promise.all([first, ...a, ...b, ...shared, urgent]);
    const order = readFileSync(log, 'utf8').trim().split('\n').map(Number);
    // The urgent run first; then A, B and the keyless shared run take turns; then A alone.
    expect(order).to.deep.equal([50, 0, 10, 99, 1, 11, 2, 3, 4]);
    expect(results.slice(-3)).to.deep.equal([99, 99, 50]);
    expect(executor.stats().runs.success).to.equal(10);
  });
});
