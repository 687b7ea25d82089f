/**
 * The plain-BullMQ baseline of S1-bullmq: what a user of BullMQ would write instead of
 * this backend. One job per run, `WORKER_PROCESSES` plain BullMQ worker processes
 * (`fixtures/plain-bullmq-worker.js`, concurrency 1000 each) whose processor calls the
 * same node functions in sequence, a redis-server on loopback; each run timed from its
 * job's addition (all of a batch added in one call) to its `completed` event.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { RedisServer } from '../test/remote-env';
import { WORKER_PROCESSES } from './remote';
import { percentile } from './stats';
import type { Step } from './workload';

export interface PlainBullmqResult {
  readonly description: string;
  readonly runs: number;
  readonly failures: number;
  /** Of every measured run's latency, in ms (null with no run measured). */
  readonly p50: number | null;
  readonly p95: number | null;
}

function startWorker(url: string, queue: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(__dirname, 'fixtures', 'plain-bullmq-worker.js')], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, REDIS_URL: url, QUEUE: queue } });
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('plain worker ready')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`a plain BullMQ worker exited (code ${code}) before it was ready`)));
  });
}

/** Runs `warmUp` runs, then `iterations` batches of `count` runs at once; `expected` is each run's result. */
export async function measurePlainBullmq(steps: readonly Step[], count: number, iterations: number, warmUp: number, expected: number): Promise<PlainBullmqResult> {
  const redis = await RedisServer.start();
  const queueName = 'plain';
  const workers: ChildProcess[] = [];
  const connection = { url: redis.url };
  const queue = new Queue(queueName, { connection });
  const events = new QueueEvents(queueName, { connection });
  try {
    workers.push(...(await Promise.all(Array.from({ length: WORKER_PROCESSES }, () => startWorker(redis.url, queueName)))));
    await events.waitUntilReady();
    const waiting = new Map<string, (ok: boolean) => void>();
    events.on('completed', ({ jobId, returnvalue }) => waiting.get(jobId)?.(Number(returnvalue) === expected));
    events.on('failed', ({ jobId }) => waiting.get(jobId)?.(false));
    let seq = 0;
    const batch = async (size: number): Promise<{ latencies: number[]; failures: number }> => {
      const jobs = Array.from({ length: size }, (_, i) => ({ name: 'run', data: { steps, input: 0 }, opts: { jobId: `run-${++seq}-${i}` } }));
      const start = performance.now();
      const done = jobs.map(
        (job) =>
          new Promise<[number, boolean]>((resolve) =>
            waiting.set(job.opts.jobId, (ok) => {
              waiting.delete(job.opts.jobId);
              resolve([performance.now() - start, ok]);
            }),
          ),
      );
      await queue.addBulk(jobs);
      const ended = await Promise.all(done);
      return { latencies: ended.map(([ms]) => ms), failures: ended.filter(([, ok]) => !ok).length };
    };
    await batch(warmUp);
    const latencies: number[] = [];
    let failures = 0;
    for (let i = 0; i < iterations; i++) {
      const measured = await batch(count);
      latencies.push(...measured.latencies);
      failures += measured.failures;
    }
    latencies.sort((a, b) => a - b);
    return {
      description: `plain BullMQ: one job per run, ${WORKER_PROCESSES} worker processes (concurrency 1000 each) calling the node functions in sequence, redis-server on loopback`,
      runs: latencies.length,
      failures,
      p50: percentile(latencies, 50),
      p95: percentile(latencies, 95),
    };
  } finally {
    await Promise.allSettled([queue.close(), events.close()]);
    await Promise.all(workers.map((worker) => new Promise((resolve) => (worker.once('exit', resolve), worker.kill('SIGTERM')))));
    await redis.stop();
  }
}
