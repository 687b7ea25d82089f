/**
 * Every error the orchestrator raises. Each class has a fixed `name`, a stable
 * `code` users can match on as well as `instanceof`, and its facts as fields.
 *
 * ```
 * OrchestratorException                     ERR_ORCHESTRATOR
 * ├── TimeoutException                      ERR_TIMEOUT
 * │   ├── NodeTimeoutException              ERR_NODE_TIMEOUT
 * │   └── PipelineTimeoutException          ERR_PIPELINE_TIMEOUT
 * ├── CancellationException                 ERR_CANCELLED
 * ├── PipelineFailedException               ERR_PIPELINE_FAILED
 * ├── PipelineDefinitionError               ERR_PIPELINE_DEFINITION
 * ├── WorkerCrashedException                ERR_WORKER_CRASHED
 * ├── NodeOutputError                       ERR_NODE_OUTPUT
 * ├── NonErrorThrownException               ERR_NON_ERROR_THROWN
 * ├── MapInputError                         ERR_MAP_INPUT
 * ├── MapElementsFailedException            ERR_MAP_ELEMENTS_FAILED
 * ├── QueueFullException                    ERR_QUEUE_FULL
 * ├── ExecutorClosedException               ERR_EXECUTOR_CLOSED
 * ├── BackendUnavailableException           ERR_BACKEND_UNAVAILABLE
 * └── MissingPackageError                   ERR_MISSING_PACKAGE
 * ```
 */

/** Outputs of the nodes that completed, by node id. */
export type PartialResults = Record<string, unknown>;

/** Base class of every error raised by the orchestrator itself. */
export class OrchestratorException extends Error {
  /** A stable identifier for the kind of error, such as `ERR_NODE_TIMEOUT`. */
  readonly code: string = 'ERR_ORCHESTRATOR';

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }

  override get name(): string {
    return 'OrchestratorException';
  }
}

/** A deadline passed: see {@link NodeTimeoutException} and {@link PipelineTimeoutException}. */
export class TimeoutException extends OrchestratorException {
  override readonly code: string = 'ERR_TIMEOUT';
  /** The deadline that passed, in milliseconds. */
  readonly timeoutMs: number;

  constructor(message: string, timeoutMs: number, options?: ErrorOptions) {
    super(message, options);
    this.timeoutMs = timeoutMs;
  }

  override get name(): string {
    return 'TimeoutException';
  }
}

/**
 * A node ran longer than its timeout. The time counts from when the node's code
 * started running in its worker, without the time its thread spent running other
 * nodes' synchronous code.
 */
export class NodeTimeoutException extends TimeoutException {
  override readonly code = 'ERR_NODE_TIMEOUT';
  readonly nodeId: string;
  readonly pipelineId: string;
  readonly runId: string;

  constructor(args: { nodeId: string; pipelineId: string; runId: string; timeoutMs: number }) {
    super(
      `Node "${args.nodeId}" of pipeline "${args.pipelineId}" timed out after ${args.timeoutMs} ms`,
      args.timeoutMs,
    );
    this.nodeId = args.nodeId;
    this.pipelineId = args.pipelineId;
    this.runId = args.runId;
  }

  override get name(): string {
    return 'NodeTimeoutException';
  }
}

/** A run did not finish within its pipeline timeout, counted from the call. */
export class PipelineTimeoutException extends TimeoutException {
  override readonly code = 'ERR_PIPELINE_TIMEOUT';
  readonly pipelineId: string;
  readonly runId: string;
  /** Ids of the nodes that completed before the deadline, in completion order. */
  readonly completedNodes: readonly string[];
  /** Outputs of those nodes, by id. */
  readonly partialResults: PartialResults;

  constructor(args: {
    pipelineId: string;
    runId: string;
    timeoutMs: number;
    completedNodes: readonly string[];
    partialResults: PartialResults;
  }) {
    super(
      `Pipeline "${args.pipelineId}" timed out after ${args.timeoutMs} ms ` +
        `with ${args.completedNodes.length} node(s) completed`,
      args.timeoutMs,
    );
    this.pipelineId = args.pipelineId;
    this.runId = args.runId;
    this.completedNodes = args.completedNodes;
    this.partialResults = args.partialResults;
  }

  override get name(): string {
    return 'PipelineTimeoutException';
  }
}

/** The run was cancelled by its caller (an AbortSignal, a handle or the executor closing). */
export class CancellationException extends OrchestratorException {
  override readonly code = 'ERR_CANCELLED';
  readonly pipelineId: string;
  readonly runId: string;
  /** What the canceller gave: `signal.reason` for an AbortSignal. */
  readonly reason: unknown;
  /** Ids of the nodes that completed before the cancellation, in completion order. */
  readonly completedNodes: readonly string[];
  /** Outputs of those nodes, by id. */
  readonly partialResults: PartialResults;

  constructor(args: {
    pipelineId: string;
    runId: string;
    reason: unknown;
    completedNodes: readonly string[];
    partialResults: PartialResults;
  }) {
    super(`Pipeline "${args.pipelineId}" was cancelled: ${describeReason(args.reason)}`, {
      cause: args.reason,
    });
    this.pipelineId = args.pipelineId;
    this.runId = args.runId;
    this.reason = args.reason;
    this.completedNodes = args.completedNodes;
    this.partialResults = args.partialResults;
  }

  override get name(): string {
    return 'CancellationException';
  }
}

/**
 * With `failFast: false`, nodes failed: the branches that did not depend on them went on
 * to the end, then the run rejected with this.
 */
export class PipelineFailedException extends OrchestratorException {
  override readonly code = 'ERR_PIPELINE_FAILED';
  readonly pipelineId: string;
  readonly runId: string;
  /** The error of each failed node (after its retries), by node id. */
  readonly errors: Readonly<Record<string, unknown>>;
  /** Ids of the failed nodes, in the order they failed. */
  readonly failedNodes: readonly string[];
  /** Ids of the nodes that never ran because a node they depend on failed. */
  readonly skippedNodes: readonly string[];
  /** Ids of the nodes that completed, in completion order. */
  readonly completedNodes: readonly string[];
  /** Outputs of those nodes, by id. */
  readonly partialResults: PartialResults;
  /** For each failed map node, by id: the positions of its elements that failed, in order. */
  readonly failedElements: Readonly<Record<string, readonly number[]>>;

  constructor(args: {
    pipelineId: string;
    runId: string;
    errors: Record<string, unknown>;
    failedNodes: readonly string[];
    skippedNodes: readonly string[];
    completedNodes: readonly string[];
    partialResults: PartialResults;
  }) {
    const detail = args.failedNodes.map((id) => `${id}: ${describeReason(args.errors[id])}`).join('; ');
    super(`Pipeline "${args.pipelineId}" failed: ${args.failedNodes.length} node(s) failed (${detail})`, {
      cause: args.errors[args.failedNodes[0] ?? ''],
    });
    this.pipelineId = args.pipelineId;
    this.runId = args.runId;
    this.errors = args.errors;
    this.failedNodes = args.failedNodes;
    this.skippedNodes = args.skippedNodes;
    this.completedNodes = args.completedNodes;
    this.partialResults = args.partialResults;
    const failedElements: Record<string, readonly number[]> = {};
    for (const id of args.failedNodes) {
      const error = args.errors[id];
      if (error instanceof MapElementsFailedException) Object.defineProperty(failedElements, id, { value: error.failedIndexes, enumerable: true });
    }
    this.failedElements = failedElements;
  }

  override get name(): string {
    return 'PipelineFailedException';
  }
}

/** A map node's input is not an array: the node fails (before any element runs). */
export class MapInputError extends OrchestratorException {
  override readonly code = 'ERR_MAP_INPUT';
  readonly nodeId: string;
  readonly pipelineId: string;
  readonly runId: string;

  constructor(args: { nodeId: string; pipelineId: string; runId: string; input: unknown }) {
    super(`Map node "${args.nodeId}" of pipeline "${args.pipelineId}" takes an array, got ${describeType(args.input)}`);
    this.nodeId = args.nodeId;
    this.pipelineId = args.pipelineId;
    this.runId = args.runId;
  }

  override get name(): string {
    return 'MapInputError';
  }
}

/**
 * With `failFast: false`, elements of a map node failed (after their retries): the other
 * elements ran to their end, then the node failed with this. Each element's error
 * carries its `index`.
 */
export class MapElementsFailedException extends OrchestratorException {
  override readonly code = 'ERR_MAP_ELEMENTS_FAILED';
  readonly nodeId: string;
  readonly pipelineId: string;
  readonly runId: string;
  /** Positions of the elements that failed, in order. */
  readonly failedIndexes: readonly number[];
  /** The error of each failed element, in the order of `failedIndexes`. */
  readonly errors: readonly unknown[];
  /** How many elements the input held. */
  readonly elements: number;

  constructor(args: { nodeId: string; pipelineId: string; runId: string; failedIndexes: readonly number[]; errors: readonly unknown[]; elements: number }) {
    const shown = args.failedIndexes.slice(0, 10).join(', ') + (args.failedIndexes.length > 10 ? ', ...' : '');
    super(
      `${args.failedIndexes.length} of ${args.elements} element(s) of map node "${args.nodeId}" of pipeline "${args.pipelineId}" ` +
        `failed (index ${shown}; first: ${describeReason(args.errors[0])})`,
      { cause: args.errors[0] },
    );
    this.nodeId = args.nodeId;
    this.pipelineId = args.pipelineId;
    this.runId = args.runId;
    this.failedIndexes = args.failedIndexes;
    this.errors = args.errors;
    this.elements = args.elements;
  }

  override get name(): string {
    return 'MapElementsFailedException';
  }
}

/** The executor holds `maxConcurrentPipelines` runs and `maxQueuedPipelines` waiting ones. */
export class QueueFullException extends OrchestratorException {
  override readonly code = 'ERR_QUEUE_FULL';
  readonly pipelineId: string;
  readonly maxQueuedPipelines: number;

  constructor(args: { pipelineId: string; maxConcurrentPipelines: number; maxQueuedPipelines: number }) {
    super(
      `Pipeline "${args.pipelineId}" was refused: ${args.maxConcurrentPipelines} run(s) are in flight and ` +
        `${args.maxQueuedPipelines} waiting, the most the executor takes`,
    );
    this.pipelineId = args.pipelineId;
    this.maxQueuedPipelines = args.maxQueuedPipelines;
  }

  override get name(): string {
    return 'QueueFullException';
  }
}

/**
 * A pipeline definition is wrong (thrown before any node runs), or a node's module
 * could not be loaded or does not export a function (the run fails as soon as a worker
 * finds out, and no later node of that run starts).
 */
export class PipelineDefinitionError extends OrchestratorException {
  override readonly code = 'ERR_PIPELINE_DEFINITION';
  readonly pipelineId: string | undefined;
  /** The node at fault, when there is one. */
  readonly nodeId: string | undefined;

  constructor(message: string, args: { pipelineId?: string; nodeId?: string; cause?: unknown } = {}) {
    super(message, args.cause === undefined ? undefined : { cause: args.cause });
    this.pipelineId = args.pipelineId;
    this.nodeId = args.nodeId;
  }

  override get name(): string {
    return 'PipelineDefinitionError';
  }
}

/**
 * The worker thread running a node died under it: the node called `process.exit()`,
 * threw from a callback after it returned, or ran out of memory.
 */
export class WorkerCrashedException extends OrchestratorException {
  override readonly code = 'ERR_WORKER_CRASHED';
  readonly nodeId: string;
  readonly pipelineId: string;
  readonly runId: string;
  /** The thread's exit code, when it exited. */
  readonly exitCode: number | undefined;

  constructor(args: { nodeId: string; pipelineId: string; runId: string; exitCode?: number; cause?: unknown }) {
    const how = args.exitCode === undefined ? 'crashed' : `exited with code ${args.exitCode}`;
    super(
      `The worker thread running node "${args.nodeId}" of pipeline "${args.pipelineId}" ${how}`,
      args.cause === undefined ? undefined : { cause: args.cause },
    );
    this.nodeId = args.nodeId;
    this.pipelineId = args.pipelineId;
    this.runId = args.runId;
    this.exitCode = args.exitCode;
  }

  override get name(): string {
    return 'WorkerCrashedException';
  }
}

/** A node returned a value that cannot cross threads (a function, a class instance with methods...). */
export class NodeOutputError extends OrchestratorException {
  override readonly code = 'ERR_NODE_OUTPUT';
  readonly nodeId: string;
  readonly pipelineId: string;
  readonly runId: string;

  constructor(args: { nodeId: string; pipelineId: string; runId: string; cause?: unknown }) {
    super(
      `Node "${args.nodeId}" of pipeline "${args.pipelineId}" returned a value that cannot be ` +
        `sent between threads${args.cause instanceof Error ? `: ${args.cause.message}` : ''}`,
      args.cause === undefined ? undefined : { cause: args.cause },
    );
    this.nodeId = args.nodeId;
    this.pipelineId = args.pipelineId;
    this.runId = args.runId;
  }

  override get name(): string {
    return 'NodeOutputError';
  }
}

/** A node threw something that is not an Error (a string, a number, a plain object). */
export class NonErrorThrownException extends OrchestratorException {
  override readonly code = 'ERR_NON_ERROR_THROWN';
  readonly nodeId: string;
  readonly pipelineId: string;
  readonly runId: string;
  /** The thrown value, as it crossed threads. */
  readonly value: unknown;

  constructor(args: { nodeId: string; pipelineId: string; runId: string; value: unknown }) {
    super(`Node "${args.nodeId}" of pipeline "${args.pipelineId}" threw a non-Error value: ${describeReason(args.value)}`);
    this.nodeId = args.nodeId;
    this.pipelineId = args.pipelineId;
    this.runId = args.runId;
    this.value = args.value;
  }

  override get name(): string {
    return 'NonErrorThrownException';
  }
}

/** The executor is closing or closed and takes no new runs. */
export class ExecutorClosedException extends OrchestratorException {
  override readonly code = 'ERR_EXECUTOR_CLOSED';

  constructor(message = 'The executor is closed and accepts no new runs') {
    super(message);
  }

  override get name(): string {
    return 'ExecutorClosedException';
  }
}

/** The executor's backend cannot reach what it runs nodes through (the BullMQ backend: Redis). */
export class BackendUnavailableException extends OrchestratorException {
  override readonly code = 'ERR_BACKEND_UNAVAILABLE';
  /** The backend's name, such as `'bullmq'`. */
  readonly backend: string;

  constructor(message: string, args: { backend: string; cause?: unknown }) {
    super(message, args.cause === undefined ? undefined : { cause: args.cause });
    this.backend = args.backend;
  }

  override get name(): string {
    return 'BackendUnavailableException';
  }
}

/**
 * A feature needs packages that are not installed: the BullMQ backend needs bullmq and
 * ioredis, optional peer dependencies that the embedded pool does without.
 */
export class MissingPackageError extends OrchestratorException {
  override readonly code = 'ERR_MISSING_PACKAGE';
  /** The packages to install. */
  readonly packages: readonly string[];

  constructor(message: string, args: { packages: readonly string[]; cause?: unknown }) {
    super(message, args.cause === undefined ? undefined : { cause: args.cause });
    this.packages = args.packages;
  }

  override get name(): string {
    return 'MissingPackageError';
  }
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
  return typeof value === 'string' ? 'a string' : `${typeof value === 'undefined' ? '' : 'a '}${typeof value}`;
}

function describeReason(reason: unknown): string {
  if (reason instanceof Error) return `${reason.name}: ${reason.message}`;
  if (typeof reason === 'string') return reason;
  if (reason === undefined) return 'no reason given';
  try {
    return JSON.stringify(reason) ?? String(reason);
  } catch {
    return String(reason);
  }
}
