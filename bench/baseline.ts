/**
 * The baseline: raw piscina running the same node functions with no orchestrator, one
 * `run()` per node, chained by hand (a DAG's parallel nodes with `Promise.all`).
 */
import { Piscina } from 'piscina';
import type { Worker } from 'node:worker_threads';
import { BASELINE_WORKER, type NodeName, type Step } from './workload';

/** The piscina options a baseline candidate varies; threads are fixed per scenario. */
export interface BaselineOptions {
  readonly concurrentTasksPerWorker: number;
  readonly atomics: 'sync' | 'async' | 'disabled';
  /** Hand a Uint8Array's buffer over (transferList / Piscina.move) instead of copying it. */
  readonly transfer: boolean;
}

interface BaselineTask {
  readonly fn: NodeName;
  readonly input: unknown;
  readonly params: Readonly<Record<string, unknown>> | undefined;
}

/** Every option given to `new Piscina()`, and whether runs transfer buffers, as reported in the results. */
export function poolOptions(options: BaselineOptions, threads: number): Record<string, unknown> {
  return {
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: Infinity,
    concurrentTasksPerWorker: options.concurrentTasksPerWorker,
    atomics: options.atomics,
    recordTiming: false,
    transferBuffers: options.transfer,
  };
}

export function describeBaseline(options: BaselineOptions, threads: number): string {
  const data = options.transfer ? ', buffers transferred' : '';
  return `${threads} threads, concurrentTasksPerWorker ${options.concurrentTasksPerWorker}, atomics '${options.atomics}'${data}`;
}

export class RawPiscina {
  private readonly pool: Piscina<BaselineTask, unknown>;

  constructor(
    readonly options: BaselineOptions,
    readonly threads: number,
  ) {
    this.pool = new Piscina({
      filename: BASELINE_WORKER,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: options.concurrentTasksPerWorker,
      atomics: options.atomics,
      recordTiming: false,
    });
    // A thread that dies with no task on it is reported here, and would crash the
    // process without a listener; a task's own failure rejects its run() anyway.
    this.pool.on('error', () => {});
  }

  /** The worker threads of the pool. */
  get workers(): readonly Worker[] {
    return this.pool.threads;
  }

  /** Runs one node in a worker; `signal` makes the task abortable (its thread is terminated on abort). */
  node(step: Step, input: unknown, signal?: AbortSignal): Promise<unknown> {
    const task: BaselineTask = { fn: step.fn, input, params: step.params };
    if (this.options.transfer && input instanceof Uint8Array) {
      return this.pool.run(task, { name: 'transfer', transferList: [input.buffer as ArrayBuffer], signal });
    }
    return this.pool.run(task, { signal });
  }

  /**
   * Runs the steps as the orchestrator would: a chain in order, each taking the previous
   * output; a DAG with each node starting once its dependencies are done, taking one
   * dependency's output or `{ [depId]: output }`, and resolving with the sink's output.
   */
  async graph(steps: readonly Step[], input: unknown): Promise<unknown> {
    if (!steps.some((step) => step.dependsOn !== undefined)) {
      let value = input;
      for (const step of steps) value = await this.node(step, value);
      return value;
    }
    const outputs = new Map<string, Promise<unknown>>();
    const outputOf = (step: Step): Promise<unknown> => {
      let output = outputs.get(step.id);
      if (output === undefined) {
        output = this.inputOf(step, steps, input, outputOf).then((value) => this.node(step, value));
        outputs.set(step.id, output);
      }
      return output;
    };
    const sinks = steps.filter((step) => !steps.some((other) => other.dependsOn?.includes(step.id)));
    if (sinks.length !== 1) throw new Error('the baseline runs DAGs with a single sink');
    return outputOf(sinks[0]!);
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }

  private async inputOf(
    step: Step,
    steps: readonly Step[],
    input: unknown,
    outputOf: (step: Step) => Promise<unknown>,
  ): Promise<unknown> {
    const deps = (step.dependsOn ?? []).map((id) => steps.find((other) => other.id === id)!);
    if (deps.length === 0) return input;
    if (deps.length === 1) return outputOf(deps[0]!);
    const values = await Promise.all(deps.map(outputOf));
    return Object.fromEntries(deps.map((dep, i) => [dep.id, values[i]]));
  }
}
