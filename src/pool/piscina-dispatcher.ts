/**
 * Dispatch: hands segments to worker threads and stops them in two phases.
 *
 * The scheduler sees only the {@link Dispatcher} interface: submit a segment, read its
 * progress, ask it to stop. {@link PiscinaDispatcher} implements it on a piscina pool:
 *
 * - Submitted segments wait in a fair queue and reach the threads in batches, each
 *   thread holding only a window ahead (see `sender.ts`). Many segments share a thread,
 *   so tasks carry no piscina `signal`.
 * - A thread sends node outputs and segment ends back on its control port, in order.
 * - A stop is a flag on the shared board plus a wake-up on the thread's control port;
 *   the node sees `ctx.signal` abort. A segment no worker has taken up yet is withdrawn
 *   at once. One that has not ended `graceMs` later has its thread terminated.
 * - Segments of other runs on a terminated thread did nothing wrong: they are sent
 *   again. A thread that dies by itself fails the run of the node at fault (see
 *   `thread-end.ts`).
 */
import { Piscina } from 'piscina';
import { performance } from 'node:perf_hooks';
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { Board, ThreadCard, createBoardMemory, type StopCode, type TaskProgress } from '../shared/board';
import type { ResolvedOptions } from '../options';
import { WAKE, isWorkerHello, type ControlMessage, type CrashNote, type Ping, type WorkerConfig } from '../shared/protocol';
import { receiveSettlement, type Settlement } from '../shared/settlement';
import type { Dispatcher, DispatcherEvents, DispatcherStats, SegmentJob, SegmentTicket, ThreadHealth } from './dispatcher';
import { drained, handOver, isDue, poolSize, retire, roleOfNew, type RecycleLimits } from './recycling';
import { Sender } from './sender';
import { culpritOf, fateOf, holderOf, type ThreadEnd } from './thread-end';
import { Pings, adjustWindow, allHeld, newThread, routeOf, usable, type Thread as PoolThread } from './threads';
import { Slots, Ticket, detach, type Batch } from './ticket';
import { WATCH_MS, awaitingAnswer, isOrphaned } from './watchdog';
import { workerRuntime } from './worker-path';

type Thread = PoolThread<Ticket>;

/** Runs segments on a piscina pool; see the file comment. */
export class PiscinaDispatcher implements Dispatcher {
  readonly enforcesNodeTimeouts = false;
  readonly reportsSends = true;
  readonly modulesAreLocal = true;
  private readonly counts = { terminations: 0, crashes: 0, resends: 0 };
  private readonly pool: Piscina;
  private readonly board: Board;
  private readonly slots: Slots;
  private readonly threads = new Map<number, Thread>();
  private readonly sender: Sender;
  private destroyed = false;
  private introduced = 0;
  /** Busy time of the threads that ended. */
  private endedBusyMs = 0;
  private readonly pings = new Pings();
  private readonly size: number;
  private readonly recycle: RecycleLimits | undefined;
  private readonly whenReady: Promise<void>;
  private readonly watchdog: NodeJS.Timeout;
  private onReady: (() => void) | undefined;

  constructor(
    options: ResolvedOptions,
    private readonly events: DispatcherEvents,
  ) {
    this.size = options.threads;
    this.recycle = options.recycleThreads;
    const started = poolSize(options.threads, this.recycle);
    this.whenReady = new Promise((resolve) => {
      this.onReady = resolve;
    });
    const capacity = options.threads * options.tasksPerThread;
    const memory = createBoardMemory(capacity);
    this.board = new Board(memory);
    this.slots = new Slots(capacity);
    const runtime = workerRuntime();
    const workerData: WorkerConfig = {
      board: memory,
      mainTimeOrigin: performance.timeOrigin,
      tsNodeRegister: runtime.tsNodeRegister,
      progressIntervalMs: options.progressIntervalMs,
      measureHeap: this.recycle !== undefined && this.recycle.heapUsedBytes !== Infinity,
    };
    this.pool = new Piscina({
      filename: runtime.filename,
      execArgv: runtime.execArgv,
      minThreads: started,
      maxThreads: started,
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
    this.sender = new Sender({
      pool: this.pool,
      board: this.board,
      slots: this.slots,
      threads: this.threads,
      now: () => this.now(),
      isDestroyed: () => this.destroyed,
      watchThreads: () => this.watchThreads(),
      batchFailed: (batch, error) => this.batchFailed(batch, error),
    });
    this.pool.on('message', (message: unknown) => {
      if (isWorkerHello(message)) this.introduce(message.threadId, message.port, new ThreadCard(message.card));
    });
    // A thread that dies with no task on it is reported here (and counted by watch()'s
    // listeners); without a listener it would crash the process.
    this.pool.on('error', () => {});
    this.watchThreads();
    this.watchdog = setInterval(this.watch, WATCH_MS).unref();
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
      tasksInFlight: this.slots.capacity - this.slots.available,
      tasksQueued: this.sender.waiting,
      tasksWaiting: this.slots.available === 0 ? this.sender.waiting : 0,
      ...this.counts,
    };
  }

  allThreadsHeld(): boolean {
    return allHeld(this.threads.values());
  }

  busyMs(): number {
    let busy = this.endedBusyMs;
    for (const thread of this.threads.values()) busy += thread.card?.busyMs() ?? 0;
    return busy;
  }

  async ping(timeoutMs: number): Promise<ThreadHealth[]> {
    const asked = [...this.threads.values()].filter((thread) => thread.port !== undefined && !thread.ended);
    const answered = await this.pings.ask(asked, timeoutMs);
    const now = this.now();
    return asked.map((thread) => ({
      threadId: thread.threadId,
      responsive: answered.has(thread.threadId),
      heldBy: holderOf(thread, this.slots, this.board, now),
    }));
  }

  /** Control ports open on the main thread (one per live thread). */
  get openPorts(): number {
    let open = 0;
    for (const thread of this.threads.values()) if (thread.port !== undefined) open++;
    return open;
  }

  submit(job: SegmentJob): SegmentTicket {
    const ticket = new Ticket(this, job);
    this.sender.submit(ticket);
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
      this.sender.unsend(ticket);
      return this.settle(ticket, { kind: 'stopped', position: ticket.first });
    }
    this.board.requestStop(ticket.slot, code);
    if (this.board.withdraw(ticket.slot, ticket.gen)) {
      // On its way, and no worker has taken it up: it never starts.
      ticket.thread.sent--;
      return this.settle(ticket, { kind: 'stopped', position: ticket.first });
    }
    ticket.thread.port?.postMessage(WAKE);
    if (Number.isFinite(graceMs)) {
      ticket.graceTimer = setTimeout(() => this.graceExpired(ticket), graceMs);
    }
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    clearInterval(this.watchdog);
    for (const ticket of this.sender.drainAll()) {
      this.settle(ticket, { kind: 'stopped', position: ticket.first });
    }
    await this.pool.destroy();
    for (const thread of this.threads.values()) thread.port?.close();
    this.threads.clear();
  }

  // -------------------------------------------------------------------------
  // Sending again.

  /** Recycling (see `recycling.ts`): a spare takes `due`'s place; `due` gives back what it has not started. */
  private replace(due: Thread): void {
    if (handOver(due, this.threads.values()) === undefined) return;
    for (const ticket of [...due.tickets]) this.sender.takeBack(ticket, undefined);
    if (drained(due)) retire(due);
    this.sender.schedule();
  }

  /** A batch that could not be sent (an input that cannot be cloned), or whose thread died. */
  private batchFailed(batch: Batch, error: unknown): void {
    const live = batch.tickets.filter((ticket, i) => !ticket.settled && ticket.gen === batch.gens[i]);
    if (live.length === 0) return;
    if (isPostFailure(error)) {
      // Nothing of it arrived: the thread may lack segments we counted as sent. Which
      // input could not be posted (or moved) is found by sending each one alone.
      batch.thread.knows.clear();
      for (const ticket of live) {
        ticket.inputMoved = false;
        if (batch.tickets.length === 1) {
          this.settle(ticket, { kind: 'input-unclonable', cause: error });
          continue;
        }
        ticket.alone = true;
        this.resend(ticket);
      }
      return;
    }
    // Its thread died before we heard of it: nobody knows whose fault it was.
    for (const ticket of live) this.afterThreadEnd(ticket, { killed: false, culpritKnown: false }, error);
  }

  private resend(ticket: Ticket): void {
    detach(ticket);
    // No longer the task it was: what still comes of its old sending is stale.
    ticket.gen = 0;
    this.counts.resends++;
    this.sender.send(ticket);
  }

  // -------------------------------------------------------------------------
  // Ending.

  private settle(ticket: Ticket, settlement: Settlement): void {
    if (ticket.settled) return;
    ticket.settled = true;
    if (ticket.graceTimer !== undefined) clearTimeout(ticket.graceTimer);
    ticket.graceTimer = undefined;
    detach(ticket);
    let startedAt: number | undefined;
    if (ticket.slot >= 0) {
      if (settlement.kind !== 'done' && ticket.gen !== 0) startedAt = this.board.startedAt(ticket.slot);
      this.slots.release(ticket);
      if (this.sender.waiting > 0) this.sender.schedule();
    }
    ticket.job.listener.settled(settlement, startedAt);
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

  /** What becomes of a segment whose thread ended under it (see `thread-end.ts`). */
  private afterThreadEnd(ticket: Ticket, end: ThreadEnd, cause: unknown): void {
    if (ticket.settled) return;
    const position = Math.max(this.board.nodeOf(ticket.slot), ticket.first);
    const settlement = fateOf(ticket, end, cause, position, this.destroyed);
    if (settlement !== undefined) this.settle(ticket, settlement);
    else this.resend(ticket);
  }

  // -------------------------------------------------------------------------
  // Threads.

  /** The watchdog's round (see `watchdog.ts`): terminates orphaned threads, pings the others. */
  private watch = (): void => {
    const now = this.now();
    for (const thread of [...this.threads.values()]) {
      if (thread.port === undefined || !(usable(thread) || thread.role === 'draining')) continue;
      this.drain(thread);
      if (isOrphaned(thread, now, () => this.nodeRunningOn(thread))) {
        thread.orphaned = true;
        this.terminate(thread);
        continue;
      }
      if (!awaitingAnswer(thread)) {
        thread.pingedAt = now;
        thread.port.postMessage({ ping: 0 } satisfies Ping);
      }
    }
  };

  /** Whether a node of one of the thread's segments is running there. */
  private nodeRunningOn(thread: Thread): boolean {
    for (const ticket of thread.tickets) {
      if (this.board.threadOf(ticket.slot) === thread.threadId && this.board.startedAt(ticket.slot) !== undefined) return true;
    }
    return false;
  }

  /** Starts watching the threads of the pool we do not know yet. */
  private watchThreads(): void {
    for (const worker of this.pool.threads) {
      if (this.threads.has(worker.threadId)) continue;
      const thread: Thread = newThread(worker);
      thread.role = roleOfNew(this.threads.values(), this.size);
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
    this.sender.tellWanted(thread);
    if (++this.introduced > poolSize(this.size, this.recycle)) this.events.threadReplaced();
    port.on('message', (message: ControlMessage) => this.onControlMessage(thread, message));
    if (thread.tickets.size === 0) port.unref();
    // Stops requested before the thread introduced itself reach it now.
    port.postMessage(WAKE);
    if (this.sender.waiting > 0) this.sender.schedule();
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
    this.endedBusyMs += thread.card?.busyMs() ?? 0;
    // A retired thread (recycling) was terminated on purpose, between its nodes.
    const killed = thread.killing || thread.role === 'retired';
    if (this.destroyed) {
      for (const ticket of thread.tickets) this.afterThreadEnd(ticket, { killed, culpritKnown: false }, cause);
      return;
    }
    const culprit = killed ? undefined : culpritOf(thread, this.slots, this.board);
    if (!killed) {
      this.counts.crashes++;
      if (culprit !== undefined) this.events.nodeCrashed(culprit.runId, culprit.nodeId, exitCode, culprit.error ?? cause, culprit.element);
    }
    const end: ThreadEnd = { killed, culpritKnown: culprit !== undefined, orphaned: thread.orphaned };
    for (const ticket of [...thread.tickets]) this.afterThreadEnd(ticket, end, cause ?? new Error(`worker exited with code: ${exitCode}`));
    this.watchThreads();
    // Segments that found every thread being terminated go to the replacement.
    if (this.sender.hasWork) this.sender.schedule();
    this.events.threadExited({
      threadId: thread.threadId,
      reason: thread.orphaned ? 'orphaned' : thread.role === 'retired' ? 'recycled' : killed ? 'terminated' : 'crashed',
      exitCode,
      runId: culprit?.runId,
      nodeId: culprit?.nodeId,
      cause: culprit?.error ?? cause,
    });
  }

  private onControlMessage(thread: Thread, message: ControlMessage): void {
    thread.lastHeard = this.now();
    if (!Array.isArray(message)) {
      thread.crash = message as CrashNote;
      return;
    }

    let hungry = false;
    for (const entry of message as Exclude<ControlMessage, CrashNote>) {
      if ('pong' in entry) {
        this.pings.answer(entry.pong, thread.threadId);
        continue;
      }
      if ('hungry' in entry) {
        hungry = true;
        continue;
      }
      const ticket = this.slots.at(entry.s);
      if (ticket === undefined || ticket.gen !== entry.g || ticket.settled) continue;
      if ('end' in entry) {
        this.settle(ticket, receiveSettlement(entry.end));
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
    if (isDue(thread, this.recycle)) this.replace(thread);
    // The thread has moved on: it may have room for pending tickets.
    adjustWindow(thread, hungry, this.now());
    if (this.sender.waiting > 0) this.sender.schedule();
    // A thread with nothing left to start takes work waiting on another, unless work is
    // about to be sent (re-sent tickets, or pending ones the next flush gives the threads
    // with room): moving a segment costs a second send, more than a short one takes to
    // run where it waits.
    const card = thread.card;
    if (card !== undefined && !this.sender.hasWork && card.ready() === 0 && thread.sent <= card.claimed()) {
      this.sender.rebalance(thread);
    }
  }
}

/** Whether `pool.run()` failed because the batch could not be posted (not because its thread died). */
function isPostFailure(error: unknown): boolean {
  return error instanceof Error && (error.name === 'DataCloneError' || error instanceof TypeError);
}
