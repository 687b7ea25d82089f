/**
 * Dispatch: hands segments to worker threads and stops them in two phases.
 *
 * The scheduler sees only the {@link Dispatcher} interface: submit a segment, read its
 * progress, ask it to stop. {@link PiscinaDispatcher} implements it on a piscina pool:
 *
 * - Segments submitted in the same turn travel to a thread together, as one piscina
 *   task (a batch), routed by our own load balancer to the thread with the fewest
 *   segments in flight that is not held by a long synchronous node. Many segments
 *   share a thread, so tasks carry no piscina `signal`.
 * - A thread sends node outputs and segment ends back on its control port, in order.
 * - A stop is a flag on the shared board plus a wake-up on the thread's control port;
 *   the node sees `ctx.signal` abort. A segment no worker has taken up yet is withdrawn
 *   at once. One that has not ended `graceMs` later has its thread terminated.
 * - Segments of other runs on a terminated thread did nothing wrong: they are sent
 *   again, resuming at the node that was running (at-least-once for that node).
 * - A thread that dies by itself (`process.exit()`, an uncaught error, out of memory)
 *   fails the run of the node at fault; the other segments are sent again (at most
 *   {@link MAX_RESENDS} times when nobody knows whose fault it was).
 */
import { Piscina } from 'piscina';
import { performance } from 'node:perf_hooks';
import { receiveMessageOnPort, type MessagePort, type TransferListItem, type Worker } from 'node:worker_threads';
import { extname, resolve } from 'node:path';
import {
  Board,
  ThreadCard,
  T_BUSY_TOTAL,
  T_CLAIMED,
  T_HOLDER,
  T_HOLDER_SINCE,
  T_READY,
  createBoardMemory,
  type StopCode,
  type TaskProgress,
} from './board';
import type { ResolvedOptions } from './config';
import { transferListOf } from './transfer';
import {
  WAKE,
  deserializeThrown,
  isWorkerHello,
  type BatchTask,
  type ControlMessage,
  type CrashNote,
  type Ping,
  type SegmentOutcome,
  type SegmentTask,
  type TaskNode,
  type WorkerConfig,
} from './protocol';

/** A segment to run: nodes that execute one after another in one worker. */
export interface SegmentJob {
  readonly runId: string;
  readonly pipelineId: string;
  readonly nodes: readonly TaskNode[];
  /** Set when `nodes` are those of a cached plan's segment: each thread gets them once. */
  readonly segmentId: number | undefined;
  /** The node to start with. */
  readonly first: number;
  /** Attempt number of each node. */
  readonly attempts: readonly number[];
  /** Input of `nodes[first]`; moved rather than copied if marked with `transfer()`. */
  readonly input: unknown;
  /** Tell `listener.nodeStarted` of each start as it happens. */
  readonly reportStarts: boolean;
  /** Timeout of each node, and the grace period, for a dispatcher that enforces them itself. */
  readonly timeouts: readonly number[];
  readonly graceMs: number;
  readonly listener: SegmentListener;
}

export interface SegmentListener {
  /**
   * Node `index` of the segment completed. Times are on the dispatcher's clock. `moved`:
   * its output was moved with `transfer()` (on to the next node, when `output` is
   * undefined, or to this thread).
   */
  nodeCompleted(index: number, output: unknown, startedAt: number, endedAt: number, moved: boolean): void;
  /** The latest value node `index` gave `ctx.progress()`. */
  progress(index: number, value: unknown): void;
  /** Node `index` started (only with `reportStarts`). */
  nodeStarted(index: number, startedAt: number): void;
  /**
   * The segment is over; called exactly once, after every `nodeCompleted`.
   * `startedAt`: when the node it ended on had started, if it had.
   */
  settled(settlement: Settlement, startedAt: number | undefined): void;
}

/** How a segment ended, as the dispatcher saw it. */
export type Settlement =
  | { readonly kind: 'done' }
  /** The node threw or rejected: `error` is what it threw, rebuilt. */
  | { readonly kind: 'failed'; readonly node: number; readonly error: unknown }
  /** Stopped on request: the node settled after its signal aborted, or never started. */
  | { readonly kind: 'stopped'; readonly node: number }
  /** Stopped on request by terminating the thread, after the grace period. */
  | { readonly kind: 'killed'; readonly node: number }
  | { readonly kind: 'crashed'; readonly node: number; readonly exitCode: number | undefined; readonly cause: unknown }
  | { readonly kind: 'load-failed'; readonly node: number; readonly message: string; readonly cause: unknown }
  | { readonly kind: 'unclonable'; readonly node: number; readonly cause: unknown }
  /** The input could not be sent to a worker. */
  | { readonly kind: 'input-unclonable'; readonly cause: unknown }
  /** The node ran past its timeout and was stopped (by a dispatcher that enforces timeouts). */
  | { readonly kind: 'timed-out'; readonly node: number };

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
  /** Node modules are loaded by this process's threads (and must exist here), not elsewhere. */
  readonly modulesAreLocal: boolean;
  submit(job: SegmentJob): SegmentTicket;
  /** The clock of `progress()` and of reported times, in milliseconds. */
  now(): number;
  /** Resolves once every thread of the pool has started. */
  ready(): Promise<void>;
  /** Stops every task at once and releases the threads. */
  destroy(): Promise<void>;
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
   */
  nodeCrashed(runId: string, nodeId: string, exitCode: number | undefined, cause: unknown): void;
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
  /** `'terminated'` to stop a node that did not stop in time; `'crashed'` when it died by itself. */
  readonly reason: 'terminated' | 'crashed';
  readonly exitCode: number | undefined;
  /** The node that took it down, when known. */
  readonly runId: string | undefined;
  readonly nodeId: string | undefined;
  readonly cause: unknown;
}

export interface DispatcherStats {
  /** Live worker threads (replacements included while they start). */
  readonly threads: number;
  /** Node tasks on threads or on their way. */
  readonly tasksInFlight: number;
  /** Node tasks waiting for room on a thread. */
  readonly tasksWaiting: number;
  /** Threads terminated because a node did not stop in time. */
  terminations: number;
  /** Threads that died by themselves. */
  crashes: number;
  /** Tasks sent again after their thread was terminated under them. */
  resends: number;
}

/** How many times a task is sent again after threads died under it with no known culprit. */
export const MAX_RESENDS = 2;

/** Segments sent to the threads at once, at most, while submissions keep coming in one turn. */
const BATCH_SIZE = 64;

/** A thread whose node code has held it this long is not given new work while others are free. */
const BLOCKED_MS = 20;

/** A worker thread as the dispatcher sees it. */
interface Thread {
  readonly threadId: number;
  readonly worker: Worker;
  /** Its control port and card, once it has introduced itself. */
  port: MessagePort | undefined;
  card: ThreadCard | undefined;
  /** Segments sent to it and not ended. */
  readonly tickets: Set<Ticket>;
  /** Its last word, when a node is taking it down. */
  crash: CrashNote | undefined;
  killing: boolean;
  ended: boolean;
  /** Tasks sent to it and not withdrawn, to compare with those it has started. */
  sent: number;
  /** Segments of cached plans whose nodes it has. */
  readonly knows: Set<number>;
}

/** The segments of one piscina task, with the generation each was sent as. */
interface Batch {
  readonly thread: Thread;
  readonly tickets: readonly Ticket[];
  readonly gens: readonly number[];
}

class Ticket implements SegmentTicket {
  slot = -1;
  gen = 0;
  /** Node to start with on the next send, and its input. */
  first = 0;
  input: unknown;
  stopCode: StopCode | 0 = 0;
  graceTimer: NodeJS.Timeout | undefined;
  settled = false;
  blindResends = 0;
  /** Its input was moved to its thread: it cannot be sent again. */
  inputMoved = false;
  /** The thread it was sent to, while it is there. */
  thread: Thread | undefined;
  /** The thread to send it to next (it was stolen for that thread). */
  prefer: Thread | undefined;

  constructor(
    readonly dispatcher: PiscinaDispatcher,
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

/** Runs segments on a piscina pool; see the file comment. */
export class PiscinaDispatcher implements Dispatcher {
  readonly enforcesNodeTimeouts = false;
  readonly modulesAreLocal = true;
  private readonly counts = { terminations: 0, crashes: 0, resends: 0 };
  private readonly pool: Piscina;
  private readonly board: Board;
  private readonly tickets: (Ticket | undefined)[];
  private readonly freeSlots: number[] = [];
  /** Waiting for a free slot. */
  private readonly waiting: Ticket[] = [];
  /** Holding a slot, to be sent at the end of this turn. */
  private outgoing: Ticket[] = [];
  private readonly threads = new Map<number, Thread>();
  private gen = 0;
  private destroyed = false;
  private introduced = 0;
  /** Busy time of the threads that ended. */
  private endedBusyMs = 0;
  private pingSeq = 0;
  /** Health checks waiting for answers, by id. */
  private readonly pings = new Map<number, (threadId: number) => void>();
  private readonly size: number;
  private readonly whenReady: Promise<void>;
  private onReady: (() => void) | undefined;

  constructor(
    options: ResolvedOptions,
    private readonly events: DispatcherEvents,
  ) {
    this.size = options.threads;
    this.whenReady = new Promise((resolve) => {
      this.onReady = resolve;
    });
    const capacity = options.threads * options.tasksPerThread;
    const memory = createBoardMemory(capacity);
    this.board = new Board(memory);
    this.tickets = new Array<Ticket | undefined>(capacity);
    for (let slot = capacity - 1; slot >= 0; slot--) this.freeSlots.push(slot);
    const runtime = workerRuntime();
    const workerData: WorkerConfig = {
      board: memory,
      mainTimeOrigin: performance.timeOrigin,
      tsNodeRegister: runtime.tsNodeRegister,
      progressIntervalMs: options.progressIntervalMs,
    };
    this.pool = new Piscina({
      filename: runtime.filename,
      execArgv: runtime.execArgv,
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: Infinity,
      // Our slots bound the segments in flight; a batch holds at least one.
      concurrentTasksPerWorker: capacity,
      loadBalancer: (task, workers) => {
        const wanted = routeOf(task);
        for (const worker of workers) if (worker.id === wanted) return worker;
        // The thread it was meant for is starting: wait for it. If it is gone, its
        // segments were sent again, and this stale batch may go anywhere.
        return wanted !== undefined && this.threads.get(wanted)?.ended === false ? null : (workers[0] ?? null);
      },
      atomics: 'disabled',
      recordTiming: false,
      resourceLimits: options.resourceLimits,
      workerData,
    });
    this.pool.on('message', (message: unknown) => {
      if (isWorkerHello(message)) this.introduce(message.threadId, message.port, new ThreadCard(message.card));
    });
    // A thread that dies with no task on it is reported here (and counted by watch()'s
    // listeners); without a listener it would crash the process.
    this.pool.on('error', () => {});
    this.watchThreads();
  }

  now(): number {
    return performance.now();
  }

  ready(): Promise<void> {
    return this.whenReady;
  }

  stats(): DispatcherStats {
    return {
      threads: this.pool.threads.length,
      tasksInFlight: this.tickets.length - this.freeSlots.length,
      tasksWaiting: this.waiting.length,
      ...this.counts,
    };
  }

  /** Whether every thread is held by a node's synchronous code at this moment. */
  allThreadsHeld(): boolean {
    let held = 0;
    for (const thread of this.threads.values()) {
      if (thread.ended) continue;
      if (thread.card === undefined || Atomics.load(thread.card.i32, T_HOLDER) === 0) return false;
      held++;
    }
    return held > 0;
  }

  busyMs(): number {
    let busy = this.endedBusyMs;
    for (const thread of this.threads.values()) busy += thread.card?.f64[T_BUSY_TOTAL] ?? 0;
    return busy;
  }

  async ping(timeoutMs: number): Promise<ThreadHealth[]> {
    const asked = [...this.threads.values()].filter((thread) => thread.port !== undefined && !thread.ended);
    const answered = new Set<number>();
    const id = ++this.pingSeq;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.pings.set(id, (threadId) => {
        answered.add(threadId);
        if (answered.size === asked.length) done();
      });
      if (asked.length === 0) done();
      for (const thread of asked) thread.port!.postMessage({ ping: id } satisfies Ping);
    });
    this.pings.delete(id);
    const now = this.now();
    return asked.map((thread) => ({
      threadId: thread.threadId,
      responsive: answered.has(thread.threadId),
      heldBy: this.holderOf(thread, now),
    }));
  }

  private holderOf(thread: Thread, now: number): ThreadHealth['heldBy'] {
    if (thread.card === undefined) return undefined;
    const ticket = this.tickets[Atomics.load(thread.card.i32, T_HOLDER) - 1];
    if (ticket === undefined) return undefined;
    const node = ticket.job.nodes[this.board.nodeOf(ticket.slot)];
    if (node === undefined) return undefined;
    return { runId: ticket.job.runId, nodeId: node.id, forMs: now - (thread.card.f64[T_HOLDER_SINCE] ?? now) };
  }

  /** Control ports open on the main thread (one per live thread). */
  get openPorts(): number {
    let open = 0;
    for (const thread of this.threads.values()) if (thread.port !== undefined) open++;
    return open;
  }

  submit(job: SegmentJob): SegmentTicket {
    const ticket = new Ticket(this, job);
    const slot = this.freeSlots.pop();
    if (slot === undefined) this.waiting.push(ticket);
    else this.queue(ticket, slot);
    return ticket;
  }

  progressOf(ticket: Ticket): TaskProgress {
    if (ticket.thread === undefined || ticket.settled) return { started: false };
    return this.board.progress(ticket.slot, ticket.thread.card, this.now());
  }

  stop(ticket: Ticket, code: StopCode, graceMs: number): void {
    if (ticket.settled || ticket.stopCode !== 0) return;
    ticket.stopCode = code;
    if (ticket.slot < 0 || ticket.thread === undefined) {
      // Not sent yet: it never starts.
      if (ticket.slot < 0) this.waiting.splice(this.waiting.indexOf(ticket), 1);
      else this.outgoing.splice(this.outgoing.indexOf(ticket), 1);
      return this.settle(ticket, { kind: 'stopped', node: ticket.first });
    }
    this.board.requestStop(ticket.slot, code);
    if (this.board.withdraw(ticket.slot, ticket.gen)) {
      // On its way, and no worker has taken it up: it never starts.
      ticket.thread.sent--;
      return this.settle(ticket, { kind: 'stopped', node: ticket.first });
    }
    ticket.thread.port?.postMessage(WAKE);
    if (Number.isFinite(graceMs)) {
      ticket.graceTimer = setTimeout(() => this.graceExpired(ticket), graceMs);
    }
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const ticket of [...this.waiting.splice(0), ...this.outgoing.splice(0)]) {
      this.settle(ticket, { kind: 'stopped', node: ticket.first });
    }
    await this.pool.destroy();
    for (const thread of this.threads.values()) thread.port?.close();
    this.threads.clear();
  }

  // -------------------------------------------------------------------------
  // Sending.

  /** Gives the ticket a slot and a generation, and sends it at the end of this turn. */
  private queue(ticket: Ticket, slot: number): void {
    ticket.slot = slot;
    this.tickets[slot] = ticket;
    this.enqueueOutgoing(ticket);
  }

  /**
   * Sends at the end of this turn, or now once a batch is full: a long burst of
   * submissions reaches the threads while it is still going on.
   */
  private enqueueOutgoing(ticket: Ticket): void {
    this.outgoing.push(ticket);
    if (this.outgoing.length === 1) queueMicrotask(this.flush);
    else if (this.outgoing.length >= BATCH_SIZE) this.flush();
  }

  private flush = (): void => {
    const outgoing = this.outgoing;
    this.outgoing = [];
    if (outgoing.length === 0 || this.destroyed) return;
    const groups = new Map<Thread, Ticket[]>();
    for (let i = 0; i < outgoing.length; i++) {
      const ticket = outgoing[i]!;
      const preferred = ticket.prefer;
      ticket.prefer = undefined;
      const thread = preferred !== undefined && !preferred.ended && !preferred.killing ? preferred : this.pickThread();
      if (thread === undefined) {
        // Every thread is being terminated: these wait for the replacements (threadEnded).
        this.outgoing.unshift(...outgoing.slice(i));
        break;
      }
      ticket.gen = this.gen = this.gen >= 0x7fffffff ? 1 : this.gen + 1;
      this.board.reset(ticket.slot, ticket.gen);
      if (ticket.stopCode !== 0) this.board.requestStop(ticket.slot, ticket.stopCode);
      this.attach(ticket, thread);
      let group = groups.get(thread);
      if (group === undefined) groups.set(thread, (group = []));
      group.push(ticket);
    }
    for (const [thread, group] of groups) this.sendBatch(thread, group);
  };

  private sendBatch(thread: Thread, group: Ticket[]): void {
    let transferList: TransferListItem[] | undefined;
    const tasks: SegmentTask[] = group.map((ticket) => {
      const moves = transferListOf(ticket.input);
      if (moves !== undefined) {
        (transferList ??= []).push(...moves);
        ticket.inputMoved = true;
      }
      const { segmentId } = ticket.job;
      const known = segmentId !== undefined && thread.knows.has(segmentId);
      if (segmentId !== undefined) thread.knows.add(segmentId);
      return {
        slot: ticket.slot,
        gen: ticket.gen,
        runId: ticket.job.runId,
        pipelineId: ticket.job.pipelineId,
        ...(known ? {} : { nodes: ticket.job.nodes }),
        segment: segmentId,
        first: ticket.first,
        attempts: ticket.job.attempts,
        reportStarts: ticket.job.reportStarts,
        input: ticket.input,
      };
    });
    const task: BatchTask & { [key: symbol]: unknown } = { tasks, [Piscina.queueOptionsSymbol]: { threadId: thread.threadId } };
    const batch: Batch = { thread, tickets: group, gens: group.map((ticket) => ticket.gen) };
    const options = transferList === undefined ? undefined : { transferList: [...new Set(transferList)] };
    this.pool.run(task, options).then(undefined, (error: unknown) => this.batchFailed(batch, error));
  }

  /**
   * The thread with the fewest segments in flight, preferring started threads not held
   * by a long node; undefined when every thread is being terminated.
   */
  private pickThread(): Thread | undefined {
    let best: Thread | undefined;
    let bestScore = Infinity;
    const now = this.now();
    for (const thread of this.threads.values()) {
      if (thread.ended || thread.killing) continue;
      let score = thread.tickets.size;
      if (thread.port === undefined) score += 1e9;
      else if (isBlocked(thread.card, now)) score += 1e6;
      if (score < bestScore) {
        best = thread;
        bestScore = score;
      }
    }
    if (best !== undefined) return best;
    // Every thread known is ending: pick up the replacements piscina started, if any yet.
    this.watchThreads();
    for (const thread of this.threads.values()) if (!thread.ended && !thread.killing) return thread;
    return undefined;
  }

  /**
   * Work stealing: `hungry` has nothing left to start, so half the segments that wait to
   * start on the thread with the most of them move to it. A segment not started yet is
   * withdrawn with the same compare-and-swap as a stop; its old thread skips it.
   */
  private rebalance(hungry: Thread): void {
    let victim: Thread | undefined;
    let most = 1;
    for (const thread of this.threads.values()) {
      if (thread === hungry || thread.card === undefined || thread.ended || thread.killing) continue;
      const waiting = thread.sent - Atomics.load(thread.card.i32, T_CLAIMED);
      if (waiting > most) {
        victim = thread;
        most = waiting;
      }
    }
    if (victim === undefined) return;
    // The segments it would start last: the latest sent.
    const candidates = [...victim.tickets].reverse();
    let wanted = Math.floor(most / 2);
    for (const ticket of candidates) {
      if (wanted === 0) break;
      if (ticket.inputMoved || ticket.stopCode !== 0 || !this.board.withdraw(ticket.slot, ticket.gen)) continue;
      victim.sent--;
      this.detach(ticket);
      ticket.gen = 0;
      ticket.prefer = hungry;
      this.enqueueOutgoing(ticket);
      wanted--;
    }
  }

  private attach(ticket: Ticket, thread: Thread): void {
    ticket.thread = thread;
    thread.sent++;
    thread.tickets.add(ticket);
    if (thread.tickets.size === 1) thread.port?.ref();
  }

  private detach(ticket: Ticket): void {
    const thread = ticket.thread;
    if (thread === undefined) return;
    ticket.thread = undefined;
    thread.tickets.delete(ticket);
    if (thread.tickets.size === 0) thread.port?.unref();
  }

  /** A batch that could not be sent (an input that cannot be cloned), or whose thread died. */
  private batchFailed(batch: Batch, error: unknown): void {
    const live = batch.tickets.filter((ticket, i) => !ticket.settled && ticket.gen === batch.gens[i]);
    if (live.length === 0) return;
    if (error instanceof Error && error.name === 'DataCloneError') {
      // Nothing of it arrived: the thread may lack segments we counted as sent.
      batch.thread.knows.clear();
      for (const ticket of live) {
        ticket.inputMoved = false;
        try {
          structuredClone(ticket.input);
        } catch (cause) {
          this.settle(ticket, { kind: 'input-unclonable', cause });
          continue;
        }
        this.resend(ticket);
      }
      return;
    }
    // Its thread died before we heard of it: nobody knows whose fault it was.
    for (const ticket of live) this.afterThreadEnd(ticket, { killed: false, culpritKnown: false }, error);
  }

  private resend(ticket: Ticket): void {
    this.detach(ticket);
    // No longer the task it was: what still comes of its old sending is stale.
    ticket.gen = 0;
    this.counts.resends++;
    this.enqueueOutgoing(ticket);
  }

  // -------------------------------------------------------------------------
  // Ending.

  private settle(ticket: Ticket, settlement: Settlement): void {
    if (ticket.settled) return;
    ticket.settled = true;
    if (ticket.graceTimer !== undefined) clearTimeout(ticket.graceTimer);
    ticket.graceTimer = undefined;
    this.detach(ticket);
    let startedAt: number | undefined;
    if (ticket.slot >= 0) {
      if (settlement.kind !== 'done' && ticket.gen !== 0) startedAt = this.board.startedAt(ticket.slot);
      this.tickets[ticket.slot] = undefined;
      const next = this.waiting.shift();
      if (next !== undefined) this.queue(next, ticket.slot);
      else this.freeSlots.push(ticket.slot);
      ticket.slot = -1;
    }
    ticket.job.listener.settled(settlement, startedAt);
  }

  private ended(ticket: Ticket, outcome: SegmentOutcome): void {
    switch (outcome.kind) {
      case 'done':
      case 'stopped':
        return this.settle(ticket, outcome);
      case 'failed':
        return this.settle(ticket, { kind: 'failed', node: outcome.node, error: deserializeThrown(outcome.error) });
      case 'load-failed':
        return this.settle(ticket, {
          kind: 'load-failed',
          node: outcome.node,
          message: outcome.message,
          cause: deserializeThrown(outcome.error),
        });
      case 'unclonable':
        return this.settle(ticket, { kind: 'unclonable', node: outcome.node, cause: deserializeThrown(outcome.error) });
    }
  }

  private graceExpired(ticket: Ticket): void {
    ticket.graceTimer = undefined;
    const thread = ticket.thread;
    if (ticket.settled || thread === undefined) return;
    this.terminate(thread);
  }

  private terminate(thread: Thread): void {
    if (thread.killing || thread.ended) return;
    thread.killing = true;
    this.counts.terminations++;
    void thread.worker.terminate();
  }

  /** What becomes of a segment whose thread ended under it. */
  private afterThreadEnd(ticket: Ticket, end: { killed: boolean; culpritKnown: boolean }, cause: unknown): void {
    if (ticket.settled) return;
    const node = Math.max(this.board.nodeOf(ticket.slot), ticket.first);
    if (this.destroyed) return this.settle(ticket, { kind: 'stopped', node });
    if (ticket.first >= ticket.job.nodes.length) return this.settle(ticket, { kind: 'done' });
    if (ticket.stopCode !== 0) return this.settle(ticket, { kind: 'killed', node });
    if (ticket.inputMoved) {
      const lost = new Error('its input was moved to the thread (transfer()) and is gone with it, so it cannot be sent again');
      return this.settle(ticket, { kind: 'crashed', node, exitCode: undefined, cause: lost });
    }
    if (!end.killed && !end.culpritKnown) {
      // The thread died and nobody knows whose fault it was: perhaps this segment's.
      if (ticket.blindResends >= MAX_RESENDS) return this.settle(ticket, { kind: 'crashed', node, exitCode: undefined, cause });
      ticket.blindResends++;
    }
    // A bystander: send it again, resuming at the node that was running.
    this.resend(ticket);
  }

  // -------------------------------------------------------------------------
  // Threads.

  /** Starts watching the threads of the pool we do not know yet. */
  private watchThreads(): void {
    for (const worker of this.pool.threads) {
      if (this.threads.has(worker.threadId)) continue;
      const thread: Thread = {
        threadId: worker.threadId,
        worker,
        port: undefined,
        card: undefined,
        tickets: new Set(),
        crash: undefined,
        killing: false,
        ended: false,
        sent: 0,
        knows: new Set(),
      };
      this.threads.set(worker.threadId, thread);
      // piscina listens first, so it is done with the thread when these run.
      worker.once('error', (error: unknown) => this.threadEnded(thread, undefined, error));
      worker.once('exit', (code: number) => this.threadEnded(thread, code, undefined));
    }
  }

  private introduce(threadId: number, port: MessagePort, card: ThreadCard): void {
    this.watchThreads();
    const thread = this.threads.get(threadId);
    if (thread === undefined || thread.ended) {
      port.close();
      return;
    }
    thread.port = port;
    thread.card = card;
    if (++this.introduced > this.size) this.events.threadReplaced();
    port.on('message', (message: ControlMessage) => this.onControlMessage(thread, message));
    if (thread.tickets.size === 0) port.unref();
    // Stops requested before the thread introduced itself reach it now.
    port.postMessage(WAKE);
    if (this.openPorts >= this.size) {
      this.onReady?.();
      this.onReady = undefined;
    }
  }

  /** Reads what the thread has sent and the port holds, now. */
  drain(thread: Thread): void {
    if (thread.port === undefined) return;
    let entry;
    while ((entry = receiveMessageOnPort(thread.port)) !== undefined) this.onControlMessage(thread, entry.message as ControlMessage);
  }

  private threadEnded(thread: Thread, exitCode: number | undefined, cause: unknown): void {
    if (thread.ended) return;
    thread.ended = true;
    this.drain(thread);
    thread.port?.close();
    this.threads.delete(thread.threadId);
    this.endedBusyMs += thread.card?.f64[T_BUSY_TOTAL] ?? 0;
    const killed = thread.killing;
    if (this.destroyed) {
      for (const ticket of thread.tickets) this.afterThreadEnd(ticket, { killed, culpritKnown: false }, cause);
      return;
    }
    const culprit = killed ? undefined : this.culpritOf(thread);
    if (!killed) {
      this.counts.crashes++;
      if (culprit !== undefined) this.events.nodeCrashed(culprit.runId, culprit.nodeId, exitCode, culprit.error ?? cause);
    }
    const end = { killed, culpritKnown: culprit !== undefined };
    for (const ticket of [...thread.tickets]) this.afterThreadEnd(ticket, end, cause ?? new Error(`worker exited with code: ${exitCode}`));
    this.watchThreads();
    // Segments that found every thread being terminated go to the replacement.
    if (this.outgoing.length > 0) queueMicrotask(this.flush);
    this.events.threadExited({
      threadId: thread.threadId,
      reason: killed ? 'terminated' : 'crashed',
      exitCode,
      runId: culprit?.runId,
      nodeId: culprit?.nodeId,
      cause: culprit?.error ?? cause,
    });
  }

  /** The node that took a dying thread down: from its last word, or the node holding the thread. */
  private culpritOf(thread: Thread): { runId: string; nodeId: string; error: unknown } | undefined {
    if (thread.crash !== undefined) {
      const { runId, nodeId, error } = thread.crash;
      return { runId, nodeId, error: error === undefined ? undefined : deserializeThrown(error) };
    }
    if (thread.card === undefined) return undefined;
    const holder = this.tickets[Atomics.load(thread.card.i32, T_HOLDER) - 1];
    if (holder === undefined) return undefined;
    const node = holder.job.nodes[Math.max(this.board.nodeOf(holder.slot), holder.first)];
    return node === undefined ? undefined : { runId: holder.job.runId, nodeId: node.id, error: undefined };
  }

  private onControlMessage(thread: Thread, message: ControlMessage): void {
    if (!Array.isArray(message)) {
      thread.crash = message as CrashNote;
      return;
    }

    for (const entry of message as Exclude<ControlMessage, CrashNote>) {
      if ('pong' in entry) {
        this.pings.get(entry.pong)?.(thread.threadId);
        continue;
      }
      const ticket = this.tickets[entry.s];
      if (ticket === undefined || ticket.gen !== entry.g || ticket.settled) continue;
      if ('end' in entry) {
        this.ended(ticket, entry.end);
      } else if ('p' in entry) {
        ticket.job.listener.progress(entry.n, entry.p);
      } else if ('st' in entry) {
        ticket.job.listener.nodeStarted(entry.n, entry.st);
      } else {
        if (entry.m === 0 || entry.n === ticket.job.nodes.length - 1) {
          // The next send of this segment resumes after the last node whose output we hold.
          ticket.first = entry.n + 1;
          ticket.input = entry.o;
          ticket.inputMoved = false;
        }
        ticket.job.listener.nodeCompleted(entry.n, entry.o, entry.t0, entry.t1, entry.m === 1);
      }
    }
    // A thread with nothing left to start takes work waiting on another.
    const card = thread.card;
    if (card !== undefined && Atomics.load(card.i32, T_READY) === 0 && thread.sent <= Atomics.load(card.i32, T_CLAIMED)) {
      this.rebalance(thread);
    }
  }
}

/** The thread a batch is meant for, from its queue options. */
function routeOf(task: object): number | undefined {
  const options = (task as Record<symbol, unknown>)[Piscina.queueOptionsSymbol] as { threadId?: number } | null | undefined;
  return options?.threadId;
}

function isBlocked(card: ThreadCard | undefined, now: number): boolean {
  return card !== undefined && Atomics.load(card.i32, T_HOLDER) !== 0 && now - (card.f64[T_HOLDER_SINCE] ?? now) > BLOCKED_MS;
}

/** The worker runtime file, and what its threads need to load it and TypeScript nodes. */
function workerRuntime(): { filename: string; execArgv: string[] | undefined; tsNodeRegister: string | undefined } {
  const fromSource = extname(__filename) === '.ts';
  const filename = resolve(__dirname, '..', 'workers', fromSource ? 'runtime.ts' : 'runtime.js');
  // Threads inherit no loader hooks. Under ts-node, register it in them too, without
  // type checks: at start when the runtime itself is TypeScript (our own sources),
  // else on a thread's first TypeScript node (a user's process running under ts-node).
  const underTsNode = fromSource || Symbol.for('ts-node.register.instance') in process;
  let register: string | undefined;
  try {
    register = underTsNode ? require.resolve('ts-node/register/transpile-only') : undefined;
  } catch {
    register = undefined;
  }
  if (fromSource && register !== undefined) {
    // Explicit execArgv must hold only flags a worker accepts (not V8 flags such as
    // --expose-gc, which it would inherit by default): keep the loader flags only.
    return { filename, execArgv: ['-r', register], tsNodeRegister: undefined };
  }
  return { filename, execArgv: undefined, tsNodeRegister: register };
}
