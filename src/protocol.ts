/**
 * The typed messages between the main thread and the worker runtime, and the codec
 * that carries errors across: an Error object is never posted as is; it travels as
 * a {@link SerializedError} and is rebuilt on the main thread with its class (for
 * built-in classes), name, message, worker-side stack, own properties and cause.
 */
import type { BoardMemory } from './board';

/** `workerData` of every worker thread. */
export interface WorkerConfig {
  readonly board: BoardMemory;
  /** `performance.timeOrigin` of the main thread: workers stamp times on its clock. */
  readonly mainTimeOrigin: number;
  /**
   * ts-node's `register/transpile-only` entry when the main process runs under ts-node:
   * a thread registers it the first time it loads a TypeScript node module.
   */
  readonly tsNodeRegister: string | undefined;
  /** A node's `ctx.progress()` reaches the main thread at most this often. */
  readonly progressIntervalMs: number;
}

/** A node as the worker needs it. */
export interface TaskNode {
  readonly id: string;
  readonly module: string;
  readonly export: string | undefined;
  readonly params: unknown;
  /** W3C traceparent of the node's span, when tracing records. */
  readonly trace?: string;
}

/** What one piscina task carries: the segments sent to one thread in one turn. */
export interface BatchTask {
  readonly tasks: readonly SegmentTask[];
}

/** One segment: its nodes run one after another in one worker. */
export interface SegmentTask {
  readonly slot: number;
  readonly gen: number;
  readonly runId: string;
  readonly pipelineId: string;
  /**
   * The segment's nodes; absent when the thread already has them under `segment` (a
   * segment of a cached plan, sent once per thread).
   */
  readonly nodes?: readonly TaskNode[];
  /** Id of a cached plan's segment, under which the thread keeps its nodes. */
  readonly segment?: number;
  /** Index of the node to start with (later than 0 when a task is resumed elsewhere). */
  readonly first: number;
  /** Attempt number of each node (`ctx.attempt`, 1 for the first). */
  readonly attempts: readonly number[];
  /** Report each node's start, not only its end. */
  readonly reportStarts: boolean;
  /** Input of `nodes[first]`. */
  readonly input: unknown;
}

/** A node started (sent only when the segment asks for it). */
export interface StartReport {
  readonly s: number;
  readonly g: number;
  readonly n: number;
  /** Its start, on the main thread's clock. */
  readonly st: number;
}

/** The latest value a node gave `ctx.progress()`, sent at most once per interval. */
export interface ProgressReport {
  readonly s: number;
  readonly g: number;
  readonly n: number;
  readonly p: unknown;
}

/** How a segment ended, sent on the control port after its reports. */
export interface SegmentEnd {
  /** Slot and generation of the task. */
  readonly s: number;
  readonly g: number;
  readonly end: SegmentOutcome;
}

/** How a segment ended in the worker. */
export type SegmentOutcome =
  /** Every node completed; each output was reported before this. */
  | { readonly kind: 'done' }
  | { readonly kind: 'failed'; readonly node: number; readonly error: Thrown }
  /** A stop was requested and the node settled (or had not started). */
  | { readonly kind: 'stopped'; readonly node: number }
  /** The node's module did not load, or has no such function export. */
  | { readonly kind: 'load-failed'; readonly node: number; readonly message: string; readonly error: Thrown }
  /** The node's output cannot be cloned to the main thread. */
  | { readonly kind: 'unclonable'; readonly node: number; readonly error: Thrown };

/** A node's completion, sent in batches on the thread's control port. */
export interface NodeReport {
  /** Slot of the task. */
  readonly s: number;
  /** Generation of the task in that slot. */
  readonly g: number;
  /** Index of the node within the segment. */
  readonly n: number;
  /** Output; absent when it moved on to the next node (`transfer()`). */
  readonly o: unknown;
  /** 1 when the output was moved (`transfer()`), not copied: on to the next node, or to us. */
  readonly m: 0 | 1;
  /** Start and end, on the main thread's clock. */
  readonly t0: number;
  readonly t1: number;
}

/**
 * The last word of a thread about to die because of a node: it called
 * `process.exit()`, or threw from a callback (an uncaught exception or rejection).
 * Found through the node's async context, so it names the node even when its own
 * call had long returned.
 */
export interface CrashNote {
  readonly kind: 'crash';
  readonly runId: string;
  readonly nodeId: string;
  /** What was thrown, if anything. */
  readonly error: Thrown | undefined;
}

/** What a thread sends on its control port: batches of reports and ends, in order, or its last word. */
export type ControlMessage = readonly ControlEntry[] | CrashNote;
export type ControlEntry = NodeReport | StartReport | ProgressReport | SegmentEnd | Pong;

/** First message of a worker thread, on `parentPort` (surfacing as the pool's `'message'`). */
export interface WorkerHello {
  readonly lukhasWorkerHello: true;
  readonly threadId: number;
  /** The thread's end of its control channel: reports come in, stop wake-ups go out. */
  readonly port: import('node:worker_threads').MessagePort;
  /** The thread's card (see `board.ts`). */
  readonly card: SharedArrayBuffer;
}

export function isWorkerHello(message: unknown): message is WorkerHello {
  return typeof message === 'object' && message !== null && (message as WorkerHello).lukhasWorkerHello === true;
}

/** A wake-up on a thread's control port: look at the board for stop requests. */
export const WAKE = 0;

/** A health check on a thread's control port; the thread answers `[{ pong }]` at once. */
export interface Ping {
  readonly ping: number;
}

export interface Pong {
  readonly pong: number;
}

// ---------------------------------------------------------------------------
// Errors across threads.

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly stack: string | undefined;
  /** The nearest built-in class in the error's prototype chain. */
  readonly builtin: BuiltinName;
  /** Own enumerable properties other than the standard ones (`code`, `errno`...). */
  readonly props: Record<string, unknown>;
  readonly cause?: Thrown;
  /** For an AggregateError. */
  readonly errors?: readonly Thrown[];
}

/** A thrown value: an error, or anything else that was thrown. */
export type Thrown = { readonly error: SerializedError } | { readonly value: unknown };

const BUILTINS = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
  AggregateError,
  DOMException,
} as const;
type BuiltinName = keyof typeof BUILTINS;
const BUILTIN_ORDER = Object.keys(BUILTINS).reverse() as BuiltinName[]; // most specific first
const STANDARD_KEYS = new Set(['name', 'message', 'stack', 'cause', 'errors']);
const MAX_DEPTH = 8;

/** Turns a thrown value into something `postMessage` can carry. */
export function serializeThrown(thrown: unknown, depth = 0): Thrown {
  if (!(thrown instanceof Error) && !isDomException(thrown)) {
    return { value: cloneable(thrown) };
  }
  const error = thrown as Error;
  const props: Record<string, unknown> = {};
  for (const key of Object.keys(error)) {
    if (STANDARD_KEYS.has(key)) continue;
    props[key] = cloneable((error as unknown as Record<string, unknown>)[key]);
  }
  const builtin = BUILTIN_ORDER.find((name) => error instanceof BUILTINS[name]) ?? 'Error';
  const serialized: {
    -readonly [K in keyof SerializedError]: SerializedError[K];
  } = {
    name: safeString(error.name, 'Error'),
    message: safeString(error.message, ''),
    stack: typeof error.stack === 'string' ? error.stack : undefined,
    builtin,
    props,
  };
  if (depth < MAX_DEPTH && 'cause' in error && error.cause !== undefined && error.cause !== thrown) {
    serialized.cause = serializeThrown(error.cause, depth + 1);
  }
  if (error instanceof AggregateError && Array.isArray(error.errors) && depth < MAX_DEPTH) {
    serialized.errors = error.errors.map((inner: unknown) => serializeThrown(inner, depth + 1));
  }
  return { error: serialized };
}

/** Rebuilds a thrown value on the main thread. */
export function deserializeThrown(thrown: Thrown): unknown {
  if (!('error' in thrown)) return thrown.value;
  const s = thrown.error;
  let error: Error;
  if (s.builtin === 'DOMException') {
    error = new DOMException(s.message, s.name);
  } else if (s.builtin === 'AggregateError') {
    error = new AggregateError((s.errors ?? []).map(deserializeThrown), s.message);
  } else {
    error = new BUILTINS[s.builtin](s.message);
  }
  if (error.name !== s.name) {
    Object.defineProperty(error, 'name', { value: s.name, writable: true, configurable: true, enumerable: false });
  }
  if (s.stack !== undefined) {
    Object.defineProperty(error, 'stack', { value: s.stack, writable: true, configurable: true, enumerable: false });
  }
  if (s.cause !== undefined) {
    Object.defineProperty(error, 'cause', {
      value: deserializeThrown(s.cause),
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
  Object.assign(error, s.props);
  return error;
}

function isDomException(value: unknown): boolean {
  return typeof DOMException === 'function' && value instanceof DOMException;
}

function safeString(value: unknown, fallback: string): string {
  return typeof value === 'string' ? value : value === undefined ? fallback : String(value);
}

/** The value itself when it can cross threads, its description otherwise. */
function cloneable(value: unknown): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol')) {
    return value;
  }
  try {
    structuredClone(value);
    return value;
  } catch {
    return typeof value === 'function' ? `[Function ${value.name || 'anonymous'}]` : String(value);
  }
}
