import { availableParallelism } from 'node:os';
import type { ResourceLimits } from 'node:worker_threads';
import { ModuleRoots } from './plan/module-roots';
import type { Backend, DispatcherOptions } from './pool/dispatcher';
import type { RecycleLimits } from './pool/recycling';
import { MAX_TIMER_MS } from './shared/delay';
import { show } from './shared/show';

/** Deadlines. Each may be `Infinity` to mean "no deadline". */
export interface TimeoutOptions {
  /**
   * How long a node may run, counted from when its code starts in the worker. A node's
   * own `timeoutMs` takes precedence.
   * @default 30000
   */
  readonly nodeTimeoutMs?: number;
  /**
   * How long a whole run may take, counted from the `executePipeline` call.
   * @default 300000
   */
  readonly pipelineTimeoutMs?: number;
  /**
   * After a node's `ctx.signal` aborts, how long it has to settle before the thread
   * running it is terminated.
   * @default 100
   */
  readonly cleanupGraceMs?: number;
}

/** Options of `new PipelineExecutor(options)`. */
export interface ExecutorOptions {
  /** Default deadlines of every run; a run's own `timeouts` override them field by field. */
  readonly timeouts?: TimeoutOptions;
  /**
   * Worker threads in the pool, kept warm for the executor's lifetime.
   * @default os.availableParallelism()
   */
  readonly threads?: number;
  /**
   * Node tasks a thread holds at once. Asynchronous nodes interleave on a thread;
   * synchronous ones take turns.
   * @default 1024
   */
  readonly tasksPerThread?: number;
  /**
   * V8 heap limits of each worker thread. A node that exceeds them fails its run with
   * a `WorkerCrashedException`; the thread is replaced.
   * @default undefined (Node's defaults)
   */
  readonly resourceLimits?: ResourceLimits;
  /**
   * Replaces a worker thread, between its nodes, once it has run `afterNodes` nodes or
   * once its V8 heap in use after a node (garbage not yet collected included) passes
   * `heapUsedMb`, to contain code that leaks. The pool then keeps one spare thread
   * started, which takes a due thread's place at once: no run waits for a thread to
   * start, and none fails. The replaced thread finishes the nodes it runs, gives back
   * those it has not started, and is terminated (a `'threadExit'` with reason `'recycled'`).
   * @default undefined (threads are kept for the executor's lifetime)
   */
  readonly recycleThreads?: RecycleOptions;
  /**
   * How long `close()` lets in-flight runs finish before cancelling them.
   * @default 10000
   */
  readonly closeTimeoutMs?: number;
  /**
   * Runs in flight at once; more wait in order (the pipeline timeout counts the wait).
   * @default Infinity
   */
  readonly maxConcurrentPipelines?: number;
  /**
   * Runs in flight at once with the same `concurrencyKey`; more wait, in order of
   * priority and then arrival, while runs of other keys go ahead (the pipeline timeout
   * counts the wait). Runs without a key are bounded by `maxConcurrentPipelines` only.
   * @default Infinity
   */
  readonly maxConcurrentPerKey?: number;
  /**
   * Runs waiting at once; a run beyond it is refused with a `QueueFullException`.
   * @default Infinity
   */
  readonly maxQueuedPipelines?: number;
  /**
   * A node's `ctx.progress(value)` reaches the caller at most this often (the latest
   * value; those in between are dropped), so a chatty node cannot flood the main thread.
   * @default 50
   */
  readonly progressIntervalMs?: number;
  /**
   * Where nodes run: this process's own worker threads by default, or another backend
   * such as `bullmqBackend({ connection })`, whose worker processes may run on any
   * number of machines. `threads`, `tasksPerThread` and `resourceLimits` then apply to
   * those processes' own options instead.
   * @default the embedded piscina pool
   */
  readonly backend?: Backend;
  /**
   * Directories whose modules the nodes may name: a node whose module is not a file
   * inside one of them (after resolving `..` and symbolic links), or is a package name
   * or a `node:` built-in, fails its run's definition check with a
   * `PipelineDefinitionError` before anything is loaded. For services that run
   * definitions from callers they do not fully trust. With a `backend`, the worker
   * processes take theirs on their command line (`--module-root`) instead.
   * @default undefined (any absolute path)
   */
  readonly moduleRoots?: readonly string[];
}

/** When to replace a worker thread (see `ExecutorOptions.recycleThreads`); at least one is needed. */
export interface RecycleOptions {
  /** Nodes a thread runs to their end before it is replaced. */
  readonly afterNodes?: number;
  /** Heap in use after a node, in MiB, past which its thread is replaced. */
  readonly heapUsedMb?: number;
}

/** Timeouts after defaults and overrides are applied. */
export interface ResolvedTimeouts {
  readonly nodeTimeoutMs: number;
  readonly pipelineTimeoutMs: number;
  readonly cleanupGraceMs: number;
}

export interface ResolvedOptions extends DispatcherOptions {
  readonly timeouts: ResolvedTimeouts;
  readonly closeTimeoutMs: number;
  readonly maxConcurrentPipelines: number;
  readonly maxConcurrentPerKey: number;
  readonly maxQueuedPipelines: number;
  readonly backend: Backend | undefined;
  readonly moduleRoots: ModuleRoots | undefined;
}

export const DEFAULT_TIMEOUTS: ResolvedTimeouts = Object.freeze({
  nodeTimeoutMs: 30_000,
  pipelineTimeoutMs: 300_000,
  cleanupGraceMs: 100,
});

export const DEFAULTS = Object.freeze({
  threads: availableParallelism(),
  tasksPerThread: 1024,
  closeTimeoutMs: 10_000,
  maxConcurrentPipelines: Infinity,
  maxConcurrentPerKey: Infinity,
  maxQueuedPipelines: Infinity,
  progressIntervalMs: 50,
});

const TIMEOUT_KEYS = ['nodeTimeoutMs', 'pipelineTimeoutMs', 'cleanupGraceMs'] as const;
const OPTION_KEYS = [
  'timeouts',
  'threads',
  'tasksPerThread',
  'resourceLimits',
  'closeTimeoutMs',
  'maxConcurrentPipelines',
  'maxConcurrentPerKey',
  'maxQueuedPipelines',
  'progressIntervalMs',
  'backend',
  'moduleRoots',
  'recycleThreads',
] as const;
const RECYCLE_KEYS = ['afterNodes', 'heapUsedMb'] as const;
const RESOURCE_LIMIT_KEYS = ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb'] as const;

/**
 * Validates executor options and fills in defaults.
 * @throws {TypeError} for an unknown key or a value of the wrong type.
 * @throws {RangeError} for a value out of range.
 */
export function resolveOptions(options: ExecutorOptions | undefined): ResolvedOptions {
  if (options === undefined) options = {};
  expectPlainObject(options, 'options');
  rejectUnknownKeys(options, OPTION_KEYS, 'options');
  const opts = options as ExecutorOptions;

  const threads = integer('threads', opts.threads ?? DEFAULTS.threads, 1, false);
  const tasksPerThread = integer('tasksPerThread', opts.tasksPerThread ?? DEFAULTS.tasksPerThread, 1, false);
  const maxConcurrentPipelines = integer('maxConcurrentPipelines', opts.maxConcurrentPipelines ?? DEFAULTS.maxConcurrentPipelines, 1, true);
  const maxConcurrentPerKey = integer('maxConcurrentPerKey', opts.maxConcurrentPerKey ?? DEFAULTS.maxConcurrentPerKey, 1, true);
  const maxQueuedPipelines = integer('maxQueuedPipelines', opts.maxQueuedPipelines ?? DEFAULTS.maxQueuedPipelines, 0, true);
  const closeTimeoutMs = opts.closeTimeoutMs ?? DEFAULTS.closeTimeoutMs;
  expectDuration(closeTimeoutMs, 'closeTimeoutMs');
  const progressIntervalMs = opts.progressIntervalMs ?? DEFAULTS.progressIntervalMs;
  expectDuration(progressIntervalMs, 'progressIntervalMs');
  if (progressIntervalMs === Infinity) {
    throw new RangeError(`Expected \`progressIntervalMs\` to be a finite number of milliseconds, got ${show(progressIntervalMs)}`);
  }

  const backend = opts.backend;
  if (backend !== undefined && (backend === null || typeof backend !== 'object' || typeof backend.createDispatcher !== 'function')) {
    throw new TypeError(`Expected \`backend\` to be a backend such as bullmqBackend({ ... }), got ${show(backend)}`);
  }
  if (backend !== undefined) {
    // They would size a pool this process does not start: silently ignored, they would mislead.
    for (const key of ['threads', 'tasksPerThread', 'resourceLimits', 'recycleThreads'] as const) {
      if (opts[key] !== undefined) {
        throw new TypeError(`\`${key}\` sizes the embedded pool and has no effect with a \`backend\`: the worker processes take it on their command line`);
      }
    }
    if (opts.moduleRoots !== undefined) {
      throw new TypeError('`moduleRoots` applies where the nodes run: with a `backend`, give the worker processes theirs (--module-root <dir>)');
    }
  }
  const moduleRoots = opts.moduleRoots === undefined ? undefined : ModuleRoots.of(opts.moduleRoots, 'moduleRoots');

  let resourceLimits: ResourceLimits | undefined;
  if (opts.resourceLimits !== undefined) {
    expectPlainObject(opts.resourceLimits, 'resourceLimits');
    rejectUnknownKeys(opts.resourceLimits, RESOURCE_LIMIT_KEYS, 'resourceLimits');
    for (const key of RESOURCE_LIMIT_KEYS) {
      const value = opts.resourceLimits[key];
      if (value !== undefined) expectPositiveFinite(value, `resourceLimits.${key}`);
    }
    resourceLimits = { ...opts.resourceLimits };
  }

  return {
    timeouts: resolveTimeouts(DEFAULT_TIMEOUTS, opts.timeouts, 'timeouts'),
    recycleThreads: resolveRecycle(opts.recycleThreads),
    threads,
    tasksPerThread,
    resourceLimits,
    closeTimeoutMs,
    maxConcurrentPipelines,
    maxConcurrentPerKey,
    maxQueuedPipelines,
    progressIntervalMs,
    backend,
    moduleRoots,
  };
}

function resolveRecycle(options: RecycleOptions | undefined): RecycleLimits | undefined {
  if (options === undefined) return undefined;
  expectPlainObject(options, 'recycleThreads');
  rejectUnknownKeys(options, RECYCLE_KEYS, 'recycleThreads');
  if (options.afterNodes === undefined && options.heapUsedMb === undefined) {
    throw new TypeError('Expected `recycleThreads` to give `afterNodes`, `heapUsedMb` or both, got `{}`');
  }
  const afterNodes = options.afterNodes === undefined ? Infinity : integer('recycleThreads.afterNodes', options.afterNodes, 1, false);
  if (options.heapUsedMb !== undefined) expectPositiveFinite(options.heapUsedMb, 'recycleThreads.heapUsedMb');
  return { afterNodes, heapUsedBytes: options.heapUsedMb === undefined ? Infinity : options.heapUsedMb * 1024 * 1024 };
}

/**
 * Applies `overrides` over `base`, field by field.
 * @throws {TypeError|RangeError} naming the field for a bad value or an unknown key.
 */
export function resolveTimeouts(
  base: ResolvedTimeouts,
  overrides: TimeoutOptions | undefined,
  path: string,
): ResolvedTimeouts {
  if (overrides === undefined) return base;
  expectPlainObject(overrides, path);
  rejectUnknownKeys(overrides, TIMEOUT_KEYS, path);
  const out = { ...base };
  for (const key of TIMEOUT_KEYS) {
    const value = overrides[key];
    if (value === undefined) continue;
    expectDuration(value, `${path}.${key}`);
    out[key] = value;
  }
  return out;
}

/** A duration in milliseconds: a non-negative number, or `Infinity`. */
export function expectDuration(value: unknown, name: string): asserts value is number {
  const expected = `Expected \`${name}\` to be a number of milliseconds from 0 to ${MAX_TIMER_MS} (about 24.8 days), or Infinity`;
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`${expected}, got ${show(value)}`);
  // A longer timer fires after 1 ms: refused rather than cut short.
  if (value < 0 || (value > MAX_TIMER_MS && value !== Infinity)) throw new RangeError(`${expected}, got ${show(value)}`);
}

/** An integer of at least `min` (or `Infinity`, where `infinite`). */
function integer(name: string, value: unknown, min: number, infinite: boolean): number {
  const expected = `an integer${infinite ? ' or Infinity' : ''} of at least ${min}`;
  if (typeof value !== 'number' || !(Number.isInteger(value) || (infinite && value === Infinity))) {
    throw new TypeError(`Expected \`${name}\` to be ${expected}, got ${show(value)}`);
  }
  if (value < min) throw new RangeError(`Expected \`${name}\` to be ${expected}, got ${show(value)}`);
  return value;
}

function expectPositiveFinite(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`Expected \`${name}\` to be a positive finite number, got ${show(value)}`);
  }
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`Expected \`${name}\` to be a positive finite number, got ${show(value)}`);
  }
}

export function expectPlainObject(value: unknown, name: string): asserts value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`Expected \`${name}\` to be an object, got ${show(value)}`);
  }
}

export function rejectUnknownKeys(value: object, known: readonly string[], name: string): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new TypeError(`Unknown option \`${name}.${key}\`; known options are: ${known.join(', ')}`);
    }
  }
}

