/**
 * The scheduler of one run: dispatches each segment when its dependencies are met,
 * feeds outputs forward, and ends the run exactly once.
 *
 * A run ends in one of two ways:
 * - every segment completed: it resolves with the sink output (or `{ [sinkId]: output }`);
 * - something failed (a node's error, a node timeout, the pipeline timeout, the
 *   caller's abort): every segment in flight is asked to stop (two-phase: signal, then
 *   thread termination after `cleanupGraceMs`) and the run rejects once they have all
 *   stopped, so no node of it is still running when the caller hears of the failure.
 */
import { Stop, type StopCode } from './board';
import type { ResolvedTimeouts } from './config';
import { NodeDeadlineWatch } from './deadlines';
import type { Dispatcher, SegmentTicket, Settlement } from './dispatch';
import {
  CancellationException,
  NodeOutputError,
  NodeTimeoutException,
  NonErrorThrownException,
  PipelineDefinitionError,
  PipelineTimeoutException,
  WorkerCrashedException,
  type PartialResults,
} from './errors';
import type { Plan, Segment } from './pipeline';
import type { TaskNode } from './protocol';
import { unwatchSignal, watchSignal } from './signals';

/** The longest delay `setTimeout` takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs when a run is cancelled or times out, after its nodes have stopped.
 * @param failure the `CancellationException` or `TimeoutException` the run rejects with.
 */
export type CleanupHandler = (failure: Error) => void | Promise<void>;

/** What a run tells its executor. */
export interface RunHooks {
  ended(run: PipelineRun): void;
  cleanupFailed(error: unknown, run: PipelineRun): void;
}

export interface RunSpec {
  readonly runId: string;
  readonly plan: Plan;
  readonly input: unknown;
  readonly timeouts: ResolvedTimeouts;
  readonly signal: AbortSignal | undefined;
  readonly dispatcher: Dispatcher;
  readonly hooks: RunHooks;
}

interface InFlight {
  readonly segment: Segment;
  readonly ticket: SegmentTicket;
  readonly watch: NodeDeadlineWatch;
}

export class PipelineRun {
  readonly promise: Promise<unknown>;
  private resolvePromise!: (value: unknown) => void;
  private rejectPromise!: (error: unknown) => void;

  private readonly outputs: unknown[];
  private readonly hasOutput: boolean[];
  /** Completed nodes and when, in arrival order. */
  private readonly completed: { index: number; endedAt: number }[] = [];
  private readonly waitingOn: number[];
  private readonly inFlight = new Map<number, InFlight>();
  private segmentsLeft: number;

  private pipelineTimer: NodeJS.Timeout | undefined;
  private failure: (() => unknown) | undefined;
  /** Cleanup handlers run: the run was cancelled or timed out. */
  private cleanupDue = false;
  private readonly cleanups: CleanupHandler[] = [];
  /** When the run began to fail: nodes completed after this do not count as completed. */
  private failedAt = Infinity;
  private settled = false;
  private readonly startedAt: number;
  readonly runId: string;
  private readonly plan: Plan;
  private readonly input: unknown;
  private readonly timeouts: ResolvedTimeouts;
  private readonly signal: AbortSignal | undefined;
  private readonly dispatcher: Dispatcher;
  private readonly hooks: RunHooks;

  constructor(spec: RunSpec) {
    const { plan, dispatcher } = spec;
    this.runId = spec.runId;
    this.plan = plan;
    this.input = spec.input;
    this.timeouts = spec.timeouts;
    this.signal = spec.signal;
    this.dispatcher = dispatcher;
    this.hooks = spec.hooks;
    this.promise = new Promise((resolve, reject) => {
      this.resolvePromise = resolve;
      this.rejectPromise = reject;
    });
    this.outputs = new Array<unknown>(plan.nodes.length);
    this.hasOutput = new Array<boolean>(plan.nodes.length).fill(false);
    this.waitingOn = plan.segments.map((segment) => segment.deps.length);
    this.segmentsLeft = plan.segments.length;
    this.startedAt = dispatcher.now();
  }

  get pipelineId(): string {
    return this.plan.pipelineId;
  }

  start(): void {
    const { signal } = this;
    if (signal?.aborted) {
      this.fail(() => this.cancellation(signal.reason), Stop.Cancel);
      return;
    }
    if (signal !== undefined) watchSignal(signal, this);
    const { pipelineTimeoutMs } = this.timeouts;
    if (pipelineTimeoutMs !== Infinity) this.armPipelineTimer(pipelineTimeoutMs);
    for (const segment of this.plan.roots) this.dispatch(this.plan.segments[segment]!);
  }

  /** Cancels the run, as an abort of its signal would. */
  cancel(reason: unknown): void {
    this.fail(() => this.cancellation(reason), Stop.Cancel);
  }

  /** A node of this run took its thread down. */
  crashed(nodeId: string, exitCode: number | undefined, cause: unknown): void {
    const { pipelineId } = this.plan;
    this.fail(() => new WorkerCrashedException({ nodeId, pipelineId, runId: this.runId, exitCode, cause }), Stop.Failure);
  }

  /** Adds a handler to run, in order, if the run is cancelled or times out. */
  onCleanup(handler: CleanupHandler): void {
    if (typeof handler !== 'function') throw new TypeError(`Expected a cleanup handler function, got ${typeof handler}`);
    this.cleanups.push(handler);
  }

  /** The run has not settled yet. */
  get active(): boolean {
    return !this.settled;
  }

  private armPipelineTimer(remainingMs: number): void {
    this.pipelineTimer = setTimeout(
      () => {
        const left = this.timeouts.pipelineTimeoutMs - (this.dispatcher.now() - this.startedAt);
        if (left > 0) return this.armPipelineTimer(left);
        this.fail(() => this.pipelineTimeout(), Stop.PipelineTimeout);
      },
      Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(remainingMs))),
    );
  }

  private dispatch(segment: Segment): void {
    const { plan } = this;
    const nodes: TaskNode[] = segment.nodes.map((index) => {
      const node = plan.nodes[index]!;
      return { id: node.id, module: node.module, export: node.exportName, params: node.params };
    });
    const timeouts = segment.nodes.map((index) => plan.nodes[index]!.timeoutMs ?? this.timeouts.nodeTimeoutMs);
    const ticket = this.dispatcher.submit({
      runId: this.runId,
      pipelineId: plan.pipelineId,
      nodes,
      input: this.inputOf(segment),
      listener: {
        nodeCompleted: (index, output, _startedAt, endedAt) => this.nodeCompleted(segment.nodes[index]!, output, endedAt),
        settled: (settlement) => this.segmentSettled(segment, settlement),
      },
    });
    const watch = new NodeDeadlineWatch(ticket, timeouts, 0, (node) => this.nodeOverdue(segment, node));
    this.inFlight.set(segment.index, { segment, ticket, watch });
  }

  /** `initialInput` for a root, the output of a single dependency, or `{ [depId]: output }`. */
  private inputOf(segment: Segment): unknown {
    if (segment.deps.length === 0) return this.input;
    if (segment.deps.length === 1) return this.outputs[segment.deps[0]!];
    const input: Record<string, unknown> = {};
    for (const dep of segment.deps) input[this.plan.nodes[dep]!.id] = this.outputs[dep];
    return input;
  }

  private nodeCompleted(index: number, output: unknown, endedAt: number): void {
    if (this.settled || this.hasOutput[index]) return;
    this.outputs[index] = output;
    this.hasOutput[index] = true;
    this.completed.push({ index, endedAt });
  }

  private segmentSettled(segment: Segment, settlement: Settlement): void {
    const flight = this.inFlight.get(segment.index);
    flight?.watch.clear();
    this.inFlight.delete(segment.index);
    if (this.failure !== undefined) {
      if (this.inFlight.size === 0) this.finish();
      return;
    }
    if (settlement.kind === 'done') {
      this.segmentsLeft--;
      for (const dependent of segment.dependents) {
        if (--this.waitingOn[dependent]! === 0) this.dispatch(this.plan.segments[dependent]!);
      }
      if (this.segmentsLeft === 0) this.finish();
      return;
    }
    const nodeIndex = 'node' in settlement ? segment.nodes[settlement.node] ?? segment.nodes[0]! : segment.nodes[0]!;
    this.fail(() => this.segmentError(nodeIndex, settlement), Stop.Failure);
  }

  private nodeOverdue(segment: Segment, node: number): void {
    const index = segment.nodes[node]!;
    const planned = this.plan.nodes[index]!;
    const timeoutMs = planned.timeoutMs ?? this.timeouts.nodeTimeoutMs;
    const error = new NodeTimeoutException({ nodeId: planned.id, pipelineId: this.plan.pipelineId, runId: this.runId, timeoutMs });
    this.fail(() => error, Stop.Failure, segment.index);
  }

  /**
   * Begins the end of a failed run: stops what is in flight (the segment at fault, if
   * any, with `culpritCode`), and rejects once nothing is left running.
   */
  private fail(failure: () => unknown, code: StopCode, culprit?: number): void {
    if (this.settled || this.failure !== undefined) return;
    this.failure = failure;
    this.cleanupDue = code === Stop.Cancel || code === Stop.PipelineTimeout || culprit !== undefined;
    this.failedAt = this.dispatcher.now();
    this.clearTimers();
    const grace = this.timeouts.cleanupGraceMs;
    for (const flight of this.inFlight.values()) {
      flight.watch.clear();
      const own = flight.segment.index === culprit ? Stop.NodeTimeout : code;
      flight.ticket.stop(own, grace);
    }
    if (this.inFlight.size === 0) this.finish();
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    this.clearTimers();
    if (this.failure === undefined) {
      this.resolvePromise(this.result());
      this.hooks.ended(this);
      return;
    }
    const error = this.failure();
    if (!this.cleanupDue || this.cleanups.length === 0) {
      this.rejectPromise(error);
      this.hooks.ended(this);
      return;
    }
    void this.runCleanups(error as Error).then(() => {
      this.rejectPromise(error);
      this.hooks.ended(this);
    });
  }

  /**
   * Runs the cleanup handlers one after another. Each has up to `cleanupGraceMs`; one
   * that throws, rejects or takes longer is reported, and the next one runs.
   */
  private async runCleanups(error: Error): Promise<void> {
    const grace = this.timeouts.cleanupGraceMs;
    for (const handler of this.cleanups.splice(0)) {
      let timer: NodeJS.Timeout | undefined;
      try {
        const done = Promise.resolve().then(() => handler(error));
        if (grace === Infinity) {
          await done;
        } else {
          const late = new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`A cleanup handler of run ${this.runId} did not finish within ${grace} ms`)),
              Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(grace))),
            );
          });
          await Promise.race([done, late]);
        }
      } catch (failure) {
        this.hooks.cleanupFailed(failure, this);
      } finally {
        clearTimeout(timer);
      }
    }
  }

  private clearTimers(): void {
    if (this.pipelineTimer !== undefined) clearTimeout(this.pipelineTimer);
    this.pipelineTimer = undefined;
    if (this.signal !== undefined) unwatchSignal(this.signal, this);
  }

  private result(): unknown {
    const { sinks, nodes } = this.plan;
    if (sinks.length === 1) return this.outputs[sinks[0]!];
    const result: Record<string, unknown> = {};
    for (const sink of sinks) result[nodes[sink]!.id] = this.outputs[sink];
    return result;
  }

  /** Nodes completed before the run began to fail, in completion order, and their outputs. */
  private partial(): { completedNodes: string[]; partialResults: PartialResults } {
    const done = this.completed.filter((entry) => entry.endedAt <= this.failedAt).sort((a, b) => a.endedAt - b.endedAt);
    const partialResults: PartialResults = {};
    const completedNodes = done.map(({ index }) => {
      const id = this.plan.nodes[index]!.id;
      partialResults[id] = this.outputs[index];
      return id;
    });
    return { completedNodes, partialResults };
  }

  private cancellation(reason: unknown): CancellationException {
    return new CancellationException({ pipelineId: this.plan.pipelineId, runId: this.runId, reason, ...this.partial() });
  }

  private pipelineTimeout(): PipelineTimeoutException {
    return new PipelineTimeoutException({
      pipelineId: this.plan.pipelineId,
      runId: this.runId,
      timeoutMs: this.timeouts.pipelineTimeoutMs,
      ...this.partial(),
    });
  }

  private segmentError(nodeIndex: number, settlement: Exclude<Settlement, { kind: 'done' }>): unknown {
    const nodeId = this.plan.nodes[nodeIndex]!.id;
    const { pipelineId } = this.plan;
    const { runId } = this;
    switch (settlement.kind) {
      case 'failed':
        return attribute(settlement.error, nodeId, pipelineId, runId);
      case 'load-failed':
        return new PipelineDefinitionError(settlement.message, { pipelineId, nodeId, cause: settlement.cause });
      case 'unclonable':
        return new NodeOutputError({ nodeId, pipelineId, runId, cause: settlement.cause });
      case 'input-unclonable':
        return new PipelineDefinitionError(
          `The input of node "${nodeId}" of pipeline "${pipelineId}" cannot be sent to a worker thread: ${describe(settlement.cause)}`,
          { pipelineId, nodeId, cause: settlement.cause },
        );
      case 'crashed':
        return new WorkerCrashedException({ nodeId, pipelineId, runId, exitCode: settlement.exitCode, cause: settlement.cause });
      case 'stopped':
      case 'killed':
        // Only a failing run stops its segments; reaching here is a bug.
        return new WorkerCrashedException({ nodeId, pipelineId, runId, cause: new Error(`segment ${settlement.kind} unasked`) });
    }
  }
}

/** The node's own error, with where it came from added. */
function attribute(error: unknown, nodeId: string, pipelineId: string, runId: string): unknown {
  if (error instanceof Error) {
    const target = error as Error & { nodeId?: string; pipelineId?: string; runId?: string };
    if (target.nodeId === undefined) target.nodeId = nodeId;
    if (target.pipelineId === undefined) target.pipelineId = pipelineId;
    if (target.runId === undefined) target.runId = runId;
    return error;
  }
  return new NonErrorThrownException({ nodeId, pipelineId, runId, value: error });
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
