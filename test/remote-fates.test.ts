/**
 * What may end a job of the BullMQ backend, and a run, against a real redis-server and
 * real worker processes, with an outsider who writes to Redis directly: a job a worker
 * process refuses ends failed at once; a job that stalls past `--max-stalled` ends
 * failed and fails its runs; with a secret, no unsigned event decides a run's fate.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkerCrashedException } from '../src/index';
import { fixture, rejection } from './helpers';
import type { WorkerProcess } from './remote-env';
import { useOutsider } from './remote-outsider';

/** Locks of 1 s, looked for stalled every 500 ms, failed past one recovery: a stalled job moves on within 2 s. */
const FAST_STALLS = ['--lock-ms', '1000', '--stalled-ms', '500', '--max-stalled', '1'];

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('BullMQ backend: what ends a job, and what may end a run (redis-server, worker processes, an outsider)', function () {
  this.timeout(90_000);
  const suite = useOutsider('fates');
  const { executor, outsider, rawRedis, runUnderWay, worker } = suite;

  /** Resolves once job `jobId` of `queue` is in state `state`. */
  async function untilState(queue: string, jobId: string, state: string): Promise<void> {
    const q = outsider(queue);
    const deadline = Date.now() + 30_000;
    for (let now = await q.getJobState(jobId); now !== state; now = await q.getJobState(jobId)) {
      if (Date.now() > deadline) throw new Error(`job ${jobId} stayed ${now}, expected ${state}`);
      await pause(50);
    }
  }

  describe('jobs a worker process will not run', () => {
    it('a job whose fields do not parse (raw HSET) is refused once, with the reason, and ends failed, never fetched again', async () => {
      const queue = suite.queue();
      const client = rawRedis();
      // Written before any worker process takes them: data, options, and a parent Redis's own scripts cannot read.
      const broken: [string, string, string][] = [
        ['data', 'not json {', 'its data does not parse as JSON'],
        ['opts', '{"attempts": 5', 'its opts does not parse as JSON'],
        ['parent', '5', 'its parent is not an object'],
      ];
      const ids: string[] = [];
      for (const [field, value] of broken) {
        const job = await outsider(queue).add('segments', { s: [] });
        await client.hset(`bull:${queue}:${job.id}`, field, value);
        ids.push(job.id!);
      }
      const { worker: taker } = await worker({ queue, args: FAST_STALLS });
      // Failed, a job is never handed out again: one refusal each is all there will be.
      for (const id of ids) await untilState(queue, id, 'failed');
      for (const [index, id] of ids.entries()) {
        const why = broken[index]![2];
        const refusals = taker.output.split('\n').filter((line) => line.includes(`refused job "${id}"`));
        expect(refusals, `log lines of the refusal of job ${id}`).to.deep.equal([`lukhas-orchestrator: refused job "${id}" (name "segments"): ${why}; nothing of it was run`]);
        expect(await outsider(queue).getJobState(id)).to.equal('failed');
        expect(await client.hget(`bull:${queue}:${id}`, 'failedReason')).to.equal(`refused by a worker process: ${why}`);
      }
    });

    it('a refused job whose options ask for retries (Queue.add with attempts) ends failed at once, refused once', async () => {
      const { worker: taker, queue } = await worker({ args: FAST_STALLS });
      const q = outsider(queue);
      const job = await q.add('segments', 'garbage' as never, { attempts: 5 });
      await untilState(queue, job.id!, 'failed');
      expect(taker.output.split('\n').filter((line) => line.includes(`refused job "${job.id}"`))).to.have.length(1);
      expect((await q.getJob(job.id!))!.failedReason).to.equal('refused by a worker process: its data is not an object with a list of segments');
    });
  });

  describe('jobs that stall too often', () => {
    it('a job whose node kills its worker process each time ends failed past --max-stalled, and its run rejects with a WorkerCrashedException', async function () {
      const queue = suite.queue();
      const probe = join(suite.dir, 'killed');
      // A worker process in place of each one killed, as a supervisor would start.
      let stopping = false;
      let current: WorkerProcess | undefined;
      const supervisor = (async () => {
        while (!stopping) {
          current = (await worker({ queue, args: FAST_STALLS })).worker;
          if (!stopping) await current.exited;
        }
      })();
      try {
        const { executor: trusted } = await executor(queue);
        const run = trusted.executePipeline({ nodes: [{ id: 'killer', module: fixture('kill-process.js'), params: { probe } }], initialInput: 0, timeouts: { pipelineTimeoutMs: 60_000 } });
        const error = await rejection(run);
        expect(error).to.be.instanceOf(WorkerCrashedException);
        expect((error as Error).cause).to.have.property('message').that.matches(/job stalled more than allowable limit/);
        // Taken up once, then recovered once (--max-stalled 1): two processes killed, no third.
        const killed = readFileSync(probe, 'utf8').trim().split('\n');
        expect(killed, 'processes the node killed').to.have.length(2);
        const [jobId] = (await outsider(queue).getFailed()).map((job) => job.id);
        expect(jobId, 'the failed job').to.be.a('string');
        await current!.printed(new RegExp(`failed job "${jobId}": "job stalled more than allowable limit" \\(BullMQ marks a job whose lock lapsed more than --max-stalled times`));
      } finally {
        stopping = true;
        current?.kill('SIGTERM');
        await supervisor;
      }
    });
  });

  describe('forged events, with a secret', () => {
    it('forged `active` events (raw XADD) do not make the executor ignore the signed result', async () => {
      const { queue } = await worker();
      const { executor: trusted, lines } = await executor(queue);
      const { handle, jobId } = await runUnderWay(trusted, queue, 10, 1_500, { pipelineTimeoutMs: 10_000 });
      const client = rawRedis();
      for (let i = 0; i < 5; i++) await client.xadd(`bull:${queue}:events`, '*', 'event', 'active', 'jobId', jobId, 'prev', 'waiting');
      expect(await handle.result).to.equal(11);
      expect(lines.lines.filter((line) => /has it now/.test(line))).to.deep.equal([]);
    });

    it('a forged `failed` event (raw XADD) does not fail the run, which gets its result', async () => {
      const { queue } = await worker();
      const { executor: trusted } = await executor(queue);
      const { handle, jobId } = await runUnderWay(trusted, queue, 20, 1_500, { pipelineTimeoutMs: 10_000 });
      await rawRedis().xadd(`bull:${queue}:events`, '*', 'event', 'failed', 'jobId', jobId, 'failedReason', 'forged', 'prev', 'active');
      expect(await handle.result).to.equal(21);
    });

    it('without a secret, a `failed` event fails the run at once, as before', async () => {
      const { queue } = await worker({ secret: false });
      const { executor: open } = await executor(queue, { secret: false });
      const { handle, jobId } = await runUnderWay(open, queue, 20, 5_000, { pipelineTimeoutMs: 10_000 });
      await rawRedis().xadd(`bull:${queue}:events`, '*', 'event', 'failed', 'jobId', jobId, 'failedReason', 'forged', 'prev', 'active');
      const error = await rejection(handle.result);
      expect(error).to.be.instanceOf(WorkerCrashedException);
      expect((error as Error).cause).to.have.property('message').that.matches(/the BullMQ job of the segment failed: forged/);
    });
  });
});
