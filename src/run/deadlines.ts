/**
 * Where node timeouts are enforced.
 *
 * A node's time counts from when its code starts in the worker, less the time other
 * nodes' synchronous code held its thread (they starve it; they are to blame, not it).
 * The worker publishes both facts on the shared board; this watch reads them.
 *
 * One timer per segment on a thread, armed when the dispatcher hands the segment to its
 * thread (no node can start before that, and a segment waiting for a thread holds no
 * timer: many thousands can wait). At first it is set for the earliest moment the
 * running node could be overdue. When it fires it reads the node's progress and either
 * declares the node overdue or sleeps for exactly the time the node still has. So a
 * segment that finishes in time costs one timer, and a deadline is never missed by
 * more than the timer's own lateness.
 *
 * What is watched extends this class (a run's flight, a map node's element): one object
 * per segment, not two.
 */
import { timerDelay } from '../shared/delay';
import type { SegmentTicket } from '../pool/dispatcher';

const IDLE = 0;
const WATCHING = 1;
const CLEARED = 2;

export abstract class NodeDeadlineWatch {
  /** The segment in flight (set once it is submitted: the watch starts after that). */
  abstract readonly ticket: SegmentTicket | undefined;
  /** Timeout of each node of the segment, in order (`Infinity` for none). */
  abstract readonly timeouts: readonly number[];
  /** Position of the first node that runs. */
  abstract readonly first: number;
  /** Called once, with the position of the node that ran out of time. */
  abstract overdue(position: number): void;

  private deadlineTimer: NodeJS.Timeout | undefined = undefined;
  private deadlineState: typeof IDLE | typeof WATCHING | typeof CLEARED = IDLE;

  /** Starts watching: the segment was handed to a thread. Once only, and never after `clearDeadlines()`. */
  watchDeadlines(): void {
    if (this.deadlineState !== IDLE) return;
    this.deadlineState = WATCHING;
    this.arm(this.waitFrom(this.first));
  }

  /** Stops watching, for good. */
  clearDeadlines(): void {
    this.deadlineState = CLEARED;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
  }

  private check(fresh: boolean): void {
    this.deadlineTimer = undefined;
    const ticket = this.ticket!;
    const progress = ticket.progress();
    if (!progress.started) {
      this.arm(this.waitFrom(this.first));
      return;
    }
    const timeout = this.timeouts[progress.position] ?? Infinity;
    if (timeout === Infinity) {
      this.arm(this.waitFrom(progress.position + 1));
      return;
    }
    const remaining = timeout - progress.elapsedMs;
    if (remaining > 0) return this.arm(remaining);
    if (fresh) return this.overdue(progress.position);
    // Timers run before messages in a turn: the node's end may be waiting unread.
    ticket.refresh();
    if (this.deadlineState === WATCHING) this.check(true);
  }

  /** The shortest finite timeout from the node at `position` on: no later node can be overdue sooner. */
  private waitFrom(position: number): number {
    let shortest = Infinity;
    const { timeouts } = this;
    for (let i = position; i < timeouts.length; i++) shortest = Math.min(shortest, timeouts[i] ?? Infinity);
    return shortest;
  }

  private arm(delayMs: number): void {
    if (delayMs === Infinity) return;
    // The watch rides on the timer as its argument: no closure per watch (many are armed).
    this.deadlineTimer = setTimeout(NodeDeadlineWatch.fire, timerDelay(delayMs), this);
  }

  private static fire(this: void, watch: NodeDeadlineWatch): void {
    watch.check(false);
  }
}

/** The watch of a segment whose listener is written apart: it tells `onOverdue`. */
export class SegmentDeadlines extends NodeDeadlineWatch {
  /** Set once the segment is submitted. */
  ticket: SegmentTicket | undefined = undefined;

  constructor(
    readonly timeouts: readonly number[],
    readonly first: number,
    private readonly onOverdue: (position: number) => void,
  ) {
    super();
  }

  override overdue(position: number): void {
    this.onOverdue(position);
  }
}
