import { randomUUID } from 'node:crypto';
import { resolveOptions, resolveTimeouts, type ExecutorOptions, type ResolvedOptions } from './config';
import { PiscinaDispatcher, type Dispatcher } from './dispatch';
import { ExecutorClosedException } from './errors';
import { planPipeline, type PipelineRequest } from './pipeline';
import { PipelineRun } from './scheduler';

/**
 * Runs pipelines on a pool of worker threads.
 *
 * @example
 * ```ts
 * const executor = new PipelineExecutor({ timeouts: { nodeTimeoutMs: 500 } });
 * const result = await executor.executePipeline({
 *   pipelineId: 'resize',
 *   nodes: [{ id: 'decode', module: '/abs/path/decode.js' }],
 *   initialInput: buffer,
 * });
 * await executor.close();
 * ```
 */
export class PipelineExecutor {
  private readonly options: ResolvedOptions;
  private readonly dispatcher: Dispatcher;
  private readonly runs = new Set<PipelineRun>();
  private closing: Promise<void> | undefined;

  /**
   * Starts the worker threads.
   * @throws {TypeError} for an unknown option or a value of the wrong type.
   * @throws {RangeError} for a value out of range.
   */
  constructor(options?: ExecutorOptions) {
    this.options = resolveOptions(options);
    this.dispatcher = new PiscinaDispatcher(this.options);
  }

  /**
   * Runs a pipeline and resolves with its result: the last node's output for a chain,
   * the sink's output for a DAG (or `{ [sinkId]: output }` for several sinks).
   *
   * @throws {PipelineDefinitionError} (rejects) for a bad definition, before any node runs.
   * @throws {NodeTimeoutException} (rejects) when a node runs past its timeout.
   * @throws {PipelineTimeoutException} (rejects) when the run takes longer than its pipeline timeout.
   * @throws {CancellationException} (rejects) when `signal` aborts.
   * @throws {ExecutorClosedException} (rejects) once `close()` was called.
   * Any error a node throws rejects the run as the node threw it, with `nodeId` and
   * `pipelineId` added.
   */
  executePipeline<Result = unknown, Input = unknown>(request: PipelineRequest<Input>): Promise<Result> {
    try {
      if (this.closing !== undefined) throw new ExecutorClosedException();
      const plan = planPipeline(request);
      const timeouts = resolveTimeouts(this.options.timeouts, request.timeouts, 'timeouts');
      const run = new PipelineRun(
        randomUUID(),
        plan,
        request.initialInput,
        timeouts,
        request.signal,
        this.dispatcher,
        (ended) => this.runs.delete(ended),
      );
      this.runs.add(run);
      run.start();
      return run.promise as Promise<Result>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Resolves once every worker thread has started and can take nodes at once: await
   * it before serving traffic to keep thread start-up out of the first runs' latency.
   */
  ready(): Promise<void> {
    return this.dispatcher.ready();
  }

  /** Threads terminated because a node did not stop in time, and tasks sent again after it. */
  get stats(): { readonly terminations: number; readonly crashes: number; readonly resends: number; readonly runsInFlight: number } {
    return { ...this.dispatcher.stats, runsInFlight: this.runs.size };
  }

  /**
   * Refuses new runs, lets runs in flight finish for up to `closeTimeoutMs`, cancels
   * the rest, then terminates the threads. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async shutdown(): Promise<void> {
    const pending = [...this.runs].map((run) => run.promise.catch(() => undefined));
    if (pending.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.min(this.options.closeTimeoutMs, 2 ** 31 - 1));
      });
      await Promise.race([Promise.all(pending), deadline]);
      clearTimeout(timer);
      const reason = new ExecutorClosedException('The executor closed before the run finished');
      for (const run of this.runs) run.cancel(reason);
      await Promise.all(pending);
    }
    await this.dispatcher.destroy();
  }
}
