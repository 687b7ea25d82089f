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
   * dependency's output or `{ [depId]: output }`, and resolving with the sink's output
   * (`{ [sinkId]: output }` for several). A map step runs its node once per element of
   * its input, all at once (`Promise.all` of one `run()` each).
   */
  async graph(steps: readonly Step[], input: unknown): Promise<unknown> {
    const dag = dagOf(steps);
    if (dag === undefined) {
      let value = input;
      for (const step of steps) value = await this.step(step, value);
      return value;
    }
    const outputs = new Array<Promise<unknown>>(steps.length);
    const outputOf = (index: number): Promise<unknown> => {
      let output = outputs[index];
      if (output === undefined) {
        const deps = dag.deps[index]!;
        const given =
          deps.length === 0
            ? Promise.resolve(input)
            : deps.length === 1
              ? outputOf(deps[0]!)
              : Promise.all(deps.map(outputOf)).then((values) => Object.fromEntries(deps.map((dep, i) => [steps[dep]!.id, values[i]])));
        output = given.then((value) => this.step(steps[index]!, value));
        outputs[index] = output;
      }
      return output;
    };
    if (dag.sinks.length === 1) return outputOf(dag.sinks[0]!);
    const values = await Promise.all(dag.sinks.map(outputOf));
    return Object.fromEntries(dag.sinks.map((sink, i) => [steps[sink]!.id, values[i]]));
  }

  /** One step: a node, or a map node's `run()` per element. */
  private step(step: Step, input: unknown): Promise<unknown> {
    if (step.map !== true) return this.node(step, input);
    return Promise.all((input as unknown[]).map((element) => this.node(step, element)));
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }
}

/** A DAG's edges by step index, and its sinks; made once per list of steps (undefined for a chain). */
interface Dag {
  readonly deps: readonly (readonly number[])[];
  readonly sinks: readonly number[];
}

const dags = new WeakMap<readonly Step[], Dag | undefined>();

function dagOf(steps: readonly Step[]): Dag | undefined {
  if (dags.has(steps)) return dags.get(steps);
  let dag: Dag | undefined;
  if (steps.some((step) => step.dependsOn !== undefined)) {
    const byId = new Map(steps.map((step, index) => [step.id, index]));
    const deps = steps.map((step) => (step.dependsOn ?? []).map((id) => byId.get(id)!));
    const used = new Set(deps.flat());
    dag = { deps, sinks: steps.map((_, index) => index).filter((index) => !used.has(index)) };
  }
  dags.set(steps, dag);
  return dag;
}
