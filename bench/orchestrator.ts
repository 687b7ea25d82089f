/** The contender: the built library (dist/), as users get it. */
import { PipelineExecutor, type ExecutorOptions, type NodeDefinition } from '../dist/src/index.js';
import { NODES_MODULE, type Step } from './workload';

export { CancellationException, bullmqBackend, transfer } from '../dist/src/index.js';
export type { ExecutorOptions, NodeDefinition } from '../dist/src/index.js';

/** The steps as node definitions of nodes.js. */
export function toNodes(steps: readonly Step[]): NodeDefinition[] {
  return steps.map((step) => ({
    id: step.id,
    module: NODES_MODULE,
    export: step.fn,
    ...(step.params === undefined ? {} : { params: step.params }),
    ...(step.dependsOn === undefined ? {} : { dependsOn: step.dependsOn }),
    ...(step.map === true ? { map: true } : {}),
  }));
}

export class Orchestrator {
  readonly executor: PipelineExecutor;

  constructor(
    readonly options: ExecutorOptions,
    private readonly pipelineId: string,
  ) {
    this.executor = new PipelineExecutor(options);
  }

  ready(): Promise<void> {
    return this.executor.ready();
  }

  /** Runs `nodes` (made once by {@link toNodes} and reused) on `input`. */
  run(nodes: readonly NodeDefinition[], input: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.executor.executePipeline({ pipelineId: this.pipelineId, nodes, initialInput: input, signal });
  }

  close(): Promise<void> {
    return this.executor.close();
  }
}

/** The options as reported in the results (Infinity is not JSON). */
export function describeExecutor(options: ExecutorOptions): string {
  const parts = [`${options.threads ?? 'default'} threads`];
  if (options.tasksPerThread !== undefined) parts.push(`${options.tasksPerThread} tasks/thread`);
  else parts.push('default tasksPerThread');
  const t = options.timeouts;
  if (t !== undefined) {
    const fields = Object.entries(t).map(([key, value]) => `${key} ${value}`);
    parts.push(`timeouts: ${fields.join(', ')}`);
  } else parts.push('default timeouts');
  return parts.join(', ');
}
