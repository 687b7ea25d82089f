/**
 * The plain-BullMQ contender of the backend's scenarios (S1-bullmq, S3-bullmq): what a
 * user of BullMQ would write instead of this backend. One job per run, `WORKER_PROCESSES`
 * plain BullMQ worker processes (`fixtures/plain-bullmq-worker.js`, concurrency 1000
 * each) whose processor calls the same node functions in sequence, on the scenario's
 * redis-server. A run is timed from its call to its job's `completed` event; the jobs of
 * the runs called in one turn are added in one `addBulk`, as the backend sends its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { exited, untilReady } from '../test/remote-env';
import type { RunFn } from './batch';
import { countAsOwn } from './machine';
import { WORKER_PROCESSES } from './remote';
import type { Step } from './workload';

export interface PlainBullmq {
  readonly description: string;
  readonly options: Readonly<Record<string, unknown>>;
  /** One run: a job of `steps` with `input`; resolves with its return value. */
  readonly run: RunFn;
  close(): Promise<void>;
}

function startWorker(url: string, queue: string): ChildProcess {
  return spawn(process.execPath, [join(__dirname, 'fixtures', 'plain-bullmq-worker.js')], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, REDIS_URL: url, QUEUE: queue } });
}

/** Starts the plain worker processes on queue `queueName` of the redis-server at `url`, for chains of `steps`. */
export async function startPlainBullmq(url: string, queueName: string, steps: readonly Step[]): Promise<PlainBullmq> {
  if (steps.some((step) => step.dependsOn !== undefined)) throw new Error('the plain-BullMQ contender runs chains only');
  const connection = { url };
  const queue = new Queue(queueName, { connection });
  const events = new QueueEvents(queueName, { connection });
  const workers: ChildProcess[] = [];
  const waiting = new Map<string, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let forget: (() => void)[] = [];
  const stop = async (): Promise<void> => {
    for (const undo of forget) undo();
    forget = [];
    await Promise.allSettled([queue.close(), events.close()]);
    await Promise.all(
      workers.map((worker) => {
        const done = exited(worker);
        worker.kill('SIGTERM');
        return done;
      }),
    );
  };
  try {
    // Each kept as soon as it is spawned: one that fails to start is stopped with the others.
    workers.push(...Array.from({ length: WORKER_PROCESSES }, () => startWorker(url, queueName)));
    await Promise.all(workers.map((worker) => untilReady(worker, /plain worker ready/, 'a plain BullMQ worker')));
    // Their CPU time is this contender's, not noise from other processes.
    forget = workers.map((worker) => countAsOwn(worker.pid!));
    await Promise.all([events.waitUntilReady(), queue.waitUntilReady()]);
  } catch (error) {
    await stop();
    throw error;
  }
  events.on('completed', ({ jobId, returnvalue }) => {
    const value: unknown = typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue;
    waiting.get(jobId)?.resolve(value);
    waiting.delete(jobId);
  });
  events.on('failed', ({ jobId, failedReason }) => {
    waiting.get(jobId)?.reject(new Error(`plain BullMQ job failed: ${failedReason}`));
    waiting.delete(jobId);
  });
  let seq = 0;
  let turn: { name: string; data: unknown; opts: { jobId: string } }[] | undefined;
  const run: RunFn = (input) =>
    new Promise((resolve, reject) => {
      const jobId = `run-${++seq}`;
      waiting.set(jobId, { resolve, reject });
      if (turn === undefined) {
        const jobs: { name: string; data: unknown; opts: { jobId: string } }[] = [];
        turn = jobs;
        queueMicrotask(() => {
          turn = undefined;
          queue.addBulk(jobs).catch((error: Error) => {
            for (const job of jobs) waiting.get(job.opts.jobId)?.reject(error);
          });
        });
      }
      turn.push({ name: 'run', data: { steps, input }, opts: { jobId } });
    });
  return {
    description: `one job per run, ${WORKER_PROCESSES} worker processes (concurrency 1000 each) calling the node functions in sequence`,
    options: { workerProcesses: WORKER_PROCESSES, concurrency: 1000 },
    run,
    close: stop,
  };
}
