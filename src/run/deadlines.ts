/**
 * Where node timeouts and pipeline timeouts are enforced.
 *
 * ## Node timeouts
 *
 * A node's time counts from when its code starts in the worker, less the time other
 * nodes' synchronous code held its thread (they starve it; they are to blame, not it).
 * The worker publishes both facts on the shared board; this watch reads them.
 *
 * One timer per segment on a thread, armed when the dispatcher hands the segment to its
 * thread for the first time (no node can start before that, and a segment that was
 * never sent holds no timer: many thousands can wait; one sent again, after its thread
 * ended, keeps its watch). At first it is set for the earliest moment the
 * running node could be overdue. When it fires it reads the node's progress and either
 * declares the node overdue or sleeps for exactly the time the node still has. So a
 * segment that finishes in time costs one timer, and a deadline is never missed by
 * more than the timer's own lateness.
 *
 * What is watched extends this class (a run's flight, a map node's element): one object
 * per segment, not two.
 *
 * ## Pipeline timeouts
 *
 * `PipelineDeadlines`, one per executor: one timer per `pipelineTimeoutMs` value, not one
 * per run. Runs with the same value are added as they start, on one clock, so their
 * deadlines come in the order they were added, as a rule: each value keeps its runs in a
 * list in deadline order (a run added out of order walks back to its place), and one
 * timer set for the first run's deadline. A run that settles leaves
 * its list at once (it is a link of it: no search). When the timer fires it times out the
 * runs past their deadline, in order, and is set again for the next one. The run decides
 * what a timeout does (`scheduler.ts`).
 */
import { timerDelay } from '../shared/delay';
import type { Dispatcher, SegmentTicket } from '../pool/dispatcher';

const IDLE = 0;
const WATCHING = 1;
const CLEARED = 2;

export abstract class NodeDeadlineWatch {
  /** The segment in flight (set once `submit()` returns: the timer never fires before). */
  abstract readonly ticket: SegmentTicket | undefined;
  /** Timeout of each node of the segment, in order (`Infinity` for none). */
  abstract readonly timeouts: readonly number[];
  /** Position of the first node that runs. */
  abstract readonly first: number;
  /** Called once, with the position of the node that ran out of time. */
  abstract overdue(position: number): void;

  private deadlineTimer: NodeJS.Timeout | undefined = undefined;
  private deadlineState: typeof IDLE | typeof WATCHING | typeof CLEARED = IDLE;

  /**
   * The segment is about to be submitted to `dispatcher` (called before `submit()`, which
   * may send it at once): its deadlines are watched from its first send if the dispatcher
   * reports sends, from now if not, and never if the dispatcher enforces them itself.
   */
  submittedTo(dispatcher: Dispatcher): void {
    if (dispatcher.enforcesNodeTimeouts) this.deadlineState = CLEARED;
    else if (dispatcher.reportsSends !== true) this.watchDeadlines();
  }

  /** The segment was handed to a thread (its listener's `sent()`): the watch starts, if it has not. */
  sent(): void {
    this.watchDeadlines();
  }

  /** Starts watching. Once only, and never after `clearDeadlines()`. */
  private watchDeadlines(): void {
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

/** A run, as the pipeline deadlines hold it: a link of its list, and what to tell it. */
export interface PipelineDeadlineEntry {
  deadlinePrev: PipelineDeadlineEntry | undefined;
  deadlineNext: PipelineDeadlineEntry | undefined;
  /** When it started, on its clock (one clock for an executor's runs): with one timeout, the order of deadlines. */
  readonly startedAt: number;
  /** Time left before its pipeline timeout, in milliseconds, on its own clock. */
  pipelineLeftMs(): number;
  /** Its pipeline timeout has passed; it has left its list. Called once. */
  pipelineTimedOut(): void;
}

/** The runs of one `pipelineTimeoutMs`, first deadline first, and the timer of the first. */
class DeadlineList {
  head: PipelineDeadlineEntry | undefined = undefined;
  tail: PipelineDeadlineEntry | undefined = undefined;
  timer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly owner: PipelineDeadlines,
    readonly timeoutMs: number,
  ) {}
}

export class PipelineDeadlines {
  private readonly lists = new Map<number, DeadlineList>();

  /** Watches a run that has just started, with a finite `timeoutMs`. */
  add(entry: PipelineDeadlineEntry, timeoutMs: number): void {
    let list = this.lists.get(timeoutMs);
    if (list === undefined) this.lists.set(timeoutMs, (list = new DeadlineList(this, timeoutMs)));
    // After the last run, as a rule; a run that started earlier may come later (another
    // run started by a listener of its start event), and goes to its place.
    let after = list.tail;
    while (after !== undefined && after.startedAt > entry.startedAt) after = after.deadlinePrev;
    const before = after === undefined ? list.head : after.deadlineNext;
    entry.deadlinePrev = after;
    entry.deadlineNext = before;
    if (after === undefined) list.head = entry;
    else after.deadlineNext = entry;
    if (before === undefined) list.tail = entry;
    else before.deadlinePrev = entry;
    if (list.head === entry) arm(list, entry.pipelineLeftMs());
  }

  /** Stops watching a run (it settled); nothing if it is not watched. */
  remove(entry: PipelineDeadlineEntry, timeoutMs: number): void {
    const list = this.lists.get(timeoutMs);
    if (list === undefined || (list.head !== entry && entry.deadlinePrev === undefined)) return;
    unlink(list, entry);
    // The timer stays set for a deadline that left: it finds the next one not due, and waits for it.
    if (list.head === undefined) this.drop(list);
  }

  private drop(list: DeadlineList): void {
    if (list.timer !== undefined) clearTimeout(list.timer);
    list.timer = undefined;
    this.lists.delete(list.timeoutMs);
  }

  /** The list's timer fired: time out the runs past their deadline, then wait for the next. */
  private expire(list: DeadlineList): void {
    list.timer = undefined;
    try {
      for (let entry = list.head; entry !== undefined && entry.pipelineLeftMs() <= 0; entry = list.head) {
        unlink(list, entry);
        entry.pipelineTimedOut();
      }
    } finally {
      // Set again for the next deadline, even if a run's end threw (a listener of the
      // executor's events may): the other runs stay watched.
      if (list.head !== undefined) arm(list, list.head.pipelineLeftMs());
      else if (list.timer === undefined && this.lists.get(list.timeoutMs) === list) this.lists.delete(list.timeoutMs);
    }
  }

  static fire(this: void, list: DeadlineList): void {
    list.owner.expire(list);
  }
}

function arm(list: DeadlineList, delayMs: number): void {
  // Set for a later deadline than the first run's now, or by a run added meanwhile.
  if (list.timer !== undefined) clearTimeout(list.timer);
  // The list rides on the timer as its argument: no closure.
  list.timer = setTimeout(PipelineDeadlines.fire, timerDelay(delayMs), list);
}

function unlink(list: DeadlineList, entry: PipelineDeadlineEntry): void {
  const { deadlinePrev: prev, deadlineNext: next } = entry;
  if (prev === undefined) list.head = next;
  else prev.deadlineNext = next;
  if (next === undefined) list.tail = prev;
  else next.deadlinePrev = prev;
  entry.deadlinePrev = undefined;
  entry.deadlineNext = undefined;
}
