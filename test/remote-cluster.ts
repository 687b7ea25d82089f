/**
 * The backend suites' cluster: an executor with the BullMQ backend and its worker
 * processes. Kept apart from remote-env.ts, which the benchmark compiles too and which
 * must not load the library's sources (the benchmark measures the built library).
 */
import { bullmqBackend, type BullmqBackendOptions, type ExecutorOptions, type PipelineExecutor } from '../src/index';
import { SECRET, SIGNED, WorkerProcess } from './remote-env';

/**
 * An executor on queue `queue`, served by `count` fresh worker processes started with
 * `args` and the secret; the processes are pushed onto `workers` (for the suite to stop)
 * before the executor waits to be ready.
 */
export async function startCluster(
  redisUrl: string,
  queue: string,
  count: number,
  args: readonly string[],
  workers: WorkerProcess[],
  newExecutor: (options?: ExecutorOptions) => PipelineExecutor,
  options: ExecutorOptions = {},
  backend: Partial<BullmqBackendOptions> = {},
): Promise<{ executor: PipelineExecutor; workers: WorkerProcess[]; queue: string }> {
  const started = await Promise.all(Array.from({ length: count }, () => WorkerProcess.start(redisUrl, ['--queue', queue, ...args], SIGNED)));
  workers.push(...started);
  const executor = newExecutor({ ...options, backend: bullmqBackend({ connection: redisUrl, queue, secret: SECRET, ...backend }) });
  await executor.ready();
  return { executor, workers: started, queue };
}
