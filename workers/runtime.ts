/**
 * The worker runtime: piscina loads this file in every worker thread and calls its
 * default export with one batch of segments at a time (many are in flight on a thread
 * at once).
 *
 * For each node of a segment, in order, it loads the node's module (`loader.ts`), runs
 * the node with a `ctx` (`context.ts`), and reports its output on the thread's control
 * port (`outbox.ts`). It writes on the shared board which node runs and when it started,
 * and on the thread card whose synchronous code holds the thread, so that the main
 * thread can enforce deadlines and tell a node that blocks the thread from the nodes it
 * starves. Loading a node's module is part of that node: its clock starts before the
 * load, and a CommonJS module's top-level code holds the thread in its name.
 *
 * Node starts happen in `drain()`, once per event-loop turn for everything that became
 * ready, and reports leave the thread before any node code runs: a node that then
 * blocks the thread forever cannot swallow its neighbours' results.
 */
import { MessageChannel, parentPort, receiveMessageOnPort, threadId, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { Stop, ThreadBoard } from '../src/shared/board';
import { uncrossable } from '../src/shared/crossing';
import type { NodeFunction } from '../src/shared/node';
import { HUNGRY, type BatchTask, type Ping, type Pong, type SegmentTask, type TaskNode, type WorkerConfig, type WorkerHello } from '../src/shared/protocol';
import type { SentSettlement } from '../src/shared/settlement';
import { serializeThrown } from '../src/shared/thrown';
import { transferListOf } from '../src/shared/transfer';
import { Context } from './context';
import { reportCrashes, scope } from './crash';
import { LoadError, loadMessage, loadNode, loadedFunction, useTsNode } from './loader';
import { Outbox } from './outbox';
import type { BatchState, SegmentRun } from './segment';
import { attributeTimers, runtimeTimers } from './node-timers';
import { Orphans } from './orphans';

const config = workerData as WorkerConfig;
const board = new ThreadBoard(config.board);
const clockOffset = performance.timeOrigin - config.mainTimeOrigin;
const now = (): number => performance.now() + clockOffset;
useTsNode(config.tsNodeRegister);
attributeTimers(board, now, new Orphans(board, now));

/** Longest stretch of node starts before the thread looks at its messages again. */
const SLICE_MS = 8;

// ---------------------------------------------------------------------------
// Control channel: made here, its far end handed to the main thread.

const { port1: control, port2: far } = new MessageChannel();
const hello: WorkerHello = { lukhasWorkerHello: true, threadId, port: far, card: board.card.buffer };
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

const outbox = new Outbox(control, config.progressIntervalMs, markSettled);

reportCrashes(control, () => {
  const holder = active.get(board.holderSlot());
  return holder === undefined ? undefined : { run: holder, position: holder.position };
});

// ---------------------------------------------------------------------------
// Segments in flight on this thread.

/** By slot. */
const active = new Map<number, SegmentRun>();
/** Segments whose next node may start, from `readyHead` on. */
const ready: SegmentRun[] = [];
let readyHead = 0;
let drainScheduled = false;

/**
 * Queues the segments of one batch. Resolves once each has ended (its end is then on
 * its way to the main thread on the control port) or was withdrawn; never rejects.
 */
export default function runBatch(batch: BatchTask): Promise<void> {
  return new Promise<void>((resolve) => {
    const state: BatchState = { pending: batch.tasks.length, resolve };
    if (batch.forget === true) segments.clear();
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
        position: task.first,
        input: task.input,
        startedAt: 0,
        clockFor: -1,
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
    board.setReady(ready.length - readyHead);
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
  if (!board.claim(run.task.slot, run.task.gen, threadId)) {
    markSettled(run);
    return false;
  }
  run.claimed = true;
  return true;
}

function enqueue(run: SegmentRun): void {
  ready.push(run);
  board.setReady(ready.length - readyHead);
  scheduleDrain();
}

function scheduleDrain(): void {
  if (drainScheduled) return;
  drainScheduled = true;
  runtimeTimers.setImmediate(drain);
}

function drain(): void {
  drainScheduled = false;
  let message;
  while ((message = receiveMessageOnPort(control)) !== undefined) onControl(message.message);
  outbox.flush();
  const sliceEnd = now() + SLICE_MS;
  while (readyHead < ready.length) {
    const run = ready[readyHead]!;
    ready[readyHead++] = undefined as unknown as SegmentRun;
    // The main thread reads how much waits here to spread CPU work over the threads.
    board.setReady(ready.length - readyHead);
    runNext(run);
    if (now() >= sliceEnd) break;
  }
  if (readyHead === ready.length) {
    ready.length = 0;
    readyHead = 0;
  } else {
    scheduleDrain();
  }
  outbox.flush();
  // Nothing left to start here, and the main thread holds tasks back: ask for them now
  // rather than with the next report, which may be a long node away.
  if (readyHead === ready.length && board.wanted()) control.postMessage([HUNGRY]);
}

function stopRequested(run: SegmentRun): number {
  return board.stopRequested(run.task.slot);
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

/** Takes the segment's next step: claim it, start its node's clock, load its module, run it. */
function runNext(run: SegmentRun): void {
  if (run.settled || !claim(run)) return;
  if (stopRequested(run) !== Stop.None) {
    settle(run, { kind: 'stopped', position: run.position });
    return;
  }
  // Reports leave before node code (a module's top level included) runs, so a node
  // that blocks cannot hold them back.
  outbox.flush();
  if (run.settled) return;
  const node = run.nodes[run.position]!;
  if (run.clockFor !== run.position) startClock(run);
  const fn = loadedFunction(node) ?? load(run, node);
  if (fn !== undefined) callNode(run, node, fn);
}

/** The node's time starts now, its module's loading included. */
function startClock(run: SegmentRun): void {
  const startedAt = now();
  run.startedAt = startedAt;
  run.clockFor = run.position;
  board.nodeStarted(run.task.slot, run.position, startedAt);
  if (run.task.reportStarts) outbox.push({ s: run.task.slot, g: run.task.gen, n: run.position, st: startedAt }, run);
}

/** Module loads whose loading node rests on the thread (see `ThreadBoard.rest`). */
const resting = new Set<Promise<NodeFunction>>();

/**
 * Loads the node's module: a CommonJS module's top-level code runs now, holding the
 * thread in the node's name. The segment goes on once the module has loaded.
 */
function load(run: SegmentRun, node: TaskNode): undefined {
  const { slot } = run.task;
  const since = now();
  board.hold(slot, since);
  let loading: Promise<NodeFunction>;
  try {
    loading = scope.run({ run, position: run.position }, loadNode, node);
  } finally {
    board.release(slot, since, now());
  }
  if (!resting.has(loading)) {
    // An ES module evaluates later, in a job of its own: it holds the thread in this
    // node's name until it has loaded.
    resting.add(loading);
    board.rest(slot, now());
    const wake = (): void => {
      resting.delete(loading);
      board.wake(slot, now());
    };
    loading.then(wake, wake);
  }
  loading.then(
    () => enqueue(run),
    (error: unknown) => {
      if (run.settled) return;
      settle(run, {
        kind: 'load-failed',
        position: run.position,
        message: error instanceof LoadError ? error.message : loadMessage(node, error),
        cause: inNodesName(run, () => serializeThrown(error instanceof LoadError ? error.cause : error)),
      });
    },
  );
  return undefined;
}

function callNode(run: SegmentRun, node: TaskNode, fn: NodeFunction): void {
  const { slot } = run.task;
  const { task } = run;
  const ctx = new Context(run, node.params, node.id, task.run.pipelineId, task.run.runId, task.attempts[run.position] ?? 1, task.element, node.trace, (pending) =>
    outbox.progressPending(pending),
  );
  run.ctx = ctx;
  const since = now();
  board.hold(slot, since);
  let result: unknown;
  let threw = false;
  try {
    result = scope.run({ run, position: run.position }, fn, run.input, ctx);
  } catch (error) {
    threw = true;
    result = error;
  }
  board.release(slot, since, now());

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
  nodeRan();
  // No longer running: the main thread stops its clock even before the report arrives.
  board.nodeEnded(run.task.slot, run.position);
  if (stopRequested(run) !== Stop.None) {
    settle(run, { kind: 'stopped', position: run.position });
    return;
  }
  const problem = inNodesName(run, () => uncrossable(output));
  if (problem !== undefined) {
    const error = new TypeError(`its output is ${problem}`);
    settle(run, { kind: 'unclonable', position: run.position, cause: serializeThrown(error) });
    return;
  }
  outbox.takeProgress(run);
  const last = run.position === run.nodes.length - 1;
  const moves = transferListOf(output);
  // A moved output goes on to the next node as it is; only the last one crosses to us.
  const sent = moves === undefined || last ? output : undefined;
  outbox.push(
    { s: run.task.slot, g: run.task.gen, n: run.position, o: sent, m: moves === undefined ? 0 : 1, t0: run.startedAt, t1: now() },
    run,
    last ? moves : undefined,
  );
  if (last) {
    settle(run, { kind: 'done' });
  } else {
    run.position++;
    run.input = output;
    enqueue(run);
  }
}

function nodeFailed(run: SegmentRun, error: unknown): void {
  if (run.settled) return;
  run.ctx = undefined;
  nodeRan();
  if (stopRequested(run) !== Stop.None) {
    settle(run, { kind: 'stopped', position: run.position });
    return;
  }
  settle(run, { kind: 'failed', position: run.position, error: inNodesName(run, () => serializeThrown(error)) });
}

/**
 * Runs the runtime's own work for a node (reading what it returned or threw: an error's
 * stack may take long to format, with source maps) as that node's time, not its
 * neighbours'.
 */
function inNodesName<T>(run: SegmentRun, work: () => T): T {
  const since = now();
  board.hold(run.task.slot, since);
  try {
    return work();
  } finally {
    board.release(run.task.slot, since, now());
  }
}

/** Ends a segment: its end goes out after its reports, with the next flush. */
function settle(run: SegmentRun, settlement: SentSettlement): void {
  if (!markSettled(run)) return;
  outbox.push({ s: run.task.slot, g: run.task.gen, end: settlement }, run);
  scheduleDrain();
}

function markSettled(run: SegmentRun): boolean {
  if (run.settled) return false;
  run.settled = true;
  run.ctx = undefined;
  // A withdrawn task's slot may already belong to a newer task of this thread.
  if (active.get(run.task.slot) === run) active.delete(run.task.slot);
  // The batch's piscina task settles once the flush has sent its segments' ends.
  if (--run.batch.pending === 0) outbox.batchFinished(run.batch);
  return true;
}

/** Counts a node that ran to its end, and the heap it leaves, for thread recycling. */
function nodeRan(): void {
  board.nodeRan(config.measureHeap ? getHeapStatistics().used_heap_size : undefined);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
