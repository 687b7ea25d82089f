/**
 * The scheduler of one run: dispatches each segment when its dependencies are met,
 * feeds outputs forward, retries failed nodes, and ends the run exactly once.
 *
 * A run ends in one of these ways:
 * - every segment completed: it resolves with the sink output (or `{ [sinkId]: output }`);
 * - a failure stops it (the caller's abort, the pipeline timeout, or, with `failFast`,
 *   a node that failed for good): every segment in flight is asked to stop (two-phase:
 *   signal, then thread termination after `cleanupGraceMs`) and the run rejects once
 *   they have all stopped, so no node of it is still running when the caller hears;
 * - without `failFast`, a node that failed for good ends its branch only; the run
 *   rejects with a `PipelineFailedException` once nothing else can run.
 *
 * Node timeouts are enforced in `deadlines.ts`; this file decides what follows one.
 */
import { Stop, type StopCode } from '../shared/board';
import { runCleanups, type CleanupHandler } from './cleanup';
import type { ResolvedTimeouts } from '../options';
import { NodeDeadlineWatch, type PipelineDeadlineEntry, type PipelineDeadlines } from './deadlines';
import { MapTicket, type MapListener } from './map';
import type { Dispatcher, SegmentJob, SegmentTicket, Settlement } from '../pool/dispatcher';
import { segmentError, type Failing } from './failures';
import {
  CancellationException,
  NodeTimeoutException,
  PipelineFailedException,
  PipelineTimeoutException,
  WorkerCrashedException,
  type PartialResults,
} from '../errors';
import type { ProgressEvent } from '../plan/definition';
import type { Plan, Segment } from '../plan/plan';
import { attemptsOf, type RunRef, type TaskNode } from '../shared/protocol';
import { backoffMs, shouldRetry, type FailureKind } from '../plan/retry';
import { unwatchSignal, watchSignal } from './signals';
import type { Status } from '../observe/stats';
import { RunTrace } from '../observe/tracing';
import { describe } from '../shared/thrown';
import { timerDelay } from '../shared/delay';
import { transfer, transferListOf, untransfer } from '../shared/transfer';
import { NO_KEY } from '../pool/fair-queue';

export type { CleanupHandler } from './cleanup';


/** A node's output before it has one (an output may be undefined). */
const NO_OUTPUT: unique symbol = Symbol('no output');

/** Ids of cached plans' segments, for the threads to keep their nodes under. */
let nextSegmentId = 1;

/** What a run tells its executor: its course, for stats, metrics and events. */
export interface RunHooks {
  /** The run may start its nodes; `waitedMs` it waited for admission. */
  admitted(run: PipelineRun, waitedMs: number): void;
  /** Whether to learn of node starts as they happen (someone listens). */
  wantsStarts(): boolean;
  nodeStarted(run: PipelineRun, nodeId: string, attempt: number, startedAt: number): void;
  /** A node attempt ended; `startedAt` is undefined for one stopped before it started. */
  nodeEnded(run: PipelineRun, nodeId: string, status: Status, startedAt: number | undefined, endedAt: number, error: unknown): void;
  /** The run settled (after its cleanup handlers ran). */
  ended(run: PipelineRun, status: Status, error: unknown, durationMs: number): void;
  cleanupFailed(error: unknown, run: PipelineRun): void;
  progress(event: ProgressEvent): void;
}

export interface RunSpec {
  readonly runId: string;
  readonly plan: Plan;
  /** `params` of each node, by index. */
  readonly params: readonly unknown[];
  readonly input: unknown;
  readonly timeouts: ResolvedTimeouts;
  readonly signal: AbortSignal | undefined;
  readonly failFast: boolean;
  readonly onProgress: ((event: ProgressEvent) => void) | undefined;
  /** Its place among waiting runs and node tasks (see `run/admission.ts`, `pool/fair-queue.ts`). */
  readonly priority: number;
  readonly concurrencyKey: string | undefined;
  readonly dispatcher: Dispatcher;
  readonly hooks: RunHooks;
  /** The executor's watch of pipeline timeouts. */
  readonly deadlines: PipelineDeadlines;
}

/**
 * A segment in flight, from node `first` on: the job the dispatcher was given, the
 * listener of its ticket (a map node's too) and the watch of its nodes' deadlines. One
 * object per segment, where a job, a watch and a listener of closures would be seven:
 * this is held per run in flight, and made per segment. What the job says of the run
 * (its ids, priority, deadline) is read from the run.
 */
class Flight extends NodeDeadlineWatch implements SegmentJob, MapListener {
  ticket!: SegmentTicket;
  /** Set when the run stops this flight alone (a timeout to retry, a failure without failFast). */
  stopping: { readonly position: number; readonly error: unknown; readonly kind: FailureKind; readonly retry: boolean } | undefined = undefined;
  /** How its running node ends when the whole run stops it. */
  stopStatus: Status = 'cancelled';
  /** The last node (position in the segment) whose start was reported: they start in order. */
  startedUpTo = -1;

  constructor(
    private readonly owner: PipelineRun,
    readonly segment: Segment,
    readonly first: number,
    readonly nodes: readonly TaskNode[],
    readonly segmentId: number | undefined,
    readonly attempts: readonly number[],
    readonly input: unknown,
    readonly timeouts: readonly number[],
    readonly reportStarts: boolean,
  ) {
    super();
  }

  // The job, as the run has it.

  get run(): RunRef {
    return this.owner.ref;
  }

  get graceMs(): number {
    return this.owner.graceMs;
  }

  get deadline(): number {
    return this.owner.deadline;
  }

  get priority(): number {
    return this.owner.priority;
  }

  get concurrencyKey(): string | undefined {
    return this.owner.concurrencyKey;
  }

  get listener(): this {
    return this;
  }

  // The listener.

  nodeStarted(position: number, startedAt: number): void {
    this.owner.nodeStarted(this, position, startedAt);
  }

  nodeCompleted(position: number, output: unknown, startedAt: number, endedAt: number, moved: boolean): void {
    this.owner.nodeCompleted(this, position, output, startedAt, endedAt, moved);
  }

  progress(position: number, value: unknown, element?: number): void {
    this.owner.progress(this.segment.nodes[position]!, value, element);
  }

  settled(settlement: Settlement, startedAt: number | undefined): void {
    this.owner.segmentSettled(this, settlement, startedAt);
  }

  override overdue(position: number): void {
    this.owner.nodeOverdue(this, position);
  }

  /** A map node's element failed for good, with failFast. */
  elementFailed(error: unknown, kind: FailureKind): void {
    this.owner.elementFailed(this, error, kind);
  }
}

export class PipelineRun implements PipelineDeadlineEntry {
  readonly promise: Promise<unknown>;
  readonly runId: string;
  private resolvePromise!: (value: unknown) => void;
  private rejectPromise!: (error: unknown) => void;
  // What a run holds while in flight is kept small: many thousands can be. It keeps what
  // it needs of its spec, not the spec; the lists and collections most runs never need
  // are made when first needed.
  private readonly plan: Plan;
  private readonly params: readonly unknown[];
  private readonly input: unknown;
  private readonly timeouts: ResolvedTimeouts;
  private readonly signal: AbortSignal | undefined;
  private readonly failFast: boolean;
  private readonly onProgress: ((event: ProgressEvent) => void) | undefined;
  readonly priority: number;
  readonly concurrencyKey: string | undefined;
  private readonly dispatcher: Dispatcher;
  private readonly hooks: RunHooks;
  private readonly deadlines: PipelineDeadlines;
  /** Its place among the runs of its pipeline timeout (see `deadlines.ts`). */
  deadlinePrev: PipelineDeadlineEntry | undefined = undefined;
  deadlineNext: PipelineDeadlineEntry | undefined = undefined;
  /** Its ids as every segment of it carries them, made when its first segment is. */
  private runRef: RunRef | undefined;

  /** Each node's output, `NO_OUTPUT` until it completed. */
  private readonly outputs: unknown[];
  /** Outputs moved on to the next thread (`transfer()`): the main thread holds no copy. */
  private movedOn: Set<number> | undefined;
  /** Completed nodes and when, in arrival order: node index, end time, node index, ... */
  private completed: number[] | undefined;
  /** Attempt number of each node, once one is retried (1 for all before). */
  private attempts: number[] | undefined;
  /** Dependencies each segment still waits for, once one has completed. */
  private waitingOn: number[] | undefined;
  /** Segments in flight, by segment index, and how many. */
  private readonly inFlight: (Flight | undefined)[];
  private flying = 0;
  /** Made when first needed, as are `movedOn`, `failures` and `cleanups`: most runs never need them. */
  private retryTimers: Set<NodeJS.Timeout> | undefined;
  private segmentsLeft: number;
  /** Nodes that failed for good, without failFast: their errors, in order. */
  private failures: Map<number, unknown> | undefined;

  private admitted = false;
  /** The error the whole run fails with, once decided. */
  private failure: (() => unknown) | undefined;
  /** Cleanup handlers run: the run was cancelled or timed out. */
  private cleanupDue = false;
  private cleanups: CleanupHandler[] | undefined;
  /** When the run began to fail: nodes completed after this do not count as completed. */
  private failedAt: number | undefined;
  private settled = false;
  /** When it started, on the dispatcher's clock. */
  readonly startedAt: number;
  private readonly trace: RunTrace | undefined;

  constructor(spec: RunSpec) {
    this.runId = spec.runId;
    this.plan = spec.plan;
    this.params = spec.params;
    this.input = spec.input;
    this.timeouts = spec.timeouts;
    this.signal = spec.signal;
    this.failFast = spec.failFast;
    this.onProgress = spec.onProgress;
    this.priority = spec.priority;
    this.concurrencyKey = spec.concurrencyKey;
    this.dispatcher = spec.dispatcher;
    this.hooks = spec.hooks;
    this.deadlines = spec.deadlines;
    this.promise = new Promise((resolve, reject) => {
      this.resolvePromise = resolve;
      this.rejectPromise = reject;
    });
    const count = this.plan.nodes.length;
    this.outputs = new Array<unknown>(count).fill(NO_OUTPUT);
    // Sized, not grown: an empty array grows to 17 places on its first write.
    this.inFlight = new Array<Flight | undefined>(this.plan.segments.length);
    this.segmentsLeft = this.plan.segments.length;
    this.startedAt = this.dispatcher.now();
    this.trace = RunTrace.start(this.runId, this.plan.pipelineId, count);
  }

  get pipelineId(): string {
    return this.plan.pipelineId;
  }

  /** Its `concurrencyKey`, or `NO_KEY`. */
  get key(): string {
    return this.concurrencyKey ?? NO_KEY;
  }

  /** Its ids, as its segments carry them (one object per run). */
  get ref(): RunRef {
    return (this.runRef ??= { runId: this.runId, pipelineId: this.plan.pipelineId });
  }

  get graceMs(): number {
    return this.timeouts.cleanupGraceMs;
  }

  /** Its deadline on the wall clock (ms since the epoch): the pipeline timeout; Infinity without one. */
  get deadline(): number {
    const { pipelineTimeoutMs } = this.timeouts;
    return pipelineTimeoutMs === Infinity ? Infinity : Date.now() + pipelineTimeoutMs - (this.dispatcher.now() - this.startedAt);
  }

  /** The run has not settled yet. */
  get active(): boolean {
    return !this.settled;
  }

  /** Whether its nodes may start (it is not waiting for admission). */
  get running(): boolean {
    return this.admitted && !this.settled;
  }

  /**
   * Starts the run's clock and watches its signal. It may then wait for admission;
   * the pipeline timeout counts the wait.
   */
  start(): void {
    const { signal } = this;
    if (signal?.aborted) {
      this.fail(() => this.cancellation(signal.reason), Stop.Cancel);
      return;
    }
    if (signal !== undefined) watchSignal(signal, this);
    const { pipelineTimeoutMs } = this.timeouts;
    if (pipelineTimeoutMs !== Infinity) this.deadlines.add(this, pipelineTimeoutMs);
  }

  /** Lets the run's nodes start. */
  admit(): void {
    if (this.settled || this.admitted) return;
    this.admitted = true;
    this.hooks.admitted(this, this.dispatcher.now() - this.startedAt);
    // An input moved to several roots would reach only the first: copy it instead.
    if (this.plan.roots.length > 1) untransfer(this.input);
    for (const segment of this.plan.roots) this.dispatch(this.plan.segments[segment]!, 0);
  }

  /** Cancels the run, as an abort of its signal would. */
  cancel(reason: unknown): void {
    this.fail(() => this.cancellation(reason), Stop.Cancel);
  }

  /** A node of this run took its thread down (perhaps after its own segment completed). */
  crashed(nodeId: string, exitCode: number | undefined, cause: unknown, element?: number): void {
    if (this.settled || this.failure !== undefined) return;
    const index = this.plan.nodes.findIndex((node) => node.id === nodeId);
    const error = new WorkerCrashedException({ nodeId, pipelineId: this.pipelineId, runId: this.runId, exitCode, cause });
    const flight = this.flightRunning(index);
    // An element of a map node: it alone stops, then is retried or fails.
    if (flight?.ticket instanceof MapTicket && element !== undefined) return flight.ticket.crashed(element, exitCode, cause);
    if (flight !== undefined) {
      const node = flight.segment.nodes.indexOf(index);
      this.stopAlone(flight, node, error, 'crash', Stop.Failure);
      return;
    }
    // Its segment had completed: no attempt to make again.
    if (this.failFast) this.fail(() => error, Stop.Failure);
    else (this.failures ??= new Map()).set(index, error);
  }

  /** Adds a handler to run, in order, if the run is cancelled or times out. */
  onCleanup(handler: CleanupHandler): void {
    if (typeof handler !== 'function') throw new TypeError(`Expected a cleanup handler function, got ${typeof handler}`);
    (this.cleanups ??= []).push(handler);
  }

  // -------------------------------------------------------------------------
  // Dispatching.

  /** Called by the pipeline deadlines (see `deadlines.ts`). */
  pipelineLeftMs(): number {
    return this.timeouts.pipelineTimeoutMs - (this.dispatcher.now() - this.startedAt);
  }

  /** Called by the pipeline deadlines: the run's pipeline timeout passed. */
  pipelineTimedOut(): void {
    this.fail(() => this.pipelineTimeout(), Stop.PipelineTimeout);
  }

  /** Sends a segment, from its node `first` on. */
  private dispatch(segment: Segment, first: number): void {
    const { plan, trace } = this;
    const { params } = this;
    const indexes = segment.nodes;
    // Filled in by the segment's first dispatch, and changed in place: it is shared by
    // every run of the plan, and this runs per segment.
    const cache = (segment.cache ??= { tasks: undefined, id: undefined, timeouts: undefined, timeoutsFor: NaN });
    let nodes: readonly TaskNode[];
    let segmentId: number | undefined;
    if (trace === undefined && cache.tasks !== undefined && noneOf(params, indexes)) {
      nodes = cache.tasks;
      segmentId = cache.id;
    } else {
      nodes = indexes.map((index, position) => {
        const node = plan.nodes[index]!;
        const task: TaskNode = { id: node.id, module: node.module, export: node.exportName, params: params[index] };
        if (trace === undefined || position < first) return task;
        return { ...task, trace: trace.nodeSent(index, node.id, this.attemptOf(index), this.runId, plan.pipelineId) };
      });
      // Without params or tracing, every run of this plan sends the same nodes.
      if (trace === undefined && noneOf(params, indexes)) {
        cache.tasks = nodes;
        cache.id = nextSegmentId++;
      }
    }
    // Every run of this plan with the same node timeout watches the same timeouts.
    const { nodeTimeoutMs } = this.timeouts;
    let timeouts = cache.timeouts;
    if (timeouts === undefined || cache.timeoutsFor !== nodeTimeoutMs) {
      timeouts = cache.timeouts = indexes.map((index) => plan.nodes[index]!.timeoutMs ?? nodeTimeoutMs);
      cache.timeoutsFor = nodeTimeoutMs;
    }
    let attempts = attemptsOf(indexes.length);
    for (let i = 0; i < indexes.length; i++) {
      if (this.attemptOf(indexes[i]!) !== 1) {
        attempts = indexes.map((index) => this.attemptOf(index));
        break;
      }
    }
    const input = first === 0 ? this.inputOf(segment) : this.outputs[segment.nodes[first - 1]!];
    const flight = new Flight(this, segment, first, nodes, segmentId, attempts, input, timeouts, trace !== undefined || this.hooks.wantsStarts());
    const map = plan.nodes[segment.nodes[0]!]!.map;
    // Its deadlines are watched as the dispatcher allows (see `submittedTo`); a map node's
    // are its elements'.
    if (map === undefined) {
      flight.submittedTo(this.dispatcher);
      flight.ticket = this.dispatcher.submit(flight);
    } else {
      flight.ticket = new MapTicket({ job: flight, plan: map, failFast: this.failFast, node: this.failing(segment.nodes[0]!), dispatcher: this.dispatcher, listener: flight });
    }
    if (this.inFlight[segment.index] === undefined) this.flying++;
    this.inFlight[segment.index] = flight;
  }

  /** Called by its flights (see `Flight`): a map node's element failed for good, with failFast; the run stops. */
  elementFailed(flight: Flight, error: unknown, kind: FailureKind): void {
    this.fail(() => error, Stop.Failure, flight.segment.index, kind === 'timeout' ? Stop.NodeTimeout : undefined);
  }

  /** `initialInput` for a root, the output of a single dependency, or `{ [depId]: output }`. */
  private inputOf(segment: Segment): unknown {
    if (segment.deps.length === 0) return this.input;
    if (segment.deps.length === 1) {
      const dep = segment.deps[0]!;
      // An output moved to us moves on to its only consumer, unless the caller may want it.
      if (transferListOf(this.outputs[dep]) !== undefined) (this.movedOn ??= new Set()).add(dep);
      return this.outputs[dep];
    }
    // Without a prototype: it is only sent (copied, and given one, on the other side),
    // and assigning a node id such as `__proto__` cannot change it. Each DAG's keys differ,
    // so a plain object would make V8 build a new shape per set of ids.
    const input = Object.create(null) as Record<string, unknown>;
    for (const dep of segment.deps) input[this.plan.nodes[dep]!.id] = this.outputs[dep];
    return input;
  }

  /** Called by its flights (see `Flight`). */
  nodeStarted(flight: Flight, position: number, startedAt: number): void {
    const index = flight.segment.nodes[position]!;
    if (this.settled || position <= flight.startedUpTo) return;
    flight.startedUpTo = position;
    this.trace?.nodeStarted(index, startedAt);
    this.hooks.nodeStarted(this, this.plan.nodes[index]!.id, this.attemptOf(index), startedAt);
  }

  /** A node attempt ended, however it did: stats, metrics, events, its span. */
  private nodeEnded(flight: Flight, position: number, status: Status, startedAt: number | undefined, error: unknown): void {
    const index = flight.segment.nodes[position]!;
    const endedAt = this.dispatcher.now();
    if (startedAt !== undefined) this.nodeStarted(flight, position, startedAt);
    this.trace?.nodeEnded(index, status, error, endedAt);
    this.hooks.nodeEnded(this, this.plan.nodes[index]!.id, status, startedAt, endedAt, error);
  }

  /** Called by its flights (see `Flight`). */
  nodeCompleted(flight: Flight, position: number, output: unknown, startedAt: number, endedAt: number, moved: boolean): void {
    const { segment } = flight;
    const index = segment.nodes[position]!;
    if (this.settled || this.outputs[index] !== NO_OUTPUT) return;
    this.outputs[index] = output;
    (this.completed ??= []).push(index, endedAt);
    this.nodeStarted(flight, position, startedAt);
    this.trace?.nodeEnded(index, 'success', undefined, endedAt);
    this.hooks.nodeEnded(this, this.plan.nodes[index]!.id, 'success', startedAt, endedAt, undefined);
    if (moved) {
      const node = this.plan.nodes[index]!;
      // Moved on inside the thread, or moved to us: keep moving it only to a sole consumer.
      if (position < segment.nodes.length - 1) (this.movedOn ??= new Set()).add(index);
      else if (node.dependents.length === 1 && this.plan.segments[this.plan.nodes[node.dependents[0]!]!.segment]!.deps.length === 1) {
        try {
          transfer(output);
        } catch {
          // Moved with an explicit list we cannot see: it will be copied on.
        }
      }
    }
  }

  /** Called by its flights (see `Flight`). */
  progress(index: number, value: unknown, element: number | undefined): void {
    if (this.settled) return;
    const nodeId = this.plan.nodes[index]!.id;
    const event: ProgressEvent = element === undefined ? { runId: this.runId, pipelineId: this.pipelineId, nodeId, value } : { runId: this.runId, pipelineId: this.pipelineId, nodeId, index: element, value };
    try {
      this.onProgress?.(event);
    } catch (error) {
      process.emitWarning(`onProgress of run ${this.runId} threw: ${describe(error)}`, { type: 'ProgressWarning' });
    }
    this.hooks.progress(event);
  }

  private attemptOf(index: number): number {
    return this.attempts === undefined ? 1 : this.attempts[index]!;
  }

  // -------------------------------------------------------------------------
  // Segments ending.

  /** Called by its flights (see `Flight`). */
  segmentSettled(flight: Flight, settlement: Settlement, startedAt: number | undefined): void {
    const { segment } = flight;
    flight.clearDeadlines();
    if (this.inFlight[segment.index] === flight) {
      this.inFlight[segment.index] = undefined;
      this.flying--;
    }
    if (this.failure !== undefined) {
      // The run stopped it: its running node ends as the run decided.
      if (settlement.kind !== 'done' && 'position' in settlement && startedAt !== undefined) {
        const failed = settlement.kind === 'failed' ? 'error' : flight.stopStatus;
        this.nodeEnded(flight, settlement.position, failed, startedAt, settlement.kind === 'failed' ? settlement.error : undefined);
      }
      if (this.flying === 0) this.finish();
      return;
    }
    if (flight.stopping !== undefined) {
      // Stopped alone, as the run asked: what follows was decided then.
      const { position, error, kind, retry } = flight.stopping;
      this.nodeEnded(flight, position, statusOf(kind), startedAt, error);
      return this.nodeFailed(flight, position, error, kind, retry);
    }
    if (settlement.kind === 'done') {
      this.segmentsLeft--;
      for (const dependent of segment.dependents) {
        this.waitingOn ??= this.plan.segments.map((waiting) => waiting.deps.length);
        if (--this.waitingOn[dependent]! === 0) this.dispatch(this.plan.segments[dependent]!, 0);
      }
      return this.maybeFinish();
    }
    const position = 'position' in settlement ? settlement.position : flight.first;
    const [error, kind] = segmentError(this.failing(segment.nodes[position] ?? segment.nodes[0]!), settlement);
    this.nodeEnded(flight, position, statusOf(kind), startedAt, error);
    this.nodeFailed(flight, position, error, kind);
  }

  /** Called by its flights (see `Flight`). */
  nodeOverdue(flight: Flight, position: number): void {
    const planned = this.plan.nodes[flight.segment.nodes[position]!]!;
    const timeoutMs = planned.timeoutMs ?? this.timeouts.nodeTimeoutMs;
    const error = new NodeTimeoutException({ nodeId: planned.id, pipelineId: this.pipelineId, runId: this.runId, timeoutMs });
    this.stopAlone(flight, position, error, 'timeout', Stop.NodeTimeout);
  }

  /**
   * The node at `position` failed while its segment still runs (a timeout, a crash): stop
   * the segment alone when the node will be retried or the run goes on without failFast;
   * else the whole run fails.
   */
  private stopAlone(flight: Flight, position: number, error: unknown, kind: FailureKind, code: StopCode): void {
    const index = flight.segment.nodes[position]!;
    const retry = shouldRetry(this.plan.nodes[index]!.retry, kind, error, this.attemptOf(index));
    if (!retry && this.failFast) {
      this.fail(() => error, Stop.Failure, flight.segment.index, code);
      return;
    }
    flight.stopping = { position, error, kind, retry };
    flight.clearDeadlines();
    flight.ticket.stop(code, this.timeouts.cleanupGraceMs);
  }

  /**
   * The node at `position` in the flight failed for this attempt: retry it, or fail its
   * branch or the run. `retry` is the decision already taken when the flight was stopped
   * alone.
   */
  private nodeFailed(flight: Flight, position: number, error: unknown, kind: FailureKind, retry?: boolean): void {
    const index = flight.segment.nodes[position]!;
    const attempt = this.attemptOf(index);
    if (retry ?? shouldRetry(this.plan.nodes[index]!.retry, kind, error, attempt)) {
      (this.attempts ??= new Array<number>(this.plan.nodes.length).fill(1))[index] = attempt + 1;
      // Resume at the node, or earlier when the main thread holds no copy of its input.
      let from = position;
      while (from > 0 && this.movedOn?.has(flight.segment.nodes[from - 1]!) === true) from--;
      const timer = setTimeout(
        () => {
          this.retryTimers?.delete(timer);
          if (!this.settled && this.failure === undefined) this.dispatch(flight.segment, from);
        },
        timerDelay(backoffMs(this.plan.nodes[index]!.retry, attempt)),
      );
      (this.retryTimers ??= new Set()).add(timer);
      return;
    }
    if (this.failFast) {
      this.fail(() => error, Stop.Failure, undefined, kind === 'timeout' ? Stop.NodeTimeout : undefined);
      return;
    }
    (this.failures ??= new Map()).set(index, error);
    this.maybeFinish();
  }

  /** Without failFast, the run ends once nothing runs and nothing waits to be retried. */
  private maybeFinish(): void {
    if (this.flying > 0 || (this.retryTimers?.size ?? 0) > 0) return;
    if (this.segmentsLeft === 0 && this.failures === undefined) return this.finish();
    if (this.failures !== undefined) {
      this.failedAt = this.dispatcher.now();
      this.failure = () => this.pipelineFailed();
      this.finish();
    }
  }

  /**
   * Begins the end of a failed run: stops what is in flight (the segment at fault, if
   * any, with `culpritCode`), and rejects once nothing is left running.
   */
  private fail(failure: () => unknown, code: StopCode, culprit?: number, culpritCode?: StopCode): void {
    if (this.settled || this.failure !== undefined) return;
    this.failure = failure;
    this.cleanupDue = code === Stop.Cancel || code === Stop.PipelineTimeout || culpritCode === Stop.NodeTimeout;
    this.failedAt = this.dispatcher.now();
    this.clearTimers();
    const grace = this.timeouts.cleanupGraceMs;
    for (const flight of this.inFlight.filter((entry): entry is Flight => entry !== undefined)) {
      flight.clearDeadlines();
      if (flight.segment.index === culprit) flight.stopStatus = culpritCode === Stop.NodeTimeout ? 'timeout' : 'error';
      flight.ticket.stop(flight.segment.index === culprit ? (culpritCode ?? code) : code, grace);
    }
    if (this.flying === 0) this.finish();
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    this.clearTimers();
    if (this.failure === undefined) {
      this.resolvePromise(this.result());
      this.ended('success', undefined);
      return;
    }
    const error = this.failure();
    if (!this.cleanupDue || this.cleanups === undefined || this.cleanups.length === 0) {
      this.rejectPromise(error);
      this.ended(runStatusOf(error), error);
      return;
    }
    void runCleanups(this.cleanups.splice(0), error as Error, this.timeouts.cleanupGraceMs, (failed) =>
      this.hooks.cleanupFailed(failed, this),
    ).then(() => {
      this.rejectPromise(error);
      this.ended(runStatusOf(error), error);
    });
  }

  private ended(status: Status, error: unknown): void {
    this.trace?.end(status, error);
    this.hooks.ended(this, status, error, this.dispatcher.now() - this.startedAt);
  }

  private clearTimers(): void {
    if (this.timeouts.pipelineTimeoutMs !== Infinity) this.deadlines.remove(this, this.timeouts.pipelineTimeoutMs);
    if (this.retryTimers !== undefined) for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers = undefined;
    if (this.signal !== undefined) unwatchSignal(this.signal, this);
  }

  /** The flight whose running node is node `index`, if any. */
  private flightRunning(index: number): Flight | undefined {
    if (index < 0) return undefined;
    const flight = this.inFlight[this.plan.nodes[index]!.segment];
    if (flight === undefined) return undefined;
    const progress = flight.ticket.progress();
    const running = progress.started ? progress.position : flight.first;
    return flight.segment.nodes[running] === index ? flight : undefined;
  }

  // -------------------------------------------------------------------------
  // Results and errors.

  private result(): unknown {
    const { sinks, nodes } = this.plan;
    if (sinks.length === 1) return this.outputs[sinks[0]!];
    const result: Record<string, unknown> = {};
    for (const sink of sinks) setOwn(result, nodes[sink]!.id, this.outputs[sink]);
    return result;
  }

  /** Nodes completed before the run began to fail, in completion order, and their outputs. */
  private partial(): { completedNodes: string[]; partialResults: PartialResults } {
    const completed = this.completed ?? [];
    const done: { index: number; endedAt: number }[] = [];
    for (let i = 0; i < completed.length; i += 2) {
      if (completed[i + 1]! <= (this.failedAt ?? Infinity)) done.push({ index: completed[i]!, endedAt: completed[i + 1]! });
    }
    done.sort((a, b) => a.endedAt - b.endedAt);
    const partialResults: PartialResults = {};
    const completedNodes = done.map(({ index }) => {
      const id = this.plan.nodes[index]!.id;
      if (this.movedOn?.has(index) !== true) setOwn(partialResults, id, this.outputs[index]);
      return id;
    });
    return { completedNodes, partialResults };
  }

  /** Node `index`, as its errors name it. */
  private failing(index: number): Failing {
    const node = this.plan.nodes[index]!;
    return { nodeId: node.id, pipelineId: this.pipelineId, runId: this.runId, timeoutMs: node.timeoutMs ?? this.timeouts.nodeTimeoutMs };
  }

  /** The error of a cancellation with `reason`, as of now (also for a caller that leaves a shared run). */
  cancellation(reason: unknown): CancellationException {
    return new CancellationException({ pipelineId: this.pipelineId, runId: this.runId, reason, ...this.partial() });
  }

  private pipelineTimeout(): PipelineTimeoutException {
    return new PipelineTimeoutException({
      pipelineId: this.pipelineId,
      runId: this.runId,
      timeoutMs: this.timeouts.pipelineTimeoutMs,
      ...this.partial(),
    });
  }

  private pipelineFailed(): PipelineFailedException {
    const errors: Record<string, unknown> = {};
    const failedNodes: string[] = [];
    for (const [index, error] of this.failures ?? []) {
      const id = this.plan.nodes[index]!.id;
      setOwn(errors, id, error);
      failedNodes.push(id);
    }
    const skippedNodes = this.plan.nodes
      .filter((node) => this.outputs[node.index] === NO_OUTPUT && this.failures?.has(node.index) !== true)
      .map((node) => node.id);
    return new PipelineFailedException({ pipelineId: this.pipelineId, runId: this.runId, errors, failedNodes, skippedNodes, ...this.partial() });
  }
}

function statusOf(kind: FailureKind): Status {
  return kind === 'timeout' ? 'timeout' : 'error';
}

/** How a run that rejected with `error` ended. */
function runStatusOf(error: unknown): Status {
  if (error instanceof CancellationException) return 'cancelled';
  if (error instanceof PipelineTimeoutException || error instanceof NodeTimeoutException) return 'timeout';
  return 'error';
}

/** Whether no node at `indexes` has params. */
function noneOf(params: readonly unknown[], indexes: readonly number[]): boolean {
  for (let i = 0; i < indexes.length; i++) if (params[indexes[i]!] !== undefined) return false;
  return true;
}

/**
 * Sets `record[key]` as an own property, whatever the key: a node id such as
 * `__proto__` would otherwise change the record's prototype instead.
 */
function setOwn(record: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(record, key, { value, writable: true, enumerable: true, configurable: true });
  else record[key] = value;
}
