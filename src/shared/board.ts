/**
 * Shared memory between the main thread and the worker threads.
 *
 * The *slot board* (one per executor) has a row per node task in flight. The main
 * thread writes a row's stop request; the worker running the task writes which thread
 * holds it, which node of the segment runs, and when it started. The main thread reads
 * those facts at a deadline without a message round trip, even while the worker is
 * stuck in a node's code.
 *
 * A *thread card* (one per worker thread, made by the worker) says whose code holds
 * the thread right now and how long nodes' synchronous code has held it in all. The
 * main thread uses it to tell a node that blocks its thread from the nodes it starves.
 *
 * A worker writes its rows and its card inside a sequence lock (`SEQ` odd while
 * writing) so the main thread never reads a half-written picture.
 *
 * Both halves are here: {@link Board} is the main thread's (it resets rows, requests
 * stops, withdraws tasks and reads progress), {@link ThreadBoard} a worker's (it claims
 * tasks and writes which node runs and holds the thread).
 */

/** Why the main thread asks a task to stop. The worker shows it as `ctx.signal.reason`. */
export const Stop = {
  None: 0,
  Cancel: 1,
  NodeTimeout: 2,
  PipelineTimeout: 3,
  /** Another node of the run failed. */
  Failure: 4,
} as const;
/** One of the {@link Stop} codes. */
export type StopCode = (typeof Stop)[keyof typeof Stop];

// Slot row, Int32 fields.
export const S_STOP = 0;
export const S_THREAD = 1;
/**
 * Position (within the segment) of the node running; -1 before the first starts, and
 * `-(position + 2)` between the end of the node at `position` and the next node's start.
 */
export const S_NODE = 2;
/**
 * Who owns the task: its generation while it is on its way, `-generation` once a
 * worker took it up, 0 once the main thread withdrew it. Both sides change it with a
 * compare-and-swap, so a task is either started by a worker or withdrawn, never both.
 */
export const S_CLAIM = 3;
export const SLOT_I32 = 4;
// Slot row, Float64 fields.
export const S_STARTED_AT = 0;
/** The thread's `T_BUSY_TOTAL` when the node started. */
export const S_BUSY_AT_START = 1;
/** Time this node's own synchronous code has held its thread. */
export const S_OWN_SYNC = 2;
export const SLOT_F64 = 4;

// Thread card, Int32 fields.
const T_SEQ = 0;
/**
 * Slot + 1 of the task whose node code is running on the thread, 0 for none, and
 * {@link ORPHAN} for a callback of a node that has ended (see `workers/orphans.ts`).
 */
const T_HOLDER = 1;
/** `T_HOLDER` while a node that has ended holds the thread from a callback it left behind. */
export const ORPHAN = -1;
/** Tasks the thread has taken up, in all (the main thread counts those it sent). */
const T_CLAIMED = 2;
/** Segments waiting in the thread to start their next node. */
const T_READY = 3;
/**
 * 1 while the main thread holds node tasks back for want of room on the threads: a
 * thread whose ready segments run out then says so at once (`Hungry`).
 */
const T_WANTED = 4;
/** Nodes the thread has run to their end, in all. */
const T_NODES_RUN = 5;
const CARD_I32 = 6;
// Thread card, Float64 fields (after the 24 bytes of Int32 fields).
const T_HOLDER_SINCE = 0;
/** Total time nodes' synchronous code has held the thread. */
const T_BUSY_TOTAL = 1;
/** The thread's V8 heap in use after its latest node ended, in bytes (0 until it is measured). */
const T_HEAP_USED = 2;
/** Total time callbacks of nodes that had ended (orphans) have held the thread. */
const T_ORPHAN_TOTAL = 3;
const CARD_F64 = 4;
export const CARD_BYTES = CARD_I32 * 4 + CARD_F64 * 8;

export interface BoardMemory {
  readonly capacity: number;
  readonly i32: SharedArrayBuffer;
  readonly f64: SharedArrayBuffer;
}

export function createBoardMemory(capacity: number): BoardMemory {
  return {
    capacity,
    i32: new SharedArrayBuffer(capacity * SLOT_I32 * 4),
    f64: new SharedArrayBuffer(capacity * SLOT_F64 * 8),
  };
}

/**
 * A thread's card: the thread writes it (through its {@link ThreadBoard}); the main
 * thread reads it with these methods, and writes `T_WANTED` alone.
 */
export class ThreadCard {
  readonly i32: Int32Array;
  readonly f64: Float64Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.i32 = new Int32Array(buffer, 0, CARD_I32);
    this.f64 = new Float64Array(buffer, CARD_I32 * 4, CARD_F64);
  }

  /** Slot + 1 of the node whose synchronous code holds the thread, {@link ORPHAN}, or 0. */
  holder(): number {
    return Atomics.load(this.i32, T_HOLDER);
  }

  /** How long the thread has been held by its current holder, at `now` (meaningful while {@link holder} is not 0). */
  heldForMs(now: number): number {
    return now - (this.f64[T_HOLDER_SINCE] ?? now);
  }

  /** Total time nodes' synchronous code has held the thread. */
  busyMs(): number {
    return this.f64[T_BUSY_TOTAL] ?? 0;
  }

  /** Tasks the thread has taken up, in all. */
  claimed(): number {
    return Atomics.load(this.i32, T_CLAIMED);
  }

  /** Segments waiting in the thread to start their next node. */
  ready(): number {
    return Atomics.load(this.i32, T_READY);
  }

  /** Nodes the thread has run to their end, in all. */
  nodesRun(): number {
    return Atomics.load(this.i32, T_NODES_RUN);
  }

  /** The thread's heap in use after its latest node, in bytes (0 until measured). */
  heapUsed(): number {
    return this.f64[T_HEAP_USED] ?? 0;
  }

  /**
   * The holder, how long an orphan (a callback of a node that had ended) has held the
   * thread now, and orphans' total time with it: one consistent reading.
   */
  orphans(now: number): { holder: number; holding: number; total: number } {
    return this.consistent(() => {
      const holder = Atomics.load(this.i32, T_HOLDER);
      const holding = holder === ORPHAN ? now - (this.f64[T_HOLDER_SINCE] ?? now) : 0;
      return { holder, holding, total: (this.f64[T_ORPHAN_TOTAL] ?? 0) + holding };
    });
  }

  /** What `read` returns from a reading no write of the thread overlapped (its sequence lock). */
  consistent<T>(read: () => T): T {
    for (let attempt = 0; ; attempt++) {
      const seq = Atomics.load(this.i32, T_SEQ);
      // A writer killed mid-write leaves SEQ odd for good: after a few tries, read anyway.
      if ((seq & 1) === 1 && attempt < 64) continue;
      const value = read();
      if (Atomics.load(this.i32, T_SEQ) === seq || attempt >= 64) return value;
    }
  }

  /** Tells the thread whether the main thread holds node tasks back (see `T_WANTED`). */
  setWanted(wanted: boolean): void {
    Atomics.store(this.i32, T_WANTED, wanted ? 1 : 0);
  }
}

/** What the main thread reads of a task at a deadline. */
export type TaskProgress =
  | { readonly started: false }
  | {
      readonly started: true;
      /** Position within the segment of the node running. */
      readonly position: number;
      /** Time the node has had its thread: since its start, less what other nodes' synchronous code took. */
      readonly elapsedMs: number;
      /** The node's own synchronous code holds the thread right now. */
      readonly holdsThread: boolean;
    };

const NOT_STARTED: TaskProgress = Object.freeze({ started: false });

/** The main thread's view of the board. */
export class Board {
  readonly i32: Int32Array;
  readonly f64: Float64Array;

  constructor(readonly memory: BoardMemory) {
    this.i32 = new Int32Array(memory.i32);
    this.f64 = new Float64Array(memory.f64);
  }

  /** Readies a row for a new task of generation `gen` (a positive int32). */
  reset(slot: number, gen: number): void {
    const base = slot * SLOT_I32;
    Atomics.store(this.i32, base + S_STOP, Stop.None);
    Atomics.store(this.i32, base + S_THREAD, 0);
    Atomics.store(this.i32, base + S_NODE, -1);
    Atomics.store(this.i32, base + S_CLAIM, gen);
  }

  /** Withdraws a task no worker has taken up yet; false if a worker already has it. */
  withdraw(slot: number, gen: number): boolean {
    return Atomics.compareExchange(this.i32, slot * SLOT_I32 + S_CLAIM, gen, 0) === gen;
  }

  requestStop(slot: number, code: StopCode): void {
    Atomics.compareExchange(this.i32, slot * SLOT_I32 + S_STOP, Stop.None, code);
  }

  /** Thread id of the worker that took the task, 0 while it is on its way. */
  threadOf(slot: number): number {
    return Atomics.load(this.i32, slot * SLOT_I32 + S_THREAD);
  }

  /** The node running, or the next one to run. */
  nodeOf(slot: number): number {
    const node = Atomics.load(this.i32, slot * SLOT_I32 + S_NODE);
    return node >= -1 ? Math.max(node, 0) : -node - 1;
  }

  /** When the node now running started, or undefined when none runs. */
  startedAt(slot: number): number | undefined {
    if (Atomics.load(this.i32, slot * SLOT_I32 + S_NODE) < 0) return undefined;
    return this.f64[slot * SLOT_F64 + S_STARTED_AT];
  }

  /** Reads a task's progress consistently with its thread's card. */
  progress(slot: number, card: ThreadCard | undefined, now: number): TaskProgress {
    const base = slot * SLOT_I32;
    if (card === undefined) {
      return Atomics.load(this.i32, base + S_NODE) < 0 ? NOT_STARTED : this.readProgress(slot, undefined, now);
    }
    return card.consistent(() => this.readProgress(slot, card, now));
  }

  private readProgress(slot: number, card: ThreadCard | undefined, now: number): TaskProgress {
    const node = Atomics.load(this.i32, slot * SLOT_I32 + S_NODE);
    if (node < 0) return NOT_STARTED;
    const row = slot * SLOT_F64;
    const startedAt = this.f64[row + S_STARTED_AT] ?? now;
    if (card === undefined) return { started: true, position: node, elapsedMs: now - startedAt, holdsThread: false };
    const holder = Atomics.load(card.i32, T_HOLDER);
    const holding = holder === 0 ? 0 : now - (card.f64[T_HOLDER_SINCE] ?? now);
    const busyNow = (card.f64[T_BUSY_TOTAL] ?? 0) + holding;
    const holdsThread = holder === slot + 1;
    const own = (this.f64[row + S_OWN_SYNC] ?? 0) + (holdsThread ? holding : 0);
    const others = busyNow - (this.f64[row + S_BUSY_AT_START] ?? 0) - own;
    return { started: true, position: node, elapsedMs: now - startedAt - Math.max(0, others), holdsThread };
  }
}

/** A worker thread's view of the board and of its own card: the writes. */
export class ThreadBoard {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  /** The slot whose ES module is loading, and since when it holds the thread again (see `rest`). */
  private resting = -1;
  private restingSince = 0;
  readonly card = new ThreadCard(new SharedArrayBuffer(CARD_BYTES));

  constructor(memory: BoardMemory) {
    this.i32 = new Int32Array(memory.i32);
    this.f64 = new Float64Array(memory.f64);
  }

  /**
   * Takes up the task of generation `gen` in `slot` unless the main thread withdrew it:
   * the compare-and-swap that `Board.withdraw` races with.
   */
  claim(slot: number, gen: number, threadId: number): boolean {
    if (Atomics.compareExchange(this.i32, slot * SLOT_I32 + S_CLAIM, gen, -gen) !== gen) return false;
    Atomics.store(this.i32, slot * SLOT_I32 + S_THREAD, threadId);
    Atomics.add(this.card.i32, T_CLAIMED, 1);
    return true;
  }

  /** Why the main thread asks the task in `slot` to stop (`Stop.None` for no stop). */
  stopRequested(slot: number): number {
    return Atomics.load(this.i32, slot * SLOT_I32 + S_STOP);
  }

  /** Segments waiting in the thread to start their next node. */
  setReady(count: number): void {
    Atomics.store(this.card.i32, T_READY, count);
  }

  /** Whether the main thread holds node tasks back for want of room on the threads. */
  wanted(): boolean {
    return Atomics.load(this.card.i32, T_WANTED) !== 0;
  }

  /** A node ran to its end; the thread's heap is now `heapUsed` bytes (when measured). */
  nodeRan(heapUsed: number | undefined): void {
    Atomics.add(this.card.i32, T_NODES_RUN, 1);
    if (heapUsed !== undefined) this.card.f64[T_HEAP_USED] = heapUsed;
  }

  /** Node `position` of the task in `slot` starts at `startedAt`: its clock runs from now. */
  nodeStarted(slot: number, position: number, startedAt: number): void {
    this.write(() => {
      Atomics.store(this.i32, slot * SLOT_I32 + S_NODE, position);
      this.f64[slot * SLOT_F64 + S_STARTED_AT] = startedAt;
      this.f64[slot * SLOT_F64 + S_BUSY_AT_START] = this.card.f64[T_BUSY_TOTAL]!;
      this.f64[slot * SLOT_F64 + S_OWN_SYNC] = 0;
    });
  }

  /** The synchronous code of the node running in `slot` (-2 for an orphan) takes the thread, at `since`. */
  hold(slot: number, since: number): void {
    this.write(() => {
      if (this.resting >= 0) this.account(this.resting, since - this.restingSince);
      this.card.f64[T_HOLDER_SINCE] = since;
      Atomics.store(this.card.i32, T_HOLDER, slot + 1);
    });
  }

  /**
   * The synchronous code that took the thread at `since` gives it back at `now`; it
   * counts as `slot`'s own (when `slot >= 0`) and as the thread's busy time. A node
   * whose ES module is loading (see {@link rest}) holds the thread again.
   */
  release(slot: number, since: number, now: number): void {
    this.write(() => {
      this.account(slot, now - since);
      if (this.resting >= 0) this.restingSince = now;
      this.card.f64[T_HOLDER_SINCE] = now;
      Atomics.store(this.card.i32, T_HOLDER, this.resting + 1);
    });
  }

  /**
   * `slot`'s module loads asynchronously (an ES module evaluates in a later job): from
   * `since` until {@link wake}, the thread is held in its name whenever no other code
   * holds it. One node at a time rests.
   */
  rest(slot: number, since: number): void {
    this.write(() => {
      if (this.resting >= 0) this.account(this.resting, since - this.restingSince);
      this.resting = slot;
      this.restingSince = since;
      this.card.f64[T_HOLDER_SINCE] = since;
      Atomics.store(this.card.i32, T_HOLDER, slot + 1);
    });
  }

  /** `slot`'s module has loaded (or failed to): it no longer holds the thread. */
  wake(slot: number, now: number): void {
    if (this.resting !== slot) return;
    this.write(() => {
      this.account(slot, now - this.restingSince);
      this.resting = -1;
      Atomics.store(this.card.i32, T_HOLDER, 0);
    });
  }

  /** `ms` of the thread's time, as `slot`'s own (when `slot >= 0`) and as busy time. */
  private account(slot: number, ms: number): void {
    this.card.f64[T_BUSY_TOTAL] = this.card.f64[T_BUSY_TOTAL]! + ms;
    if (slot + 1 === ORPHAN) this.card.f64[T_ORPHAN_TOTAL] = this.card.f64[T_ORPHAN_TOTAL]! + ms;
    else if (slot >= 0) this.f64[slot * SLOT_F64 + S_OWN_SYNC] = this.f64[slot * SLOT_F64 + S_OWN_SYNC]! + ms;
  }

  /** Node `position` of the task in `slot` ended: no node of it runs until the next starts. */
  nodeEnded(slot: number, position: number): void {
    Atomics.store(this.i32, slot * SLOT_I32 + S_NODE, -(position + 2));
  }

  /** The slot whose node code holds the thread, or -1. */
  holderSlot(): number {
    return Atomics.load(this.card.i32, T_HOLDER) - 1;
  }

  /** Whether a live node's code holds the thread now (not a node whose ES module rests). */
  heldByLiveCode(): boolean {
    const slot = this.holderSlot();
    return slot >= 0 && slot !== this.resting;
  }

  /** One consistent write, under the card's sequence lock. */
  private write(change: () => void): void {
    Atomics.add(this.card.i32, T_SEQ, 1);
    change();
    Atomics.add(this.card.i32, T_SEQ, 1);
  }
}
