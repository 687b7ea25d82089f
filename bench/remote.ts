/**
 * The BullMQ backend's scenarios: the executor in this process, a redis-server on
 * loopback and two local worker processes (`lukhas-orchestrator worker`) sharing the
 * cores, against the same raw piscina baseline and floor as the embedded pool.
 */
import { join } from 'node:path';
import { RedisServer, SECRET, WorkerProcess, redisServerMissing } from '../test/remote-env';
import { countAsOwn } from './machine';
import { bullmqBackend, type ExecutorOptions } from './orchestrator';

export const WORKER_PROCESSES = 2;

/** Threads of each worker process: the cores shared between them, as the embedded pool has them. */
export function threadsPerProcess(cores: number): number {
  return Math.max(1, Math.floor(cores / WORKER_PROCESSES));
}

/** Why the backend's scenarios cannot run here, if they cannot. */
export function clusterMissing(): string | undefined {
  return redisServerMissing();
}

export interface Cluster {
  /** The redis-server's URL. */
  readonly redisUrl: string;
  /** The executor's options, with the backend. */
  readonly options: ExecutorOptions;
  readonly description: string;
  close(): Promise<void>;
}

export async function startCluster(base: ExecutorOptions, cores: number, queue: string): Promise<Cluster> {
  const redis = await RedisServer.start();
  const threads = threadsPerProcess(cores);
  let workers: WorkerProcess[] = [];
  try {
    workers = await Promise.all(
      Array.from({ length: WORKER_PROCESSES }, () => WorkerProcess.start(redis.url, ['--queue', queue, '--threads', String(threads), '--module-root', join(__dirname, 'fixtures')], { LUKHAS_SECRET: SECRET })),
    );
  } catch (error) {
    await Promise.all(workers.map((worker) => worker.stop()));
    await redis.stop();
    throw error;
  }
  // Their CPU time is the orchestrator's, not noise from other processes.
  const forget = [redis, ...workers].map((child) => countAsOwn(child.pid));
  // The executor's own `threads` would size a pool it does not start.
  const { threads: _unused, ...rest } = base;
  return {
    redisUrl: redis.url,
    options: { ...rest, backend: bullmqBackend({ connection: redis.url, queue, secret: SECRET }) },
    description: `over BullMQ: ${WORKER_PROCESSES} worker processes x ${threads} thread${threads === 1 ? '' : 's'}, redis-server on loopback`,
    async close() {
      for (const undo of forget) undo();
      await Promise.all(workers.map((worker) => worker.stop()));
      await redis.stop();
    },
  };
}
