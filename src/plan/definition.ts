/**
 * What a caller writes: a pipeline request and its node definitions. Checked in
 * `check.ts`, planned in `plan.ts`.
 */
import type { TimeoutOptions } from '../options';

/** One node of a pipeline: a function exported by a module, run in a worker thread. */
export interface NodeDefinition<Params = unknown> {
  /** Unique within the pipeline; names the node in results and errors. */
  readonly id: string;
  /**
   * Absolute path or `file:` URL (a string or a `URL`, such as
   * `new URL('./nodes.mjs', import.meta.url)`) of a CommonJS or ESM module (a TypeScript
   * one when the process runs under ts-node). Resolved in the worker thread.
   */
  readonly module: string | URL;
  /**
   * The named export to call.
   * @default the module's default export (or `module.exports` itself when it is a function)
   */
  readonly export?: string;
  /** Passed to the node as `ctx.params`. Must be cloneable between threads. */
  readonly params?: Params;
  /**
   * Ids of the nodes whose outputs this node takes. When no node of the pipeline has
   * `dependsOn`, the nodes form a chain in list order.
   */
  readonly dependsOn?: readonly string[];
  /** This node's own timeout, in place of the run's `nodeTimeoutMs`. */
  readonly timeoutMs?: number;
  /**
   * How many more attempts the node gets after a failure (its error, its thread
   * crashing under it, or a timeout with `retryTimeouts`). The pipeline timeout bounds
   * all attempts together.
   * @default 0
   */
  readonly retries?: number;
  /**
   * Wait before attempt n + 1: a random time up to `min(maxMs, baseMs * 2 ** (n - 1))`
   * (exponential backoff with full jitter).
   * @default { baseMs: 100, maxMs: 10000 }
   */
  readonly backoff?: { readonly baseMs?: number; readonly maxMs?: number };
  /**
   * Called on the main thread with the error of a failed attempt and its number (1 for
   * the first); return false to fail at once.
   * @default () => true
   */
  readonly retryOn?: (error: unknown, attempt: number) => boolean;
  /**
   * Retry after a node timeout too.
   * @default false
   */
  readonly retryTimeouts?: boolean;
  /**
   * A map node: its input must be an array, and its function runs once per element, in
   * parallel across the threads (`ctx.index` is the element's position); its output is
   * the array of the results, in input order. The node's timeout, retries and `retryOn`
   * apply to each element. `{ concurrency }` bounds the elements of one run in flight
   * at once.
   * @default false
   */
  readonly map?: boolean | MapOptions;
}

/** The options of a map node (see {@link NodeDefinition.map}). */
export interface MapOptions {
  /**
   * Elements of one run in flight at once (sent to the threads, running or waiting
   * there); the next starts as one ends. A positive integer, or `Infinity`.
   * @default Infinity
   */
  readonly concurrency?: number;
}

/** What `executePipeline` takes. */
export interface PipelineRequest<Input = unknown> {
  /**
   * A label of the pipeline; many concurrent runs may share it.
   * @default 'pipeline'
   */
  readonly pipelineId?: string;
  readonly nodes: readonly NodeDefinition[];
  /** The input of the first node (of every node without dependencies, in a DAG). */
  readonly initialInput?: Input;
  /** Aborting it cancels the run with a `CancellationException` carrying `signal.reason`. */
  readonly signal?: AbortSignal;
  /** This run's deadlines, over the executor's, field by field. */
  readonly timeouts?: TimeoutOptions;
  /**
   * `true`: a failing node stops the run at once (its in-flight siblings are stopped)
   * and the run rejects with that node's error. `false`: branches that do not depend on
   * the failed node go on to the end, then the run rejects with a
   * `PipelineFailedException` holding every failed node's error.
   * @default true
   */
  readonly failFast?: boolean;
  /**
   * Called on the main thread with what nodes report through `ctx.progress(value)`:
   * at most one call per node every `progressIntervalMs`, with the latest value.
   */
  readonly onProgress?: (event: ProgressEvent) => void;
  /**
   * Among runs waiting for admission and node tasks waiting for a thread, a higher
   * priority goes first; equal priorities keep their order of arrival. Any finite number.
   * @default 0
   */
  readonly priority?: number;
  /**
   * Who the run is for (a tenant, a user, a kind of request). Node tasks waiting for a
   * thread are served round-robin across keys (runs without one share a key of their
   * own), so a burst of one key's runs does not hold back the others'; the executor's
   * `maxConcurrentPerKey` bounds the runs in flight per key. A non-empty string.
   * @default undefined (no key)
   */
  readonly concurrencyKey?: string;
  /**
   * While a run with the same `dedupeKey` is in flight, this call joins it instead of
   * starting another, and gets the same result or error (the rest of this request is
   * checked, then unused). Cancelling one caller's handle (or aborting its `signal`)
   * detaches that caller only: the run stops once every caller has cancelled. A
   * non-empty string.
   * @default undefined (every call starts a run)
   */
  readonly dedupeKey?: string;
}

/** A node's `ctx.progress(value)`, as it reaches the main thread. */
export interface ProgressEvent {
  readonly runId: string;
  readonly pipelineId: string;
  readonly nodeId: string;
  /** The element's position, for a map node's element; undefined for any other node. */
  readonly index?: number;
  readonly value: unknown;
}
