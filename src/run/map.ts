/**
 * A map node in flight: its function runs once per element of its input array, each
 * element as a one-node segment of its own through the dispatcher, and its output is the
 * array of the results in input order.
 *
 * How elements travel: one segment each, so that each has its own slot on the board, its
 * own deadline, its own attempts and its own two-phase stop, exactly as any node has. They
 * do not cost one message each: the pool sends the segments it gives a thread in one
 * flush as one piscina task (see `pool/sender.ts`), up to the thread's window of
 * segments held ahead, and refills a thread a few at a time (see `withRoom` in
 * `pool/threads.ts`); a thread with nothing to start steals the waiting elements of a
 * busy one. Batching elements into larger tasks would save a little bookkeeping per
 * element but lose what a slot gives: a timeout that stops the element that overran
 * and not its neighbours, a retry of the element that failed alone.
 *
 * To the scheduler a map node is one flight: this class is its ticket (`stop()` stops
 * every element in flight and waits for them), and it tells the run through the same
 * listener as a segment, plus `elementFailed` for a failure that, with `failFast`, stops
 * the run at once.
 */
import type { Dispatcher, SegmentJob, SegmentListener, SegmentTicket, Settlement } from '../pool/dispatcher';
import type { MapPlan } from '../plan/plan';
import { backoffMs, shouldRetry, type FailureKind } from '../plan/retry';
import { Stop, type StopCode, type TaskProgress } from '../shared/board';
import { timerDelay } from '../shared/delay';
import { attemptsOf } from '../shared/protocol';
import { MapElementsFailedException, MapInputError, NodeTimeoutException, WorkerCrashedException } from '../errors';
import { NodeDeadlineWatch } from './deadlines';
import { segmentError, type Failing } from './failures';

/** What a map node tells its run: a segment's listener, and failures that stop the run. */
export interface MapListener extends SegmentListener {
  /** The latest value element `element` gave `ctx.progress()`. */
  progress(position: number, value: unknown, element?: number): void;
  /** With failFast, an element failed for good (its error carries `index`): the run stops. */
  elementFailed(error: unknown, kind: FailureKind): void;
}

export interface MapSpec {
  /** The node's segment job: its input is the array, and elements differ in what else they carry. */
  readonly job: SegmentJob;
  readonly plan: MapPlan;
  readonly failFast: boolean;
  readonly node: Failing;
  readonly dispatcher: Dispatcher;
  readonly listener: MapListener;
}

/**
 * An element in flight, the listener of its segment and the watch of its deadline: one
 * object per element (this runs per element, 100,000 times a run).
 */
class Element extends NodeDeadlineWatch implements SegmentListener {
  ticket: SegmentTicket | undefined = undefined;
  /** Set when this element alone is stopped (its timeout, its thread's crash): what follows. */
  stopping: { readonly error: unknown; readonly kind: FailureKind; readonly retry: boolean } | undefined = undefined;

  constructor(
    private readonly map: MapTicket,
    readonly index: number,
  ) {
    super();
  }

  override get timeouts(): readonly number[] {
    return this.map.timeouts;
  }

  override get first(): number {
    return 0;
  }

  nodeStarted(_position: number, startedAt: number): void {
    this.map.elementStarted(startedAt);
  }

  nodeCompleted(_position: number, output: unknown, startedAt: number): void {
    this.map.elementStarted(startedAt);
    this.map.elementCompleted(this.index, output);
  }

  progress(_position: number, value: unknown): void {
    this.map.elementProgress(this.index, value);
  }

  settled(settlement: Settlement): void {
    this.map.elementSettled(this, settlement);
  }

  override overdue(): void {
    this.map.elementOverdue(this);
  }
}

const NOT_STARTED: TaskProgress = Object.freeze({ started: false });

export class MapTicket implements SegmentTicket {
  private readonly elements: readonly unknown[];
  private readonly outputs: unknown[];
  private readonly attempts: number[];
  /** Elements in flight, by index, and how many. */
  private readonly inFlight: (Element | undefined)[] = [];
  private flying = 0;
  private readonly retryTimers = new Map<number, NodeJS.Timeout>();
  /** The next element to send. */
  private next = 0;
  /** Elements that failed for good, in the order they did. */
  private readonly failedIndexes: number[] = [];
  private readonly failedErrors: unknown[] = [];
  private stopped = false;
  private settled = false;
  private startedAt: number | undefined;
  private endedAt = 0;

  constructor(private readonly spec: MapSpec) {
    const { input } = spec.job;
    if (!Array.isArray(input)) {
      this.elements = [];
      this.outputs = [];
      this.attempts = [];
      const error = new MapInputError({ ...spec.node, input });
      // The run registers its flight after this returns: it hears of the end after that.
      queueMicrotask(() => this.settle({ kind: 'failed', position: 0, error }));
      return;
    }
    this.elements = input as unknown[];
    this.outputs = new Array<unknown>(input.length);
    this.attempts = new Array<number>(input.length).fill(1);
    if (input.length === 0) queueMicrotask(() => this.maybeFinish());
    else this.fill();
  }

  progress(): TaskProgress {
    return NOT_STARTED;
  }

  /** The node's timeout, which each element has (see `Element`). */
  get timeouts(): readonly number[] {
    return this.spec.job.timeouts;
  }

  refresh(): void {
    for (const element of this.flyingNow()) element.ticket?.refresh();
  }

  /** The elements in flight, in a list of their own (stopping one may end another). */
  private flyingNow(): Element[] {
    return this.inFlight.filter((element): element is Element => element !== undefined);
  }

  /** Stops every element in flight and sends no more; settles `'stopped'` once they have ended. */
  stop(code: StopCode, graceMs: number): void {
    if (this.settled || this.stopped) return;
    this.stopped = true;
    this.next = this.elements.length;
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    // A node timeout names the element that overran, which stopped already: the others stop for it.
    const others = code === Stop.NodeTimeout ? Stop.Failure : code;
    for (const element of this.flyingNow()) {
      element.clearDeadlines();
      element.ticket?.stop(others, graceMs);
    }
    if (this.flying === 0) queueMicrotask(() => this.settle({ kind: 'stopped', position: 0 }));
  }

  /** Element `index`'s thread was taken down by it: it is stopped alone, then retried or failed. */
  crashed(index: number, exitCode: number | undefined, cause: unknown): void {
    const element = this.inFlight[index];
    if (element === undefined || this.stopped || element.stopping !== undefined) return;
    const { nodeId, pipelineId, runId } = this.spec.node;
    this.stopAlone(element, withIndex(new WorkerCrashedException({ nodeId, pipelineId, runId, exitCode, cause }), index), 'crash', Stop.Failure);
  }

  // -------------------------------------------------------------------------

  /** Sends elements while fewer than `concurrency` are in flight or waiting to be retried. */
  private fill(): void {
    const { concurrency } = this.spec.plan;
    while (this.next < this.elements.length && this.flying + this.retryTimers.size < concurrency) this.send(this.next++);
  }

  private send(index: number): void {
    const { spec } = this;
    const element = new Element(this, index);
    this.inFlight[index] = element;
    this.flying++;
    const { job: node } = spec;
    // Written out, not spread: object spread is a slow path in V8, and this runs per element.
    const job: SegmentJob = {
      run: node.run,
      nodes: node.nodes,
      segmentId: node.segmentId,
      first: 0,
      element: index,
      attempts: attemptsOf(1, this.attempts[index]!),
      input: this.elements[index],
      reportStarts: node.reportStarts,
      timeouts: node.timeouts,
      graceMs: node.graceMs,
      deadline: node.deadline,
      priority: node.priority,
      concurrencyKey: node.concurrencyKey,
      listener: element,
    };
    // Its deadline is watched as the dispatcher allows (see `submittedTo`).
    element.submittedTo(spec.dispatcher);
    element.ticket = spec.dispatcher.submit(job);
  }

  // What an element's segment tells it (see `Element`).

  elementStarted(startedAt: number): void {
    if (this.startedAt !== undefined || this.settled) return;
    this.startedAt = startedAt;
    if (this.spec.job.reportStarts) this.spec.listener.nodeStarted(0, startedAt);
  }

  elementCompleted(index: number, output: unknown): void {
    this.outputs[index] = output;
  }

  elementProgress(index: number, value: unknown): void {
    if (!this.settled) this.spec.listener.progress(0, value, index);
  }

  elementOverdue(element: Element): void {
    const { nodeId, pipelineId, runId, timeoutMs } = this.spec.node;
    this.stopAlone(element, withIndex(new NodeTimeoutException({ nodeId, pipelineId, runId, timeoutMs }), element.index), 'timeout', Stop.NodeTimeout);
  }

  /** The element failed while it still runs: stop it, and decide now what follows. */
  private stopAlone(element: Element, error: unknown, kind: FailureKind, code: StopCode): void {
    const retry = shouldRetry(this.spec.plan.retry, kind, error, this.attempts[element.index]!);
    element.stopping = { error, kind, retry };
    element.clearDeadlines();
    element.ticket?.stop(code, this.spec.job.graceMs);
    if (!retry && this.spec.failFast) this.failedForGood(element.index, error, kind);
  }

  elementSettled(element: Element, settlement: Settlement): void {
    element.clearDeadlines();
    if (this.inFlight[element.index] === element) {
      this.inFlight[element.index] = undefined;
      this.flying--;
    }
    this.endedAt = this.spec.dispatcher.now();
    if (this.settled) return;
    if (this.stopped) {
      if (this.flying === 0) this.settle({ kind: 'stopped', position: 0 });
      return;
    }
    const { stopping } = element;
    if (stopping !== undefined) {
      // With failFast its failure was told when it was stopped; the run stops us all.
      if (stopping.retry) this.retry(element.index);
      else if (!this.spec.failFast) this.failedForGood(element.index, stopping.error, stopping.kind);
      return;
    }
    if (settlement.kind === 'done') {
      this.fill();
      return this.maybeFinish();
    }
    const [raw, kind] = segmentError(this.spec.node, settlement);
    const error = withIndex(raw, element.index);
    if (shouldRetry(this.spec.plan.retry, kind, error, this.attempts[element.index]!)) this.retry(element.index);
    else this.failedForGood(element.index, error, kind);
  }

  private retry(index: number): void {
    const attempt = this.attempts[index]!;
    this.attempts[index] = attempt + 1;
    const timer = setTimeout(
      () => {
        this.retryTimers.delete(index);
        if (!this.stopped && !this.settled) this.send(index);
      },
      timerDelay(backoffMs(this.spec.plan.retry, attempt)),
    );
    this.retryTimers.set(index, timer);
  }

  private failedForGood(index: number, error: unknown, kind: FailureKind): void {
    this.failedIndexes.push(index);
    this.failedErrors.push(error);
    if (this.spec.failFast) {
      this.spec.listener.elementFailed(error, kind);
      return;
    }
    this.fill();
    this.maybeFinish();
  }

  /** Once every element has ended: the outputs, or the elements that failed. */
  private maybeFinish(): void {
    if (this.flying > 0 || this.retryTimers.size > 0 || this.next < this.elements.length) return;
    if (this.failedIndexes.length === 0) {
      const now = this.spec.dispatcher.now();
      this.spec.listener.nodeCompleted(0, this.outputs, this.startedAt ?? now, this.elements.length === 0 ? now : this.endedAt, false);
      return this.settle({ kind: 'done' });
    }
    const order = this.failedIndexes.map((index, i) => [index, this.failedErrors[i]] as const).sort((a, b) => a[0] - b[0]);
    const error = new MapElementsFailedException({
      ...this.spec.node,
      failedIndexes: order.map(([index]) => index),
      errors: order.map(([, failure]) => failure),
      elements: this.elements.length,
    });
    this.settle({ kind: 'failed', position: 0, error });
  }

  private settle(settlement: Settlement): void {
    if (this.settled) return;
    this.settled = true;
    this.spec.listener.settled(settlement, this.startedAt);
  }
}

/** An element's error names its position (a non-object is wrapped by the run first). */
function withIndex(error: unknown, index: number): unknown {
  if (error !== null && typeof error === 'object' && !Object.hasOwn(error, 'index')) {
    Object.defineProperty(error, 'index', { value: index, writable: true, enumerable: true, configurable: true });
  }
  return error;
}
