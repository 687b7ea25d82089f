/**
 * The typed messages between the main thread and the worker runtime. Errors in them
 * travel as `Thrown` (see `thrown.ts`), settlements as `SentSettlement`.
 */
import type { BoardMemory } from './board';
import type { SentSettlement } from './settlement';
import type { Thrown } from './thrown';

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
  /** Write the thread's heap in use on its card after each node (for thread recycling). */
  readonly measureHeap: boolean;
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
  /** Forget the nodes of cached plans' segments kept so far, before taking these. */
  readonly forget?: boolean;
}

/**
 * The run a segment belongs to: one object per run, which every segment of the run
 * shares, so that a batch of its segments carries the ids once (a message copies an
 * object it holds twice only once).
 */
export interface RunRef {
  readonly runId: string;
  readonly pipelineId: string;
}

/** Shared attempt lists, by length and last attempt (see {@link attemptsOf}). */
const sharedAttempts: (readonly number[])[][] = [];

/**
 * `attempts` for a segment of `nodes` nodes, each on its first attempt but the last, on
 * attempt `last` (a map element is one node): for short lists the same frozen array
 * every time, so a batch of segments carries it once.
 */
export function attemptsOf(nodes: number, last = 1): readonly number[] {
  if (nodes > 16 || last > 16) return attemptList(nodes, last);
  const row = (sharedAttempts[nodes] ??= []);
  return (row[last] ??= Object.freeze(attemptList(nodes, last)));
}

function attemptList(nodes: number, last: number): number[] {
  const list = new Array<number>(nodes).fill(1);
  list[nodes - 1] = last;
  return list;
}

/** One segment: its nodes run one after another in one worker. */
export interface SegmentTask {
  readonly slot: number;
  readonly gen: number;
  readonly run: RunRef;
  /**
   * The segment's nodes; absent when the thread already has them under `segment` (a
   * segment of a cached plan, sent once per thread).
   */
  readonly nodes?: readonly TaskNode[];
  /** Id of a cached plan's segment, under which the thread keeps its nodes. */
  readonly segment?: number;
  /** Position of the node to start with (later than 0 when a task is resumed elsewhere). */
  readonly first: number;
  /** For an element of a map node: its position in the node's input (`ctx.index`). */
  readonly element?: number;
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
export interface EndReport {
  /** Slot and generation of the task. */
  readonly s: number;
  readonly g: number;
  readonly end: SentSettlement;
}

/** A node's completion, sent in batches on the thread's control port. */
export interface NodeReport {
  /** Slot of the task. */
  readonly s: number;
  /** Generation of the task in that slot. */
  readonly g: number;
  /** Position of the node within the segment. */
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
  /** The element of a map node it was running, if it was one. */
  readonly element?: number;
  /** What was thrown, if anything. */
  readonly error: Thrown | undefined;
}

/** What a thread sends on its control port: batches of reports and ends, in order, or its last word. */
export type ControlMessage = readonly ControlEntry[] | CrashNote;
export type ControlEntry = NodeReport | StartReport | ProgressReport | EndReport | Pong | Hungry;

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

/**
 * A thread has no segment left waiting to start a node, while the main thread holds
 * node tasks back (the card's `T_WANTED`): send it more.
 */
export interface Hungry {
  readonly hungry: 1;
}

export const HUNGRY: Hungry = Object.freeze({ hungry: 1 });
