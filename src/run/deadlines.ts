/**
 * Where node timeouts are enforced.
 *
 * A node's time counts from when its code starts in the worker, less the time other
 * nodes' synchronous code held its thread (they starve it; they are to blame, not it).
 * The worker publishes both facts on the shared board; this watch reads them.
 *
 * One timer per segment in flight, armed lazily: at first for the earliest moment the
 * running node could be overdue. When it fires it reads the node's progress and either
 * declares the node overdue or sleeps for exactly the time the node still has. So a
 * segment that finishes in time costs one timer, and a deadline is never missed by
 * more than the timer's own lateness.
 */
import { timerDelay } from '../shared/delay';
import type { SegmentTicket } from '../pool/dispatcher';


/** Who hears that a node ran out of time: the flight of its segment, or a map's element. */
export interface OverdueListener {
  /** Called once, with the position of the node that ran out of time. */
  overdue(position: number): void;
}

export class NodeDeadlineWatch {
  private timer: NodeJS.Timeout | undefined;
  private cleared = false;

  /**
   * @param ticket the segment in flight.
   * @param timeouts timeout of each node of the segment, in order (`Infinity` for none).
   * @param first position of the first node that runs.
   * @param listener told once, of the node that ran out of time.
   */
  constructor(
    private readonly ticket: SegmentTicket,
    private readonly timeouts: readonly number[],
    private readonly first: number,
    private readonly listener: OverdueListener,
  ) {
    this.arm(this.waitFrom(first));
  }

  clear(): void {
    this.cleared = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private check(fresh: boolean): void {
    this.timer = undefined;
    const progress = this.ticket.progress();
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
    if (fresh) return this.listener.overdue(progress.position);
    // Timers run before messages in a turn: the node's end may be waiting unread.
    this.ticket.refresh();
    if (!this.cleared) this.check(true);
  }

  /** The shortest finite timeout from the node at `position` on: no later node can be overdue sooner. */
  private waitFrom(position: number): number {
    let shortest = Infinity;
    for (let i = position; i < this.timeouts.length; i++) shortest = Math.min(shortest, this.timeouts[i] ?? Infinity);
    return shortest;
  }

  private arm(delayMs: number): void {
    if (delayMs === Infinity) return;
    // The watch rides on the timer as its argument: no closure per watch (many are armed).
    this.timer = setTimeout(NodeDeadlineWatch.fire, timerDelay(delayMs), this);
  }

  private static fire(watch: NodeDeadlineWatch): void {
    watch.check(false);
  }
}
