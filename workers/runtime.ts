/**
 * The worker runtime: piscina loads this file in every worker thread and calls its
 * default export with one {@link SegmentTask} at a time (many tasks are in flight on a
 * thread at once).
 *
 * For each node of a segment, in order, it loads the node's module, runs the node with
 * a {@link NodeContext}, and reports its output on the thread's control port. It
 * writes on the shared board which node runs and when it started, and on the thread
 * card whose synchronous code holds the thread, so that the main thread can enforce
 * deadlines and tell a node that blocks the thread from the nodes it starves.
 *
 * Node starts happen in `drain()`, once per event-loop turn for everything that became
 * ready, and reports leave the thread before any node code runs: a node that then
 * blocks the thread forever cannot swallow its neighbours' results.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { MessageChannel, parentPort, receiveMessageOnPort, threadId, workerData, type TransferListItem } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  CARD_BYTES,
  S_BUSY_AT_START,
  S_CLAIM,
  S_NODE,
  S_OWN_SYNC,
  S_STARTED_AT,
  S_STOP,
  S_THREAD,
  SLOT_F64,
  SLOT_I32,
  Stop,
  T_BUSY_TOTAL,
  T_CLAIMED,
  T_HOLDER,
  T_READY,
  T_HOLDER_SINCE,
  T_SEQ,
  ThreadCard,
} from '../src/board';
import {
  serializeThrown,
  type BatchTask,
  type ControlEntry,
  type CrashNote,
  type Ping,
  type Pong,
  type SegmentEnd,
  type SegmentOutcome,
  type SegmentTask,
  type TaskNode,
  type WorkerConfig,
  type WorkerHello,
} from '../src/protocol';
import type { NodeContext, NodeFunction } from '../src/node';
import { uncrossable } from '../src/crossing';
import { transferListOf } from '../src/transfer';

const config = workerData as WorkerConfig;
const slotI32 = new Int32Array(config.board.i32);
const slotF64 = new Float64Array(config.board.f64);
const card = new ThreadCard(new SharedArrayBuffer(CARD_BYTES));
const clockOffset = performance.timeOrigin - config.mainTimeOrigin;
const now = (): number => performance.now() + clockOffset;

/** Longest stretch of node starts before the thread looks at its messages again. */
const SLICE_MS = 8;

// ---------------------------------------------------------------------------
// Control channel: made here, its far end handed to the main thread.

const { port1: control, port2: far } = new MessageChannel();
const hello: WorkerHello = { lukhasWorkerHello: true, threadId, port: far, card: card.buffer };
parentPort?.postMessage(hello, [far]);
control.on('message', onControl);
control.unref();

/** A wake-up (look for stop requests) or a health check (answer at once). */
function onControl(message: unknown): void {
  if (typeof message === 'object' && message !== null && 'ping' in message) {
    const pong: Pong = { pong: (message as Ping).ping };
    control.postMessage([pong]);
    return;
  }
  checkStops();
}

// ---------------------------------------------------------------------------
// Crashes: a node that takes its thread down is named before the thread dies.

/** The node whose code runs, including callbacks and continuations it started. */
interface NodeScope {
  readonly run: SegmentRun;
  readonly index: number;
}
const scope = new AsyncLocalStorage<NodeScope>();
const exitThread = process.exit.bind(process);

function culprit(): NodeScope | undefined {
  const current = scope.getStore();
  if (current !== undefined) return current;
  const holder = active.get(Atomics.load(card.i32, T_HOLDER) - 1);
  return holder === undefined ? undefined : { run: holder, index: holder.index };
}

function crash(error: unknown, exitCode: number): never {
  const node = culprit();
  if (node !== undefined) {
    const note: CrashNote = {
      kind: 'crash',
      runId: node.run.task.runId,
      nodeId: node.run.nodes[node.index]?.id ?? '',
      error: error === undefined ? undefined : serializeThrown(error),
    };
    control.postMessage(note);
  }
  return exitThread(exitCode);
}

process.exit = ((code?: number | string | null) => crash(undefined, Number(code ?? process.exitCode ?? 0))) as typeof process.exit;
process.on('uncaughtException', (error) => crash(error, 1));
process.on('unhandledRejection', (reason) => crash(reason, 1));

// ---------------------------------------------------------------------------
// Segments in flight on this thread.

interface SegmentRun {
  readonly task: SegmentTask;
  readonly nodes: readonly TaskNode[];
  readonly batch: BatchState;
  /** Index of the node to run next, or running. */
  index: number;
  input: unknown;
  startedAt: number;
  /** The running node's context, to abort its signal. */
  ctx: Context | undefined;
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

/** A piscina task: settles when every segment it brought has ended. */
interface BatchState {
  pending: number;
  readonly resolve: () => void;
}

const active = new Map<number, SegmentRun>();
const ready: SegmentRun[] = [];
let readyHead = 0;
/** Reports and ends waiting to be sent, the segment each one is about, and what each moves. */
let outbox: Exclude<ControlEntry, Pong>[] = [];
let outboxRuns: SegmentRun[] = [];
let outboxMoves: (readonly TransferListItem[] | undefined)[] = [];
let moving = false;
let finishedBatches: BatchState[] = [];
let drainScheduled = false;

/**
 * Queues the segments of one batch. Resolves once each has ended (its end is then on
 * its way to the main thread on the control port) or was withdrawn; never rejects.
 */
export default function runBatch(batch: BatchTask): Promise<void> {
  return new Promise<void>((resolve) => {
    const state: BatchState = { pending: batch.tasks.length, resolve };
    for (const task of batch.tasks) {
      const nodes = nodesOf(task);
      if (nodes === undefined) {
        // A stale task sent to a thread that died, now here: it was sent again elsewhere.
        state.pending--;
        continue;
      }
      const run: SegmentRun = {
        task,
        nodes,
        batch: state,
        index: task.first,
        input: task.input,
        startedAt: 0,
        ctx: undefined,
        stopSeen: false,
        progressValue: undefined,
        progressPending: false,
        claimed: false,
        settled: false,
      };
      active.set(task.slot, run);
      ready.push(run);
    }
    Atomics.store(card.i32, T_READY, ready.length - readyHead);
    if (state.pending === 0) resolve();
    else scheduleDrain();
  });
}

/** Nodes of cached plans' segments, by segment id: the main thread sends them once. */
const segments = new Map<number, readonly TaskNode[]>();

function nodesOf(task: SegmentTask): readonly TaskNode[] | undefined {
  if (task.nodes !== undefined) {
    if (task.segment !== undefined) segments.set(task.segment, task.nodes);
    return task.nodes;
  }
  return segments.get(task.segment!);
}

/** Takes the task up, unless the main thread withdrew it; a withdrawn one is dropped silently. */
function claim(run: SegmentRun): boolean {
  if (run.claimed) return true;
  const { slot, gen } = run.task;
  if (Atomics.compareExchange(slotI32, slot * SLOT_I32 + S_CLAIM, gen, -gen) !== gen) {
    markSettled(run);
    return false;
  }
  run.claimed = true;
  Atomics.store(slotI32, slot * SLOT_I32 + S_THREAD, threadId);
  Atomics.add(card.i32, T_CLAIMED, 1);
  return true;
}

function enqueue(run: SegmentRun): void {
  ready.push(run);
  Atomics.store(card.i32, T_READY, ready.length - readyHead);
  scheduleDrain();
}

function scheduleDrain(): void {
  if (drainScheduled) return;
  drainScheduled = true;
  setImmediate(drain);
}

function drain(): void {
  drainScheduled = false;
  let message;
  while ((message = receiveMessageOnPort(control)) !== undefined) onControl(message.message);
  flush();
  const sliceEnd = now() + SLICE_MS;
  while (readyHead < ready.length) {
    const run = ready[readyHead]!;
    ready[readyHead++] = undefined as unknown as SegmentRun;
    // The main thread reads how much waits here to spread CPU work over the threads.
    Atomics.store(card.i32, T_READY, ready.length - readyHead);
    runNext(run);
    if (now() >= sliceEnd) break;
  }
  if (readyHead === ready.length) {
    ready.length = 0;
    readyHead = 0;
  } else {
    scheduleDrain();
  }
  flush();
}

function stopRequested(run: SegmentRun): number {
  return Atomics.load(slotI32, run.task.slot * SLOT_I32 + S_STOP);
}

/** Aborts the signal of every node whose task the main thread asked to stop. */
function checkStops(): void {
  for (const run of active.values()) {
    if (run.stopSeen || !run.claimed) continue;
    const code = stopRequested(run);
    if (code === Stop.None) continue;
    run.stopSeen = true;
    run.ctx?.abort(stopReason(code));
  }
}

function stopReason(code: number): DOMException {
  switch (code) {
    case Stop.NodeTimeout:
      return new DOMException('The node timed out', 'TimeoutError');
    case Stop.PipelineTimeout:
      return new DOMException('The pipeline timed out', 'TimeoutError');
    case Stop.Failure:
      return new DOMException('Another node of the run failed', 'AbortError');
    default:
      return new DOMException('The run was cancelled', 'AbortError');
  }
}

function runNext(run: SegmentRun): void {
  if (run.settled) return;
  if (run.claimed && stopRequested(run) !== Stop.None) {
    settle(run, { kind: 'stopped', node: run.index });
    return;
  }
  const node = run.nodes[run.index]!;
  const fn = loaded.get(moduleKey(node));
  if (fn === undefined) {
    loadNode(node).then(
      () => enqueue(run),
      (error: unknown) => {
        if (run.settled || !claim(run)) return;
        settle(run, {
          kind: 'load-failed',
          node: run.index,
          message: error instanceof LoadError ? error.message : loadMessage(node, error),
          error: serializeThrown(error instanceof LoadError ? error.cause : error),
        });
      },
    );
    return;
  }
  if (!run.claimed) {
    if (!claim(run)) return;
    if (stopRequested(run) !== Stop.None) {
      settle(run, { kind: 'stopped', node: run.index });
      return;
    }
  }
  // Reports leave before node code runs, so a node that blocks cannot hold them back.
  flush();
  if (run.settled) return;
  startNode(run, node, fn);
}

/** A node's `ctx`. Its signal is made on first use: most nodes never look at it. */
class Context implements NodeContext {
  private controller: AbortController | undefined;
  private reason: DOMException | undefined;

  constructor(
    private readonly run: SegmentRun,
    readonly params: unknown,
    readonly nodeId: string,
    readonly pipelineId: string,
    readonly runId: string,
    readonly attempt: number,
    readonly traceparent: string | undefined,
  ) {}

  get traceContext(): unknown {
    return this.traceparent === undefined ? undefined : traceContextOf(this.traceparent);
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.reason !== undefined) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  progress(value: unknown): void {
    const { run } = this;
    // A node that has ended reports nothing more.
    if (run.ctx !== this) return;
    run.progressValue = value;
    if (run.progressPending) return;
    run.progressPending = true;
    progressRuns.push(run);
    if (progressTimer === undefined) progressTimer = setTimeout(sendProgress, config.progressIntervalMs).unref();
  }

  abort(reason: DOMException): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

/**
 * An OpenTelemetry context whose active span is the node's span, built from its
 * traceparent with the API alone (the thread needs no propagator), loaded on first use.
 */
function traceContextOf(traceparent: string): unknown {
  const [, traceId, spanId, flags] = traceparent.split('-');
  const api = require('@opentelemetry/api') as typeof import('@opentelemetry/api');
  return api.trace.setSpanContext(api.ROOT_CONTEXT, {
    traceId: traceId!,
    spanId: spanId!,
    traceFlags: Number.parseInt(flags ?? '0', 16),
    isRemote: true,
  });
}

/** Segments with a progress value to send, and the timer that sends them. */
let progressRuns: SegmentRun[] = [];
let progressTimer: NodeJS.Timeout | undefined;

function sendProgress(): void {
  progressTimer = undefined;
  const runs = progressRuns;
  progressRuns = [];
  for (const run of runs) takeProgress(run);
  flush();
}

/** Puts a segment's latest progress value in the outbox. */
function takeProgress(run: SegmentRun): void {
  if (!run.progressPending) return;
  run.progressPending = false;
  const value = run.progressValue;
  run.progressValue = undefined;
  if (run.settled) return;
  outbox.push({ s: run.task.slot, g: run.task.gen, n: run.index, p: value });
  outboxRuns.push(run);
  outboxMoves.push(undefined);
}

function startNode(run: SegmentRun, node: TaskNode, fn: NodeFunction): void {
  const { slot } = run.task;
  const ctx = new Context(run, node.params, node.id, run.task.pipelineId, run.task.runId, run.task.attempts[run.index] ?? 1, node.trace);
  run.ctx = ctx;
  const startedAt = now();
  run.startedAt = startedAt;
  // Mark the node as running and as holding the thread, in one consistent write.
  Atomics.add(card.i32, T_SEQ, 1);
  Atomics.store(slotI32, slot * SLOT_I32 + S_NODE, run.index);
  slotF64[slot * SLOT_F64 + S_STARTED_AT] = startedAt;
  slotF64[slot * SLOT_F64 + S_BUSY_AT_START] = card.f64[T_BUSY_TOTAL]!;
  slotF64[slot * SLOT_F64 + S_OWN_SYNC] = 0;
  card.f64[T_HOLDER_SINCE] = startedAt;
  Atomics.store(card.i32, T_HOLDER, slot + 1);
  Atomics.add(card.i32, T_SEQ, 1);
  if (run.task.reportStarts) {
    outbox.push({ s: slot, g: run.task.gen, n: run.index, st: startedAt });
    outboxRuns.push(run);
    outboxMoves.push(undefined);
  }

  let result: unknown;
  let threw = false;
  try {
    result = scope.run({ run, index: run.index }, fn, run.input, ctx);
  } catch (error) {
    threw = true;
    result = error;
  }

  const held = now() - startedAt;
  Atomics.add(card.i32, T_SEQ, 1);
  card.f64[T_BUSY_TOTAL] = card.f64[T_BUSY_TOTAL]! + held;
  slotF64[slot * SLOT_F64 + S_OWN_SYNC] = held;
  Atomics.store(card.i32, T_HOLDER, 0);
  Atomics.add(card.i32, T_SEQ, 1);

  if (run.stopSeen === false && stopRequested(run) !== Stop.None) {
    run.stopSeen = true;
    ctx.abort(stopReason(stopRequested(run)));
  }
  if (threw) {
    nodeFailed(run, result);
  } else if (isThenable(result)) {
    Promise.resolve(result).then(
      (value) => nodeDone(run, value),
      (error: unknown) => nodeFailed(run, error),
    );
  } else {
    nodeDone(run, result);
  }
}

function nodeDone(run: SegmentRun, output: unknown): void {
  if (run.settled) return;
  run.ctx = undefined;
  // No longer running: the main thread stops its clock even before the report arrives.
  Atomics.store(slotI32, run.task.slot * SLOT_I32 + S_NODE, -(run.index + 2));
  if (stopRequested(run) !== Stop.None) {
    settle(run, { kind: 'stopped', node: run.index });
    return;
  }
  const problem = uncrossable(output);
  if (problem !== undefined) {
    const error = new TypeError(`its output is ${problem}`);
    settle(run, { kind: 'unclonable', node: run.index, error: serializeThrown(error) });
    return;
  }
  takeProgress(run);
  const last = run.index === run.nodes.length - 1;
  const moves = transferListOf(output);
  // A moved output goes on to the next node as it is; only the last one crosses to us.
  const sent = moves === undefined || last ? output : undefined;
  outbox.push({ s: run.task.slot, g: run.task.gen, n: run.index, o: sent, m: moves === undefined ? 0 : 1, t0: run.startedAt, t1: now() });
  outboxRuns.push(run);
  outboxMoves.push(last ? moves : undefined);
  if (moves !== undefined && last) moving = true;
  if (last) {
    settle(run, { kind: 'done' });
  } else {
    run.index++;
    run.input = output;
    enqueue(run);
  }
}

function nodeFailed(run: SegmentRun, error: unknown): void {
  if (run.settled) return;
  run.ctx = undefined;
  if (stopRequested(run) !== Stop.None) {
    settle(run, { kind: 'stopped', node: run.index });
    return;
  }
  settle(run, { kind: 'failed', node: run.index, error: serializeThrown(error) });
}

/** Ends a segment: its end goes out after its reports, with the next flush. */
function settle(run: SegmentRun, outcome: SegmentOutcome): void {
  if (!markSettled(run)) return;
  outbox.push({ s: run.task.slot, g: run.task.gen, end: outcome });
  outboxRuns.push(run);
  outboxMoves.push(undefined);
  scheduleDrain();
}

function markSettled(run: SegmentRun): boolean {
  if (run.settled) return false;
  run.settled = true;
  run.ctx = undefined;
  // A withdrawn task's slot may already belong to a newer task of this thread.
  if (active.get(run.task.slot) === run) active.delete(run.task.slot);
  // The batch's piscina task settles once the flush has sent its segments' ends.
  if (--run.batch.pending === 0) finishedBatches.push(run.batch);
  return true;
}

/** Sends the reports and ends waiting in the outbox, in order, in one message. */
function flush(): void {
  if (outbox.length > 0) send();
  if (finishedBatches.length > 0) {
    const finished = finishedBatches;
    finishedBatches = [];
    for (const batch of finished) batch.resolve();
  }
}

function send(): void {
  const batch = outbox;
  const runs = outboxRuns;
  const moves = outboxMoves;
  outbox = [];
  outboxRuns = [];
  outboxMoves = [];
  try {
    if (!moving) {
      control.postMessage(batch);
      return;
    }
    moving = false;
    const transferList = new Set<TransferListItem>();
    for (const list of moves) if (list !== undefined) for (const item of list) transferList.add(item);
    control.postMessage(batch, [...transferList]);
    return;
  } catch {
    // Something cannot be cloned (or moved): send one by one, and end the segments at fault.
  }
  const failed = new Set<SegmentRun>();
  batch.forEach((entry, i) => {
    const run = runs[i]!;
    if (failed.has(run)) return;
    try {
      control.postMessage([entry], moves[i] === undefined ? undefined : [...moves[i]!]);
    } catch (error) {
      if ('p' in entry) {
        process.emitWarning(`Progress of node "${run.nodes[entry.n]?.id}" cannot be sent between threads and was dropped`);
        return;
      }
      failed.add(run);
      markSettled(run);
      const node = 'n' in entry ? entry.n : run.index;
      const end: SegmentEnd = { s: entry.s, g: entry.g, end: { kind: 'unclonable', node, error: serializeThrown(error) } };
      control.postMessage([end]);
    }
  });
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

// ---------------------------------------------------------------------------
// Loading node modules.

const loaded = new Map<string, NodeFunction>();
const loading = new Map<string, Promise<NodeFunction>>();

class LoadError extends Error {}

function moduleKey(node: TaskNode): string {
  return `${node.module}#${node.export ?? ''}`;
}

function loadNode(node: TaskNode): Promise<NodeFunction> {
  const key = moduleKey(node);
  let promise = loading.get(key);
  if (promise === undefined) {
    promise = importNode(node).then(
      (fn) => {
        loaded.set(key, fn);
        loading.delete(key);
        return fn;
      },
      (error: unknown) => {
        loading.delete(key);
        throw error;
      },
    );
    loading.set(key, promise);
  }
  return promise;
}

let tsNodeRegistered = false;

async function importNode(node: TaskNode): Promise<NodeFunction> {
  const path = node.module.startsWith('file:') ? fileURLToPath(node.module) : node.module;
  if (!tsNodeRegistered && config.tsNodeRegister !== undefined && /\.c?ts$/.test(path)) {
    tsNodeRegistered = true;
    require(config.tsNodeRegister);
  }
  let namespace: unknown;
  if (path.endsWith('.mjs') || path.endsWith('.mts')) {
    namespace = await import(pathToFileURL(path).href);
  } else {
    try {
      namespace = require(path);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code !== 'ERR_REQUIRE_ESM' && code !== 'ERR_REQUIRE_ASYNC_MODULE') throw error;
      namespace = await import(pathToFileURL(path).href);
    }
  }
  const fn = pickExport(namespace, node.export);
  if (typeof fn !== 'function') {
    const name = node.export === undefined ? 'a default export' : `an export "${node.export}"`;
    const keys = namespace !== null && typeof namespace === 'object' ? Object.keys(namespace) : [];
    const got =
      fn !== undefined ? `it is ${fn === null ? 'null' : typeof fn}` : `it exports ${keys.length === 0 ? 'nothing' : keys.join(', ')}`;
    throw new LoadError(`Module of node "${node.id}" (${path}) does not have ${name} that is a function: ${got}`);
  }
  return fn as NodeFunction;
}

function pickExport(namespace: unknown, name: string | undefined): unknown {
  if (namespace === null || namespace === undefined) return undefined;
  const exports = namespace as Record<string, unknown>;
  if (name !== undefined) return exports[name];
  if (typeof namespace === 'function') return namespace;
  const fallback = exports.default;
  // A CommonJS module compiled from `export default` (exports.default) seen through import().
  if (fallback !== null && typeof fallback === 'object' && typeof (fallback as Record<string, unknown>).default === 'function') {
    return (fallback as Record<string, unknown>).default;
  }
  return fallback;
}

function loadMessage(node: TaskNode, error: unknown): string {
  const reason = error instanceof Error ? error.message : String(error);
  return `Module of node "${node.id}" (${node.module}) failed to load: ${reason}`;
}
