/**
 * A *ticket*: the embedded pool's record of one segment submitted to it, from
 * submission to settlement, through every time it is sent (again) to a thread.
 *
 * While in flight it holds a *slot* (its row on the shared board) and a *generation*
 * (which sending of it this is): what a thread reports about a slot counts only if it
 * names the ticket's current generation.
 */
import type { Transferable } from 'node:worker_threads';
import type { StopCode, TaskProgress } from '../shared/board';
import type { BatchTask, SegmentTask } from '../shared/protocol';
import { transferListOf } from '../shared/transfer';
import type { SegmentJob, SegmentTicket } from './dispatcher';
import { drained, retire } from './recycling';
import type { Thread } from './threads';

/** What a ticket asks of the dispatcher that issued it. */
export interface TicketOwner {
  progressOf(ticket: Ticket): TaskProgress;
  drain(thread: Thread<Ticket>): void;
  stop(ticket: Ticket, code: StopCode, graceMs: number): void;
}

/** The segments of one piscina task, with the generation each was sent as. */
export interface Batch {
  readonly thread: Thread<Ticket>;
  readonly tickets: readonly Ticket[];
  readonly gens: readonly number[];
}

export class Ticket implements SegmentTicket {
  slot = -1;
  gen = 0;
  /** Node to start with on the next send, and its input. */
  first = 0;
  input: unknown;
  stopCode: StopCode | 0 = 0;
  graceTimer: NodeJS.Timeout | undefined;
  settled = false;
  blindResends = 0;
  /** Times its thread was terminated as orphaned (see `watchdog.ts`) while it was there. */
  orphanResends = 0;
  /** Its input was moved to its thread: it cannot be sent again. */
  inputMoved = false;
  /** The thread it was sent to, while it is there. */
  thread: Thread<Ticket> | undefined;
  /** Send it in a batch of its own next time: a batch it was in could not be posted. */
  alone = false;
  /** The thread to send it to next (it was stolen for that thread). */
  prefer: Thread<Ticket> | undefined;

  constructor(
    private readonly dispatcher: TicketOwner,
    readonly job: SegmentJob,
  ) {
    this.first = job.first;
    this.input = job.input;
  }

  progress(): TaskProgress {
    return this.dispatcher.progressOf(this);
  }

  refresh(): void {
    if (this.thread !== undefined) this.dispatcher.drain(this.thread);
  }

  stop(code: StopCode, graceMs: number): void {
    this.dispatcher.stop(this, code, graceMs);
  }
}

/** The board's slots, and the ticket holding each. */
export class Slots {
  private readonly holders: (Ticket | undefined)[];
  private readonly free: number[] = [];

  constructor(readonly capacity: number) {
    this.holders = new Array<Ticket | undefined>(capacity);
    for (let slot = capacity - 1; slot >= 0; slot--) this.free.push(slot);
  }

  /** Slots no ticket holds. */
  get available(): number {
    return this.free.length;
  }

  /** The ticket holding `slot`, if any. */
  at(slot: number): Ticket | undefined {
    return this.holders[slot];
  }

  /** Gives `ticket` a free slot; the caller checks {@link available} first. */
  take(ticket: Ticket): void {
    ticket.slot = this.free.pop()!;
    this.holders[ticket.slot] = ticket;
  }

  /** Frees the slot `ticket` holds. */
  release(ticket: Ticket): void {
    this.holders[ticket.slot] = undefined;
    this.free.push(ticket.slot);
    ticket.slot = -1;
  }
}

/** Puts `ticket` on `thread`; a thread's control port keeps the process alive while the thread holds any. */
export function attach(ticket: Ticket, thread: Thread<Ticket>): void {
  ticket.thread = thread;
  thread.sent++;
  thread.tickets.add(ticket);
  if (thread.tickets.size === 1) thread.port?.ref();
}

/** Takes `ticket` off its thread; a thread that handed its place over and is left with nothing is retired. */
export function detach(ticket: Ticket): void {
  const thread = ticket.thread;
  if (thread === undefined) return;
  ticket.thread = undefined;
  thread.tickets.delete(ticket);
  if (thread.tickets.size === 0) {
    thread.port?.unref();
    if (drained(thread)) retire(thread);
  }
}

/**
 * What the tickets of a batch send to `thread`: one piscina task, and what it moves.
 * A thread keeps the nodes of about `maxKnown` segments of cached plans: past that, it
 * forgets them all (before this batch), and learns again those it meets.
 */
export function batchTask(thread: Thread<Ticket>, group: readonly Ticket[], maxKnown: number): { task: BatchTask; transferList: Transferable[] | undefined } {
  const forget = thread.knows.size >= maxKnown;
  if (forget) thread.knows.clear();
  let moved: Transferable[] | undefined;
  const tasks: SegmentTask[] = group.map((ticket) => {
    const moves = transferListOf(ticket.input);
    if (moves !== undefined) {
      (moved ??= []).push(...moves);
      ticket.inputMoved = true;
    }
    const { segmentId } = ticket.job;
    const known = segmentId !== undefined && thread.knows.has(segmentId);
    if (segmentId !== undefined) thread.knows.add(segmentId);
    const task: SegmentTask = {
      slot: ticket.slot,
      gen: ticket.gen,
      run: ticket.job.run,
      ...(known ? {} : { nodes: ticket.job.nodes }),
      segment: segmentId,
      first: ticket.first,
      attempts: ticket.job.attempts,
      reportStarts: ticket.job.reportStarts,
      input: ticket.input,
    };
    // Only a map node's elements carry one: the others' tasks do not grow.
    if (ticket.job.element !== undefined) (task as { element?: number }).element = ticket.job.element;
    return task;
  });
  return { task: { tasks, forget }, transferList: moved === undefined ? undefined : [...new Set(moved)] };
}
