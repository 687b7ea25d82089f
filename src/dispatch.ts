/**
 * Dispatch: hands segments to worker threads and stops them in two phases.
 *
 * The scheduler sees only the {@link Dispatcher} interface: submit a segment, read its
 * progress, ask it to stop. {@link PiscinaDispatcher} implements it on a piscina pool:
 *
 * - Many tasks share a thread (piscina's `concurrentTasksPerWorker`), so tasks carry no
 *   piscina `signal`. A stop is a flag on the shared board plus a wake-up message on
 *   the thread's control port; the node sees `ctx.signal` abort.
 * - If the task has not settled `graceMs` later, its thread is terminated.
 * - Tasks of other runs on a terminated thread did nothing wrong: they are sent again,
 *   resuming at the node that was running (at-least-once for that node).
 * - A thread that dies by itself (`process.exit()`, an uncaught error, out of memory)
 *   fails the task whose code held it; the others are sent again, at most
 *   {@link MAX_RESENDS} times each.
 */
import { Piscina } from 'piscina';
import { performance } from 'node:perf_hooks';
import { receiveMessageOnPort, type MessagePort, type Worker } from 'node:worker_threads';
import { extname, resolve } from 'node:path';
import { Board, ThreadCard, T_HOLDER, createBoardMemory, type StopCode, type TaskProgress } from './board';
import type { ResolvedOptions } from './config';
import {
  WAKE,
  deserializeThrown,
  isWorkerHello,
  type ControlMessage,
  type CrashNote,
  type NodeReport,
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
  readonly input: unknown;
  readonly listener: SegmentListener;
}

export interface SegmentListener {
  /** Node `index` of the segment completed. Times are on the dispatcher's clock. */
  nodeCompleted(index: number, output: unknown, startedAt: number, endedAt: number): void;
  /** The segment is over; called exactly once, after every `nodeCompleted`. */
  settled(settlement: Settlement): void;
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
  | { readonly kind: 'input-unclonable'; readonly cause: unknown };

export interface SegmentTicket {
  /** Which node runs and for how long it has had its thread (see `board.ts`). */
  progress(): TaskProgress;
  /** Asks the segment to stop; terminates its thread if it has not settled `graceMs` later. */
  stop(code: StopCode, graceMs: number): void;
}

/** The seam between the scheduler and whatever runs the nodes. */
export interface Dispatcher {
  submit(job: SegmentJob): SegmentTicket;
  /** The clock of `progress()` and of reported times, in milliseconds. */
  now(): number;
  /** Resolves once every thread of the pool has started. */
  ready(): Promise<void>;
  /** Stops every task at once and releases the threads. */
  destroy(): Promise<void>;
  stats(): DispatcherStats;
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

interface ThreadLink {
  readonly threadId: number;
  readonly port: MessagePort;
  readonly card: ThreadCard;
  readonly worker: Worker | undefined;
  /** The thread's last word, when a node is taking it down. */
  crash: CrashNote | undefined;
}

/** Facts about a thread that ended, kept until the tasks it held are handled. */
interface ThreadEnd {
  /** We terminated it. */
  readonly killed: boolean;
  /** It died by itself and the node at fault is known (and was told of). */
  readonly culpritKnown: boolean;
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

  constructor(
    readonly dispatcher: PiscinaDispatcher,
    readonly job: SegmentJob,
  ) {
    this.input = job.input;
  }

  progress(): TaskProgress {
    return this.dispatcher.progressOf(this);
  }

  stop(code: StopCode, graceMs: number): void {
    this.dispatcher.stop(this, code, graceMs);
  }
}

/** Runs segments on a piscina pool; see the file comment. */
export class PiscinaDispatcher implements Dispatcher {
  private readonly counts = { terminations: 0, crashes: 0, resends: 0 };
  private readonly pool: Piscina;
  private readonly board: Board;
  private readonly tickets: (Ticket | undefined)[];
  private readonly freeSlots: number[] = [];
  private readonly waiting: Ticket[] = [];
  private readonly threads = new Map<number, ThreadLink>();
  private readonly ended = new Map<number, ThreadEnd>();
  private readonly killing = new Set<number>();
  /** Outcomes from threads whose introduction has not arrived yet (it comes on another channel). */
  private readonly deferred = new Map<number, (() => void)[]>();
  private gen = 0;
  private destroyed = false;
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
    };
    this.pool = new Piscina({
      filename: runtime.filename,
      execArgv: runtime.execArgv,
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: options.tasksPerThread,
      atomics: 'disabled',
      recordTiming: false,
      resourceLimits: options.resourceLimits,
      workerData,
    });
    this.pool.on('message', (message: unknown) => {
      if (isWorkerHello(message)) this.attach(message.threadId, message.port, new ThreadCard(message.card));
    });
    // A thread that dies with no task on it is reported here (and counted by attach()'s
    // listeners); without a listener it would crash the process.
    this.pool.on('error', () => {});
  }

  now(): number {
    return performance.now();
  }

  stats(): DispatcherStats {
    return {
      threads: this.pool.threads.length,
      tasksInFlight: this.tickets.length - this.freeSlots.length,
      tasksWaiting: this.waiting.length,
      ...this.counts,
    };
  }

  /** Control ports open on the main thread (one per live thread). */
  get openPorts(): number {
    return this.threads.size;
  }

  ready(): Promise<void> {
    return this.whenReady;
  }

  submit(job: SegmentJob): SegmentTicket {
    const ticket = new Ticket(this, job);
    const slot = this.freeSlots.pop();
    if (slot === undefined) this.waiting.push(ticket);
    else this.send(ticket, slot);
    return ticket;
  }

  progressOf(ticket: Ticket): TaskProgress {
    if (ticket.slot < 0 || ticket.settled) return { started: false };
    const threadId = this.board.threadOf(ticket.slot);
    return this.board.progress(ticket.slot, this.threads.get(threadId)?.card, this.now());
  }

  stop(ticket: Ticket, code: StopCode, graceMs: number): void {
    if (ticket.settled || ticket.stopCode !== 0) return;
    ticket.stopCode = code;
    if (ticket.slot < 0) {
      this.waiting.splice(this.waiting.indexOf(ticket), 1);
      this.settle(ticket, { kind: 'stopped', node: ticket.first });
      return;
    }
    this.board.requestStop(ticket.slot, code);
    const link = this.threads.get(this.board.threadOf(ticket.slot));
    link?.port.postMessage(WAKE);
    if (Number.isFinite(graceMs)) {
      ticket.graceTimer = setTimeout(() => this.graceExpired(ticket), graceMs);
    }
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const ticket of this.waiting.splice(0)) this.settle(ticket, { kind: 'stopped', node: ticket.first });
    await this.pool.destroy();
    for (const link of this.threads.values()) link.port.close();
    this.threads.clear();
  }

  // -------------------------------------------------------------------------

  private send(ticket: Ticket, slot: number): void {
    ticket.slot = slot;
    ticket.gen = ++this.gen;
    this.tickets[slot] = ticket;
    this.board.reset(slot);
    if (ticket.stopCode !== 0) this.board.requestStop(slot, ticket.stopCode);
    const task: SegmentTask = {
      slot,
      gen: ticket.gen,
      runId: ticket.job.runId,
      pipelineId: ticket.job.pipelineId,
      nodes: ticket.job.nodes,
      first: ticket.first,
      input: ticket.input,
    };
    const gen = ticket.gen;
    this.pool.run(task).then(
      (outcome: SegmentOutcome) => this.onOutcome(ticket, gen, outcome),
      (error: unknown) => this.onRejected(ticket, gen, error),
    );
  }

  private onOutcome(ticket: Ticket, gen: number, outcome: SegmentOutcome): void {
    if (ticket.gen !== gen || ticket.settled) return;
    const threadId = this.board.threadOf(ticket.slot);
    if (!this.threads.has(threadId) && this.pool.threads.some((thread) => thread.threadId === threadId)) {
      // The reports of this task are on a port we do not know yet: wait for it.
      const waiting = this.deferred.get(threadId) ?? [];
      waiting.push(() => this.onOutcome(ticket, gen, outcome));
      this.deferred.set(threadId, waiting);
      return;
    }
    // Reports posted before the outcome may still wait on the control port.
    this.drainPort(threadId);
    switch (outcome.kind) {
      case 'done':
        return this.settle(ticket, outcome);
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

  private onRejected(ticket: Ticket, gen: number, error: unknown): void {
    if (ticket.gen !== gen || ticket.settled) return;
    if (error instanceof Error && error.name === 'DataCloneError') {
      return this.settle(ticket, { kind: 'input-unclonable', cause: error });
    }
    const threadId = this.board.threadOf(ticket.slot);
    this.drainPort(threadId);
    const node = Math.max(this.board.nodeOf(ticket.slot), ticket.first);
    if (ticket.first >= ticket.job.nodes.length) {
      // Every output arrived; only the thread's last word was lost.
      return this.settle(ticket, { kind: 'done' });
    }
    if (ticket.stopCode !== 0) {
      return this.settle(ticket, { kind: 'killed', node });
    }
    if (this.destroyed) return this.settle(ticket, { kind: 'stopped', node });
    // A task the thread had not picked up yet has no thread on the board: it belongs to
    // one of the threads that ended just now (their handling runs in this same turn).
    const end = threadId !== 0 ? this.ended.get(threadId) : this.anyEnded();
    if (end === undefined || (!end.killed && !end.culpritKnown)) {
      // The thread died and nobody knows whose fault it was: perhaps this task's.
      if (ticket.blindResends >= MAX_RESENDS) {
        return this.settle(ticket, { kind: 'crashed', node, exitCode: undefined, cause: error });
      }
      ticket.blindResends++;
    }
    // A bystander: send it again, resuming at the node that was running.
    this.counts.resends++;
    this.release(ticket);
    const slot = this.freeSlots.pop()!;
    this.send(ticket, slot);
  }

  /** The threads that ended in this turn, taken together: innocent only if each one is. */
  private anyEnded(): ThreadEnd | undefined {
    if (this.ended.size === 0) return undefined;
    let killed = true;
    let culpritKnown = true;
    for (const end of this.ended.values()) {
      killed &&= end.killed;
      culpritKnown &&= end.killed || end.culpritKnown;
    }
    return { killed, culpritKnown };
  }

  private graceExpired(ticket: Ticket): void {
    ticket.graceTimer = undefined;
    if (ticket.settled) return;
    const threadId = this.board.threadOf(ticket.slot);
    if (threadId === 0) {
      // Still on its way to a worker, which will see the stop before starting it.
      return;
    }
    this.terminate(threadId);
  }

  private terminate(threadId: number): void {
    if (this.killing.has(threadId)) return;
    const link = this.threads.get(threadId);
    const worker = link?.worker ?? this.pool.threads.find((thread) => thread.threadId === threadId);
    if (worker === undefined) return;
    this.killing.add(threadId);
    this.counts.terminations++;
    void worker.terminate();
  }

  private settle(ticket: Ticket, settlement: Settlement): void {
    if (ticket.settled) return;
    ticket.settled = true;
    if (ticket.graceTimer !== undefined) clearTimeout(ticket.graceTimer);
    ticket.graceTimer = undefined;
    if (ticket.slot >= 0) {
      this.release(ticket);
      const next = this.waiting.shift();
      if (next !== undefined) this.send(next, this.freeSlots.pop()!);
    }
    ticket.job.listener.settled(settlement);
  }

  private release(ticket: Ticket): void {
    this.tickets[ticket.slot] = undefined;
    this.freeSlots.push(ticket.slot);
    ticket.slot = -1;
  }

  private attach(threadId: number, port: MessagePort, card: ThreadCard): void {
    const worker = this.pool.threads.find((thread) => thread.threadId === threadId);
    const link: ThreadLink = { threadId, port, card, worker, crash: undefined };
    this.threads.set(threadId, link);
    if (this.threads.size >= this.size) {
      this.onReady?.();
      this.onReady = undefined;
    }
    port.on('message', (message: ControlMessage) => this.onControlMessage(link, message));
    port.unref();
    // Stops requested before the thread introduced itself reach it now.
    port.postMessage(WAKE);
    const deferred = this.deferred.get(threadId);
    if (deferred !== undefined) {
      this.deferred.delete(threadId);
      for (const handle of deferred) handle();
    }
    if (worker === undefined) return;
    // piscina listens first, so by the time these run the thread's tasks are already
    // rejected (their handlers queued as microtasks, which run after this).
    let over = false;
    const end = (exitCode: number | undefined, cause: unknown): void => {
      if (over) return;
      over = true;
      this.drainPort(threadId);
      this.threads.delete(threadId);
      port.close();
      const killed = this.killing.delete(threadId);
      if (this.destroyed) return;
      const culprit = killed ? undefined : this.culpritOf(link);
      if (!killed) {
        this.counts.crashes++;
        if (culprit !== undefined) this.events.nodeCrashed(culprit.runId, culprit.nodeId, exitCode, culprit.error ?? cause);
      }
      this.ended.set(threadId, { killed, culpritKnown: culprit !== undefined });
      setImmediate(() => this.ended.delete(threadId));
      this.events.threadExited({
        threadId,
        reason: killed ? 'terminated' : 'crashed',
        exitCode,
        runId: culprit?.runId,
        nodeId: culprit?.nodeId,
        cause: culprit?.error ?? cause,
      });
    };
    worker.once('error', (error: unknown) => end(undefined, error));
    worker.once('exit', (code: number) => end(code, undefined));
  }

  /** The node that took a dying thread down: from its last word, or the node holding the thread. */
  private culpritOf(link: ThreadLink): { runId: string; nodeId: string; error: unknown } | undefined {
    if (link.crash !== undefined) {
      const { runId, nodeId, error } = link.crash;
      return { runId, nodeId, error: error === undefined ? undefined : deserializeThrown(error) };
    }
    const holder = this.tickets[Atomics.load(link.card.i32, T_HOLDER) - 1];
    if (holder === undefined) return undefined;
    const node = holder.job.nodes[Math.max(this.board.nodeOf(holder.slot), holder.first)];
    return node === undefined ? undefined : { runId: holder.job.runId, nodeId: node.id, error: undefined };
  }

  private drainPort(threadId: number): void {
    const link = this.threads.get(threadId);
    if (link === undefined) return;
    let entry;
    while ((entry = receiveMessageOnPort(link.port)) !== undefined) this.onControlMessage(link, entry.message as ControlMessage);
  }

  private onControlMessage(link: ThreadLink, message: ControlMessage): void {
    if (Array.isArray(message)) this.onReports(message as readonly NodeReport[]);
    else link.crash = message as CrashNote;
  }

  private onReports(batch: readonly NodeReport[]): void {
    for (const report of batch) {
      const ticket = this.tickets[report.s];
      if (ticket === undefined || ticket.gen !== report.g || ticket.settled) continue;
      // The next send of this task resumes after the last node reported.
      ticket.first = report.n + 1;
      ticket.input = report.o;
      ticket.job.listener.nodeCompleted(report.n, report.o, report.t0, report.t1);
    }
  }
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
