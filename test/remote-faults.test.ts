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
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BullmqBackendOptions, type ExecutorOptions, type NodeDefinition, type ProgressEvent } from '../src/index';
import { Queue, QueueEvents } from 'bullmq';
import { spawn } from 'node:child_process';
import { LIVENESS_CHECK_MS, LIVENESS_MISSING_MS, LIVENESS_TTL_MS } from '../src/remote/liveness';
import { Redis } from 'ioredis';
import { Signer } from '../src/remote/trust';
import { attemptName, decode, encode } from '../src/remote/wire';
import { fixture, rejection, useExecutors } from './helpers';
import { startCluster } from './remote-cluster';
import { FIXTURES, FreezingProxy, RedisServer, SECRET, SIGNED, WorkerProcess, executions, requireRedisServer, until } from './remote-env';

/** An executor in a process of its own (`test/processes/executor.js`). */
const EXECUTOR = join(__dirname, 'processes', 'executor.js');
/** A dead executor's segments are stopped within its key's TTL, the time it must be seen missing, a look, the grace period, and a second of slack. */
const LIVENESS_BOUND_MS = LIVENESS_TTL_MS + LIVENESS_MISSING_MS + LIVENESS_CHECK_MS + 100 + 1_000;
const timed = fixture('timed.js');

describe('BullMQ backend under faults (redis-server, worker processes)', function () {
  this.timeout(120_000);
  let redis: RedisServer | undefined;
  const workers: WorkerProcess[] = [];
  let dir: string;
  const newExecutor = useExecutors();
  let queue = 0;

  async function cluster(count: number, args: readonly string[], options: ExecutorOptions = {}, backend: Partial<BullmqBackendOptions> = {}) {
    const name = `faults-${process.pid}-${++queue}`;
    return startCluster(redis!.url, name, count, ['--threads', '2', '--module-root', FIXTURES, ...args], workers, newExecutor, options, backend);
  }

  before(async function () {
    requireRedisServer(this);
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
        expect(first!.end! - resumedAt, 'ms the resumed attempt ran on').to.be.below(1_000);
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

  describe('cut off from Redis', () => {
    it('a worker process whose connections to Redis freeze stops its nodes before its lock can lapse: the process taking the job over never runs beside it', async () => {
      // Locks of 2 s: the cut-off process gives its jobs up by its own clock 500 ms before
      // Redis can let a lock lapse (a quarter of the lock: its margin for stopping).
      const lockMs = 2_000;
      const args = ['--queue', `faults-${process.pid}-${++queue}`, '--threads', '2', '--module-root', FIXTURES, '--lock-ms', String(lockMs), '--stalled-ms', '500'];
      const proxy = await FreezingProxy.start(new URL(redis!.url));
      try {
        const cut = await WorkerProcess.start(proxy.url, args, SIGNED);
        workers.push(cut);
        const { executor } = await startCluster(redis!.url, args[1]!, 0, [], workers, newExecutor);
        const probe = join(dir, 'cut-off');
        let started!: () => void;
        const running = new Promise<void>((resolve) => (started = resolve));
        const result = executor.executePipeline({
          nodes: [{ id: 'long', module: timed, params: { probe, ms: 6_000 } }],
          initialInput: 1,
          onProgress: () => started(),
          timeouts: { pipelineTimeoutMs: 60_000 },
        });
        await running;
        // A second process, connected straight to Redis, to take the job over.
        workers.push(await WorkerProcess.start(redis!.url, args, SIGNED));
        proxy.freeze();
        const frozenAt = Date.now();
        expect(await result).to.equal(2);
        const [first, second] = executions(probe);
        expect(first!.pid).to.equal(cut.pid);
        expect(first!.how, 'the cut-off attempt').to.equal('aborted');
        // Its lock was last renewed before the freeze: Redis could let it lapse from frozenAt + lockMs on.
        expect(first!.end!, 'when the cut-off attempt ended').to.be.below(frozenAt + lockMs);
        expect(second!.pid).to.not.equal(cut.pid);
        expect(second!.start, 'when the take-over started').to.be.at.least(first!.end!);
        expect(second!.how).to.equal('completed');
        await cut.printed(/lost the lock of job .* without renewal/);
      } finally {
        proxy.close();
      }
    });
  });

  describe('deadlines and liveness', () => {
    it("an executor process killed (SIGKILL) with long nodes in flight: the worker process stops them within the liveness bound", async () => {
      const name = `faults-${process.pid}-${++queue}`;
      const [worker] = [await WorkerProcess.start(redis!.url, ['--queue', name, '--threads', '2', '--module-root', FIXTURES], SIGNED)];
      workers.push(worker!);
      const probes = join(dir, `orphaned-${queue}`);
      const child = spawn(process.execPath, [EXECUTOR], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...SIGNED, REDIS_URL: redis!.url, QUEUE: name, PROBES: probes, COUNT: '3' } });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const exited = new Promise((resolve) => child.once('exit', resolve));
      await until(() => [0, 1, 2].every((i) => output.includes(`running ${i}\n`)), 'the three nodes to start');
      child.kill('SIGKILL');
      await exited;
      const killedAt = Date.now();
      await until(() => [0, 1, 2].every((i) => executions(`${probes}-${i}`)[0]?.end !== undefined), 'the orphaned nodes to end', LIVENESS_BOUND_MS + 5_000);
      for (const i of [0, 1, 2]) {
        const [only, ...more] = executions(`${probes}-${i}`);
        expect(only!.how).to.equal('aborted');
        expect(only!.end! - killedAt, 'ms from the kill to the node stopped').to.be.below(LIVENESS_BOUND_MS);
        expect(more).to.deep.equal([]);
      }
      await worker!.printed(/executor ".*" is gone \(its liveness key has lapsed\): its segments here are stopped/);
    });

    it("a segment whose run's deadline has passed is not started, even for a live executor; a stop mark lives until the deadline", async () => {
      const { executor, queue: name } = await cluster(1, []);
      const client = new Redis(redis!.url);
      try {
        // A live executor's run, cancelled: its mark lives until the deadline (and a minute), not an hour.
        const handle = executor.startPipeline({ nodes: [{ id: 'long', module: timed, params: { probe: join(dir, 'marked'), ms: 60_000 } }], timeouts: { pipelineTimeoutMs: 5_000 } });
        await until(() => executions(join(dir, 'marked')).length === 1, 'the node to start');
        executor.cancel(handle.runId);
        await rejection(handle.result);
        const [mark] = await client.keys(`bull:${name}:lukhas:stop:*`);
        expect(await client.pttl(mark!)).to.be.within(60_000, 65_000);
        // A job signed as an executor would, for a live executor (its key set), whose run's deadline has passed.
        const [live] = await client.keys(`bull:${name}:lukhas:live:*`);
        const executorId = live!.slice(`bull:${name}:lukhas:live:`.length);
        const probe = join(dir, 'late');
        const nodes = encode([{ id: 'late', module: timed, params: { probe, ms: 10 } }]);
        const payload = { runId: 'late-run', pipelineId: 'late', nodes, first: 0, attempts: [1], input: 0, timeouts: [10_000], graceMs: 100, reportStarts: false, deadline: Date.now() - 1, executor: executorId };
        const s = [[`${executorId}-late`, encode(payload)]];
        const jobId = `${executorId}-late-job`;
        const m = new Signer(Buffer.from(SECRET), 'bull', name).sign('job', jobId, 'segments', JSON.stringify(s));
        const outsider = new Queue(name, { connection: { url: redis!.url } });
        const events = new QueueEvents(name, { connection: { url: redis!.url } });
        await events.waitUntilReady();
        const job = await outsider.add('segments', { s, m }, { jobId });
        const result = await job.waitUntilFinished(events, 10_000);
        await Promise.all([outsider.close(), events.close()]);
        const [end] = (result as { e: string[] }).e;
        expect((decode(end!) as { settlement: { kind: string } }).settlement.kind).to.equal('stopped');
        expect(executions(probe), 'executions of the late node').to.deep.equal([]);
      } finally {
        await client.quit();
      }
    });
  });
});
