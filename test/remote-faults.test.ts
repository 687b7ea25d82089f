/**
 * The BullMQ backend under faults, against a real redis-server and real worker
 * processes: a worker process paused past its lock (SIGSTOP, SIGCONT), an executor
 * process killed, Redis killed and restarted. Synchronised on what the nodes write to
 * their probe files and report as progress, never on sleeps.
 *
 * Skipped, saying why, when redis-server cannot be started here (a failure with
 * LUKHAS_REQUIRE_REDIS=1).
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bullmqBackend, type BullmqBackendOptions, type ExecutorOptions, type NodeDefinition, type ProgressEvent } from '../src/index';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Signer } from '../src/remote/trust';
import { attemptName, encode } from '../src/remote/wire';
import { fixture, useExecutors } from './helpers';
import { FIXTURES, RedisServer, SECRET, WorkerProcess, redisServerMissing } from './remote-env';

const SIGNED = { LUKHAS_SECRET: SECRET };
const timed = fixture('timed.js');

/** One execution of a node, as its probe file tells it. */
interface Execution {
  readonly pid: number;
  readonly start: number;
  readonly end: number | undefined;
  readonly how: string | undefined;
}

/** The executions a probe file records, in the order they started. */
export function executions(path: string): Execution[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const open = new Map<number, { pid: number; start: number }>();
  const done: Execution[] = [];
  for (const line of text.split('\n')) {
    const [kind, pid, at, how] = line.split(' ');
    if (kind === 'start') open.set(Number(pid), { pid: Number(pid), start: Number(at) });
    else if (kind === 'end') {
      const started = open.get(Number(pid))!;
      open.delete(Number(pid));
      done.push({ ...started, end: Number(at), how });
    }
  }
  for (const started of open.values()) done.push({ ...started, end: undefined, how: undefined });
  return done.sort((a, b) => a.start - b.start);
}

/** Resolves once `check` holds, looking every 20 ms; rejects after `ms`. */
export async function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('BullMQ backend under faults (redis-server, worker processes)', function () {
  this.timeout(120_000);
  let redis: RedisServer | undefined;
  const workers: WorkerProcess[] = [];
  let dir: string;
  const newExecutor = useExecutors();
  let queue = 0;

  async function cluster(count: number, args: readonly string[], options: ExecutorOptions = {}, backend: Partial<BullmqBackendOptions> = {}) {
    const name = `faults-${process.pid}-${++queue}`;
    const started = await Promise.all(
      Array.from({ length: count }, () => WorkerProcess.start(redis!.url, ['--queue', name, '--threads', '2', '--module-root', FIXTURES, ...args], SIGNED)),
    );
    workers.push(...started);
    const executor = newExecutor({ ...options, backend: bullmqBackend({ connection: redis!.url, queue: name, secret: SECRET, ...backend }) });
    await executor.ready();
    return { executor, workers: started, queue: name };
  }

  before(async function () {
    const missing = redisServerMissing();
    if (missing !== undefined) {
      if (process.env.LUKHAS_REQUIRE_REDIS === '1') throw new Error(missing);
      console.log(`      skipped: ${missing}`);
      this.skip();
    }
    redis = await RedisServer.start();
    dir = mkdtempSync(join(tmpdir(), 'lukhas-faults-'));
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') for (const worker of workers) console.log(`worker ${worker.pid}:\n${worker.output}`);
    for (const worker of workers) worker.kill('SIGCONT');
    await Promise.all(workers.splice(0).map((worker) => worker.stop()));
  });

  after(async () => {
    await redis?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  describe('lost locks', () => {
    it('a worker process paused past its lock (SIGSTOP) stops its taken-over nodes once resumed, reports none of them, and the runs get their results', async () => {
      // Locks of 1 s, looked for stalled every 500 ms: a paused process's jobs move on within 1.5 s.
      const lines: string[] = [];
      const { executor, workers: [paused, other], queue: name } = await cluster(2, ['--lock-ms', '1000', '--stalled-ms', '500'], {}, { log: (line) => lines.push(line) });
      const pids = new Set<number>();
      let bothBusy!: () => void;
      const busy = new Promise<void>((resolve) => (bothBusy = resolve));
      const onProgress = (event: ProgressEvent): void => {
        pids.add((event.value as { pid: number }).pid);
        if (pids.has(paused!.pid) && pids.has(other!.pid)) bothBusy();
      };
      const probes = Array.from({ length: 6 }, (_, i) => join(dir, `paused-${i}`));
      const node = (id: string, probe: string, ms: number): NodeDefinition => ({ id, module: timed, params: { probe: `${probe}-${id}`, ms } });
      const runs = probes.map((probe, i) =>
        executor.executePipeline({ nodes: [node('long', probe, 3_000), node('short', probe, 50)], initialInput: i, onProgress, timeouts: { pipelineTimeoutMs: 60_000 } }),
      );
      await busy;
      const onPaused = probes.filter((probe) => executions(`${probe}-long`).some((run) => run.pid === paused!.pid));
      expect(onPaused.length, 'runs whose long node the paused process runs').to.be.greaterThan(0);
      paused!.kill('SIGSTOP');
      const stoppedAt = Date.now();
      // Paused until every one of its long nodes has started again in the other process.
      await until(() => onPaused.every((probe) => executions(`${probe}-long`).some((run) => run.pid === other!.pid)), 'the other process to take the paused jobs over');
      // An outcome of a job's first attempt, signed, written now that its second has it: ignored.
      const queue = new Queue(name, { connection: { url: redis!.url } });
      const [taken] = (await queue.getJobs(['active'])).filter((job) => job.attemptsStarted > 1);
      const u = [{ k: 'e', i: 0, b: encode({ settlement: { kind: 'done' }, outputs: [[0, 999, 0, 0]], endedNodeStartedMs: 0 }) }];
      const m = new Signer(Buffer.from(SECRET), 'bull', name).sign('progress', taken!.id!, attemptName(1), JSON.stringify(u));
      await queue.close();
      const client = new Redis(redis!.url);
      await client.xadd(`bull:${name}:events`, '*', 'event', 'progress', 'jobId', taken!.id!, 'data', JSON.stringify({ u, a: 1, m }));
      await client.quit();
      await until(() => lines.some((line) => line.includes(`progress update of job "${taken!.id}" from its attempt 1: attempt 2 has it now`)), 'the stale outcome to be ignored');
      paused!.kill('SIGCONT');
      const resumedAt = Date.now();
      const results = await Promise.all(runs);
      expect(results).to.deep.equal(probes.map((_, i) => i + 2));
      await paused!.printed(/lost the lock of job/);
      for (const probe of onPaused) {
        const [first, second] = executions(`${probe}-long`);
        // The first attempt, resumed, was stopped at once: it never completed beside its replacement.
        expect(first!.pid).to.equal(paused!.pid);
        expect(first!.how, `the paused attempt at ${probe}`).to.equal('aborted');
        expect(first!.end! - resumedAt, 'ms the resumed attempt ran on').to.be.below(500);
        expect(second!.pid).to.equal(other!.pid);
        expect(second!.start).to.be.above(stoppedAt);
        expect(second!.how).to.equal('completed');
      }
      for (const probe of probes) {
        // Apart from the paused one's frozen time, no two executions of a node ran at once.
        const all = executions(`${probe}-long`).filter((run) => run.how !== 'aborted').concat(executions(`${probe}-short`));
        expect(all.filter((run) => run.how === 'completed').length, `completed executions of ${probe}`).to.equal(2);
        expect(executions(`${probe}-short`).length, `executions of the short node of ${probe}`).to.equal(1);
      }
      expect(lines.filter((line) => !line.includes(`job "${taken!.id}" from its attempt 1`))).to.deep.equal([]);
    });
  });
});
