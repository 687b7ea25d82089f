/** A segment in flight on this thread, as the worker runtime keeps it. */
import type { SegmentTask, TaskNode } from '../src/shared/protocol';
import type { NodeContext } from '../src/shared/node';

export interface SegmentRun {
  readonly task: SegmentTask;
  readonly nodes: readonly TaskNode[];
  readonly batch: BatchState;
  /** Position of the node to run next, or running. */
  position: number;
  input: unknown;
  /** When the running node started (its module's loading included), on the main thread's clock. */
  startedAt: number;
  /** The position whose start is on the board (its clock runs), or -1. */
  clockFor: number;
  /** The running node's context, to abort its signal. */
  ctx: RunningContext | undefined;
  stopSeen: boolean;
  /** The latest `ctx.progress()` value not sent yet, if `progressPending`. */
  progressValue: unknown;
  progressPending: boolean;
  /**
   * Taken up: the thread won the task's claim on the board when its first node was
   * about to start. Until then the main thread may withdraw it (a stop, or work stealing).
   */
  claimed: boolean;
  settled: boolean;
}

/** A piscina task (a batch of segments): settles when every segment it brought has ended. */
export interface BatchState {
  pending: number;
  readonly resolve: () => void;
}

/** A running node's `ctx`, as the runtime holds it: it can abort the node's signal. */
export interface RunningContext extends NodeContext {
  abort(reason: DOMException): void;
}
