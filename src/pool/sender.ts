/**
 * Sending: how submitted segments reach the threads, in the embedded pool.
 *
 * - A submitted ticket waits in a fair queue (priority, keys in turn, arrival) until a
 *   slot is free and a thread has room: each thread holds only a window of segments
 *   ahead (see `threads.ts`), since CPU-bound work queued in a thread would be served
 *   there in arrival order, whatever its priority or key.
 * - A ticket that already holds a slot (sent again after its thread ended, stolen, or
 *   handed back by a recycled thread) goes out with the next flush, ahead of the queue.
 * - A flush runs once the event loop has taken in what is waiting (`setImmediate`): the
 *   tickets for one thread go together, as one piscina task (a batch, at most
 *   {@link BATCH_SIZE}), routed to that thread. A burst of work of one key and priority
 *   does not wait for its turn to end: every {@link BATCH_SIZE} submissions since the
 *   last flush, what the threads have room for goes out. With keys or priorities
 *   waiting, the burst waits for the flush, and the fair queue orders all of it.
 * - Work stealing: a thread that has run out takes tickets waiting on a busier one,
 *   withdrawn from the board before that thread took them up.
 */
import { Piscina } from 'piscina';
import type { Board } from '../shared/board';
import type { BatchTask } from '../shared/protocol';
import { FairQueue, placementOf } from './fair-queue';
import { leastLoaded, stealPlan, usable, withRoom, type Thread as PoolThread } from './threads';
import { attach, batchTask, detach, type Batch, type Slots, type Ticket } from './ticket';

type Thread = PoolThread<Ticket>;

/** Segments of cached plans whose nodes a thread keeps, about (see `batchTask()`). */
const MAX_KNOWN = 4096;

/** Segments sent to the threads at once, at most, while submissions keep coming in one turn. */
const BATCH_SIZE = 64;

/** What the sender uses of its dispatcher. */
export interface SenderHost {
  readonly pool: Piscina;
  readonly board: Board;
  readonly slots: Slots;
  readonly threads: ReadonlyMap<number, Thread>;
  now(): number;
  isDestroyed(): boolean;
  /** Picks up the threads piscina started that the dispatcher does not know yet. */
  watchThreads(): void;
  /** A batch that could not be posted, or whose thread died. */
  batchFailed(batch: Batch, error: unknown): void;
}

export class Sender {
  /** Waiting for a free slot and a thread with room. */
  private readonly pending = new FairQueue<Ticket>();
  /** Holding a slot, to be sent with the next flush. */
  private outgoing: Ticket[] = [];
  private flushScheduled = false;
  /** What the threads' cards say of `pending` (`T_WANTED`). */
  private wanted = false;
  private gen = 0;
  /** Tickets submitted since the last flush, and flushes run. */
  private sinceFlush = 0;
  private flushes = 0;

  constructor(private readonly host: SenderHost) {}

  /** Tickets waiting for a slot. */
  get waiting(): number {
    return this.pending.size;
  }

  /** Whether anything waits to be sent. */
  get hasWork(): boolean {
    return this.outgoing.length > 0 || this.pending.size > 0;
  }

  /**
   * Queues a new ticket. A caller that submits many runs of one key and priority in
   * one synchronous loop does not hold back the first ones until the loop ends: every
   * {@link BATCH_SIZE} submissions since the last flush, what the threads have room
   * for goes out at once (not while other keys or priorities wait: the flush at the
   * end of the turn puts all of them in order).
   */
  submit(ticket: Ticket): void {
    this.pending.push(ticket, placementOf(ticket.job));
    if (++this.sinceFlush >= BATCH_SIZE && !this.pending.contended) this.flush();
    else this.schedule();
  }

  /**
   * Sends a ticket that holds a slot (sent again, or stolen) with the next flush, or now
   * once a batch is full.
   */
  send(ticket: Ticket): void {
    this.outgoing.push(ticket);
    if (this.outgoing.length >= BATCH_SIZE) this.flush();
    else this.schedule();
  }

  /** Takes back a ticket that waits here (it has no thread): it will not be sent. */
  unsend(ticket: Ticket): void {
    if (ticket.slot < 0) this.pending.remove(ticket, placementOf(ticket.job));
    else this.outgoing.splice(this.outgoing.indexOf(ticket), 1);
  }

  /** Every ticket waiting here, taken out (the dispatcher is being destroyed). */
  drainAll(): Ticket[] {
    return [...this.pending.drain(), ...this.outgoing.splice(0)];
  }

  /**
   * Flushes once the event loop has taken in what is waiting (every thread's reports of
   * this pass, and what they make ready: `setImmediate`, not a microtask, which would
   * send after each report).
   */
  schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flush);
  }

  /** Sets a newly introduced thread's card to what the others say. */
  tellWanted(thread: Thread): void {
    thread.card?.setWanted(this.wanted);
  }

  /**
   * Sends what holds a slot (`outgoing`), then as many pending tickets as the threads
   * have room for, in the pending queue's order.
   */
  private flush = (): void => {
    this.flushScheduled = false;
    this.flushes++;
    this.sinceFlush = 0;
    if (this.host.isDestroyed()) return;
    const { slots, threads } = this.host;
    const groups = new Map<Thread, Ticket[]>();
    const outgoing = this.outgoing;
    this.outgoing = [];
    for (let i = 0; i < outgoing.length; i++) {
      const ticket = outgoing[i]!;
      const preferred = ticket.prefer;
      ticket.prefer = undefined;
      const thread = preferred !== undefined && usable(preferred) ? preferred : this.pickThread();
      if (thread === undefined) {
        // Every thread is being terminated: these wait for the replacements (the
        // dispatcher flushes again when a thread ends).
        this.outgoing.unshift(...outgoing.slice(i));
        break;
      }
      this.place(ticket, thread, groups);
    }
    // Said before the threads' room is read: a thread that runs out after this reading
    // asks for more (`Hungry`); one that ran out before it has room in it.
    if (this.pending.size > 0) this.setWanted(true);
    while (this.pending.size > 0 && slots.available > 0) {
      // Work of one key and priority goes out in batches; with others waiting, every
      // free place is filled at once, in their turns.
      const thread = withRoom(threads.values(), this.host.now(), this.pending.contended ? undefined : this.flushes);
      if (thread === undefined) break;
      thread.filledIn = this.flushes;
      const ticket = this.pending.shift()!;
      slots.take(ticket);
      this.place(ticket, thread, groups);
      if (groups.get(thread)!.length >= BATCH_SIZE) {
        this.sendBatch(thread, groups.get(thread)!);
        groups.delete(thread);
      }
    }
    for (const [thread, group] of groups) this.sendBatch(thread, group);
    if (this.pending.size === 0) this.setWanted(false);
  };

  /** Gives the ticket a generation and `thread`, in this flush's batch for `thread`. */
  private place(ticket: Ticket, thread: Thread, groups: Map<Thread, Ticket[]>): void {
    const { board } = this.host;
    ticket.gen = this.gen = this.gen >= 0x7fffffff ? 1 : this.gen + 1;
    board.reset(ticket.slot, ticket.gen);
    if (ticket.stopCode !== 0) board.requestStop(ticket.slot, ticket.stopCode);
    attach(ticket, thread);
    ticket.job.listener.sent();
    if (ticket.alone) {
      ticket.alone = false;
      this.sendBatch(thread, [ticket]);
      return;
    }
    let group = groups.get(thread);
    if (group === undefined) groups.set(thread, (group = []));
    group.push(ticket);
  }

  /** Tells the threads whether tasks wait here, so that one that runs out asks at once. */
  private setWanted(wanted: boolean): void {
    if (wanted === this.wanted) return;
    this.wanted = wanted;
    for (const thread of this.host.threads.values()) this.tellWanted(thread);
  }

  private sendBatch(thread: Thread, group: Ticket[]): void {
    const { task, transferList } = batchTask(thread, group, MAX_KNOWN);
    const routed: BatchTask & { [key: symbol]: unknown } = { ...task, [Piscina.queueOptionsSymbol]: { threadId: thread.threadId } };
    const batch: Batch = { thread, tickets: group, gens: group.map((ticket) => ticket.gen) };
    const options = transferList === undefined ? undefined : { transferList };
    this.host.pool.run(routed, options).then(undefined, (error: unknown) => this.host.batchFailed(batch, error));
  }

  /** The thread to send to next; see `threads.ts`. */
  private pickThread(): Thread | undefined {
    const best = leastLoaded(this.host.threads.values(), this.host.now());
    if (best !== undefined) return best;
    // Every thread known is ending: pick up the replacements piscina started, if any yet.
    this.host.watchThreads();
    return leastLoaded(this.host.threads.values(), this.host.now());
  }

  /** Work stealing (see `threads.ts`): segments waiting on a busier thread move to `hungry`. */
  rebalance(hungry: Thread): void {
    const plan = stealPlan(hungry, this.host.threads.values());
    if (plan === undefined) return;
    let { wanted } = plan;
    for (const ticket of plan.candidates) {
      if (wanted === 0) break;
      if (!this.takeBack(ticket, hungry)) continue;
      wanted--;
    }
  }

  /** Withdraws a ticket its thread has not taken up, to send it to `prefer` or any thread. */
  takeBack(ticket: Ticket, prefer: Thread | undefined): boolean {
    if (ticket.inputMoved || ticket.stopCode !== 0 || !this.host.board.withdraw(ticket.slot, ticket.gen)) return false;
    ticket.thread!.sent--;
    detach(ticket);
    ticket.gen = 0;
    ticket.prefer = prefer;
    this.send(ticket);
    return true;
  }
}
