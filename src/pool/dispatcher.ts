/**
 * The seam between a run's scheduler and whatever runs its nodes.
 *
 * The scheduler (`run/scheduler.ts`) sees only this interface: submit a segment, read
 * its progress, ask it to stop, hear how it settled. The embedded pool
 * (`piscina-dispatcher.ts`) implements it on this process's worker threads; the BullMQ
 * backend (`remote/bullmq.ts`) on worker processes. A {@link Backend} makes one.
 *
 * Positions: `position` is a node's place within its segment (0 for the segment's first
 * node), never its index in the plan.
 */
import type { ResourceLimits } from 'node:worker_threads';
import type { StopCode, TaskProgress } from '../shared/board';
import type { RunRef, TaskNode } from '../shared/protocol';
import type { Settlement } from '../shared/settlement';
import type { RecycleLimits } from './recycling';

export type { Settlement } from '../shared/settlement';

/** What a dispatcher is made with: the executor's options, resolved. */
export interface DispatcherOptions {
  /** Deadlines of runs, for a dispatcher that enforces them itself. */
  readonly timeouts: { readonly nodeTimeoutMs: number; readonly pipelineTimeoutMs: number; readonly cleanupGraceMs: number };
  readonly threads: number;
  readonly tasksPerThread: number;
  readonly resourceLimits: ResourceLimits | undefined;
  readonly progressIntervalMs: number;
  /** When to replace a thread (see `recycling.ts`); undefined to keep them. */
  readonly recycleThreads: RecycleLimits | undefined;
}

/**
 * Makes the dispatcher that runs an executor's nodes: `bullmqBackend({ ... })`, or one of
 * your own.
 */
export interface Backend {
  /** A name for logs and errors, such as `'bullmq'`. */
  readonly name: string;
  /**
   * Called once, by the executor's constructor: the dispatcher that will run every
   * segment of its runs, telling `events` of crashes and threads that end.
   */
  createDispatcher(options: DispatcherOptions, events: DispatcherEvents): Dispatcher;
}

/**
 * A segment to run: nodes that execute one after another in one worker. Read its fields
 * as they are needed: it may be an object of a class whose fields are getters (the
 * scheduler's flight), so a spread or a structured clone of it does not copy them.
 */
export interface SegmentJob {
  /** The run's ids, one object per run. */
  readonly run: RunRef;
  readonly nodes: readonly TaskNode[];
  /** Set when `nodes` are those of a cached plan's segment: each thread gets them once. */
  readonly segmentId: number | undefined;
  /** The node to start with. */
  readonly first: number;
  /** For an element of a map node: its position in the node's input (`ctx.index`). */
  readonly element?: number;
  /** Attempt number of each node. */
  readonly attempts: readonly number[];
  /** Input of `nodes[first]`; moved rather than copied if marked with `transfer()`. */
  readonly input: unknown;
  /** Tell `listener.nodeStarted` of each start as it happens. */
  readonly reportStarts: boolean;
  /** Timeout of each node, and the grace period, for a dispatcher that enforces them itself. */
  readonly timeouts: readonly number[];
  readonly graceMs: number;
  /**
   * The run's deadline, wall clock (ms since the epoch): its pipeline timeout; Infinity
   * without one. A remote worker starts no segment past it.
   */
  readonly deadline: number;
  /**
   * The run's `priority` and `concurrencyKey`: among segments waiting for a thread, a
   * higher priority goes first, and keys take turns (see `fair-queue.ts`).
   */
  readonly priority: number;
  readonly concurrencyKey: string | undefined;
  readonly listener: SegmentListener;
}

/** How a dispatcher tells the scheduler what becomes of one segment it was given. */
export interface SegmentListener {
  /**
   * The node at `position` in the segment completed. Times are on the dispatcher's
   * clock. `moved`: its output was moved with `transfer()` (on to the next node, when
   * `output` is undefined, or to this thread).
   */
  nodeCompleted(position: number, output: unknown, startedAt: number, endedAt: number, moved: boolean): void;
  /** The latest value the node at `position` gave `ctx.progress()`. */
  progress(position: number, value: unknown): void;
  /** The node at `position` started (only with `reportStarts`). */
  nodeStarted(position: number, startedAt: number): void;
  /**
   * The segment is over; called exactly once, after every `nodeCompleted`.
   * `startedAt`: when the node it ended on had started, if it had.
   */
  settled(settlement: Settlement, startedAt: number | undefined): void;
  /**
   * The segment was handed to a thread: its nodes may start from now on. Called by a
   * dispatcher with `reportsSends`, each time it sends the segment; the scheduler
   * watches deadlines from the first.
   */
  sent(): void;
}

/** What {@link Dispatcher.submit} returns: the scheduler's handle on a segment in flight. */
export interface SegmentTicket {
  /** Which node runs and for how long it has had its thread (see `board.ts`). */
  progress(): TaskProgress;
  /**
   * Takes in what the segment's thread has already sent (outputs, its end): a busy main
   * thread may not have read it yet. May settle the segment.
   */
  refresh(): void;
  /** Asks the segment to stop; terminates its thread if it has not settled `graceMs` later. */
  stop(code: StopCode, graceMs: number): void;
}

/** The seam between the scheduler and whatever runs the nodes. */
export interface Dispatcher {
  /**
   * It stops a node past its timeout itself and settles the segment `'timed-out'`
   * (a remote dispatcher, whose threads the main thread cannot watch); otherwise the
   * scheduler watches `progress()`.
   */
  readonly enforcesNodeTimeouts: boolean;
  /**
   * It calls a segment listener's `sent()` each time it hands the segment to a thread, so
   * the scheduler watches its nodes' deadlines from then on; without it, from `submit()`.
   * Read only when the scheduler watches them (`enforcesNodeTimeouts` false).
   */
  readonly reportsSends?: boolean;
  /** Node modules are loaded by this process's threads (and must exist here), not elsewhere. */
  readonly modulesAreLocal: boolean;
  /**
   * Takes a segment to run; never throws for a segment's own trouble (a node that fails,
   * an input that cannot be sent): its listener hears of it, once.
   */
  submit(job: SegmentJob): SegmentTicket;
  /** The clock of `progress()` and of reported times, in milliseconds. */
  now(): number;
  /** Resolves once every thread of the pool has started. */
  ready(): Promise<void>;
  /** Stops every task at once and releases the threads. */
  destroy(): Promise<void>;
  /** Its threads, tasks and counts now (part of `executor.stats()`). */
  stats(): DispatcherStats;
  /** Asks every started thread to answer within `timeoutMs`. Never rejects; never waits longer. */
  ping(timeoutMs: number): Promise<ThreadHealth[]>;
  /** Total time nodes' synchronous code has held the threads, ended ones included. */
  busyMs(): number;
}

/** What the dispatcher tells its owner about runs, beyond the segments' own listeners. */
export interface DispatcherEvents {
  /**
   * A node took its thread down (`process.exit()`, an uncaught error from one of its
   * callbacks, running out of memory), possibly after its own segment had completed.
   * `element`: the element of a map node it was running (the job's `element`).
   */
  nodeCrashed(runId: string, nodeId: string, exitCode: number | undefined, cause: unknown, element?: number): void;
  /** A worker thread ended: terminated by the dispatcher, or dead by itself. */
  threadExited(exit: ThreadExit): void;
  /** A thread started in place of one that ended. */
  threadReplaced(): void;
}

/** A thread's answer to a health check. */
export interface ThreadHealth {
  readonly threadId: number;
  /** It answered within the time allowed. */
  readonly responsive: boolean;
  /** The node whose synchronous code holds it, and for how long, if any. */
  readonly heldBy: { readonly runId: string; readonly nodeId: string; readonly forMs: number } | undefined;
}

/** Why a worker thread ended. */
export interface ThreadExit {
  readonly threadId: number;
  /**
   * `'terminated'` to stop a node that did not stop in time; `'orphaned'` because code
   * that no live node owns held it (see `pool/watchdog.ts`); `'crashed'` when it died by
   * itself; `'recycled'` replaced once drained (`recycleThreads`, see `pool/recycling.ts`).
   */
  readonly reason: 'terminated' | 'orphaned' | 'crashed' | 'recycled';
  readonly exitCode: number | undefined;
  /** The node that took it down, when known. */
  readonly runId: string | undefined;
  readonly nodeId: string | undefined;
  readonly cause: unknown;
}

/** A dispatcher's threads and tasks, as `executor.stats()` reports them. */
export interface DispatcherStats {
  /** Live worker threads (replacements included while they start). */
  readonly threads: number;
  /** Node tasks on threads or on their way. */
  readonly tasksInFlight: number;
  /**
   * Node tasks held back until a thread has room for them, served by priority and then
   * by key in turn (see `fair-queue.ts`).
   */
  readonly tasksQueued: number;
  /** Of those, the ones that wait because every slot is taken (`threads * tasksPerThread` in flight). */
  readonly tasksWaiting: number;
  /** Threads terminated because a node did not stop in time. */
  terminations: number;
  /** Threads that died by themselves. */
  crashes: number;
  /** Tasks sent again after their thread was terminated under them. */
  resends: number;
}
