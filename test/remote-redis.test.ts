/**
 * The BullMQ backend when redis-server itself goes: killed and restarted without
 * persistence (the jobs of the runs in flight are gone), and restarted mid-load with an
 * append-only file synced every second (nothing is lost). Each test has a redis-server
 * of its own, and real worker processes.
 *
 * Skipped, saying why, when redis-server cannot be started here (a failure with
 * LUKHAS_REQUIRE_REDIS=1).
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackendUnavailableException, bullmqBackend, type NodeDefinition } from '../src/index';
import { LOST_BOUND_MS } from '../src/remote/sweep';
import { fixture, useExecutors } from './helpers';
import { FIXTURES, RedisServer, SECRET, WorkerProcess, executions, requireRedisServer, until } from './remote-env';

const timed = fixture('timed.js');
/**
 * Runs whose jobs Redis lost reject within this of its restart: the clients' reconnection
 * (ioredis waits up to 2 s between tries), then `LOST_BOUND_MS`, and a second of slack.
 */
const REJECTED_WITHIN_MS = 2_000 + LOST_BOUND_MS + 1_000;

describe('BullMQ backend when Redis restarts (redis-server, worker processes)', function () {
  this.timeout(120_000);
  let redis: RedisServer | undefined;
  const workers: WorkerProcess[] = [];
  let dir: string;
  const newExecutor = useExecutors();

  before(function () {
    requireRedisServer(this);
    dir = mkdtempSync(join(tmpdir(), 'lukhas-redis-restart-'));
  });

  afterEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.stop()));
    await redis?.stop();
    redis = undefined;
  });

  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  async function cluster(aof: boolean) {
    redis = await RedisServer.start(undefined, aof);
    const started = await Promise.all([1, 2].map(() => WorkerProcess.start(redis!.url, ['--threads', '2', '--module-root', FIXTURES], { LUKHAS_SECRET: SECRET })));
    workers.push(...started);
    const executor = newExecutor({ timeouts: { pipelineTimeoutMs: 60_000 }, backend: bullmqBackend({ connection: redis.url, secret: SECRET, log: () => {} }) });
    await executor.ready();
    return executor;
  }

  it('killed and restarted without persistence: the runs in flight reject with BackendUnavailableException within the bound, and new runs are served', async () => {
    const executor = await cluster(false);
    const probes = Array.from({ length: 10 }, (_, i) => join(dir, `lost-${i}`));
    const node = (probe: string): NodeDefinition => ({ id: 'long', module: timed, params: { probe, ms: 30_000 } });
    const settled: number[] = [];
    const runs = probes.map((probe, i) =>
      executor.executePipeline({ nodes: [node(probe), { id: 'next', module: fixture('increment.js') }], initialInput: i }).then(
        () => expect.fail('a run whose job Redis lost resolved'),
        (error: unknown) => {
          settled.push(Date.now());
          return error;
        },
      ),
    );
    await until(() => probes.every((probe) => executions(probe).length === 1), 'every run to start');
    await redis!.restart('SIGKILL');
    const restartedAt = Date.now();
    const errors = await Promise.all(runs);
    for (const error of errors) {
      expect(error).to.be.instanceOf(BackendUnavailableException);
      expect((error as Error).message).to.match(/lost the BullMQ job of segment .* \(restarted without persistence, or it lost its last writes\)/);
    }
    expect(Math.max(...settled) - restartedAt, 'ms from the restart to the last rejection').to.be.below(REJECTED_WITHIN_MS);
    // The worker processes stop what they ran for jobs Redis no longer has.
    await until(() => probes.every((probe) => executions(probe)[0]?.how === 'aborted'), 'the lost jobs\' nodes to stop', 15_000);
    const again = await Promise.all([1, 2, 3].map((i) => executor.executePipeline({ nodes: [{ id: 'inc', module: fixture('increment.js') }], initialInput: i })));
    expect(again).to.deep.equal([2, 3, 4]);
  });

  it('restarted mid-load with appendonly yes and appendfsync everysec: no run is lost', async () => {
    const executor = await cluster(true);
    const probes = Array.from({ length: 40 }, (_, i) => join(dir, `kept-${i}`));
    const node = (id: string, probe: string, ms: number): NodeDefinition => ({ id, module: timed, params: { probe: `${probe}-${id}`, ms } });
    const runs = probes.map((probe, i) =>
      executor.executePipeline({ nodes: [node('a', probe, 300), node('b', probe, 300), node('c', probe, 300)], initialInput: i }),
    );
    // Mid-load: some runs have ended their first node, none has ended.
    await until(() => probes.some((probe) => executions(`${probe}-a`).some((run) => run.how === 'completed')), 'a first node to complete');
    await redis!.restart('SIGTERM');
    const results = await Promise.all(runs);
    expect(results).to.deep.equal(probes.map((_, i) => i + 3));
  });
});
