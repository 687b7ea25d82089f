/**
 * What the executor makes of a run's course: counts and durations for `stats()`,
 * OpenTelemetry metrics, and events for whoever listens. One place, so every outcome
 * is recorded the same way in all three.
 */
import type { EventEmitter } from 'node:events';
import { Metrics, type GaugeSources } from './metrics';
import type { PipelineRun } from '../run/scheduler';
import { Tally, type Status } from './stats';
import type { ProgressEvent } from '../plan/definition';
import type { ThreadExit } from '../pool/dispatcher';

/** `'runStart'` event. */
export interface RunStartEvent {
  readonly runId: string;
  readonly pipelineId: string;
}

/** `'runEnd'` event. */
export interface RunEndEvent {
  readonly runId: string;
  readonly pipelineId: string;
  readonly status: Status;
  readonly durationMs: number;
  /** What the run rejected with, if it did. */
  readonly error: unknown;
}

/** `'nodeStart'` event. */
export interface NodeStartEvent {
  readonly runId: string;
  readonly pipelineId: string;
  readonly nodeId: string;
  readonly attempt: number;
  /** On `performance.now()`'s clock. */
  readonly startedAt: number;
}

/** `'nodeEnd'` event. */
export interface NodeEndEvent {
  readonly runId: string;
  readonly pipelineId: string;
  readonly nodeId: string;
  readonly status: Status;
  /** From its start in the worker; undefined for a node stopped before it started. */
  readonly durationMs: number | undefined;
  readonly error: unknown;
}

/**
 * The events of a `PipelineExecutor`, by name, with their listeners' arguments:
 * `executor.on('runEnd', (event) => event.status)`.
 */
export interface ExecutorEvents {
  /** A run started (it may then wait for admission). */
  runStart: [event: RunStartEvent];
  /** A run settled, after its cleanup handlers ran. */
  runEnd: [event: RunEndEvent];
  /** A node attempt started in a worker (listening turns start reports on). */
  nodeStart: [event: NodeStartEvent];
  /** A node attempt ended, however it did. */
  nodeEnd: [event: NodeEndEvent];
  /** A node called `ctx.progress(value)` (throttled per `progressIntervalMs`). */
  progress: [event: ProgressEvent];
  /** A worker thread ended: terminated to stop a node, or dead by itself; the pool replaces it. */
  threadExit: [exit: ThreadExit];
  /** A cleanup handler threw, rejected or overran its time. */
  cleanupError: [error: unknown, run: { readonly runId: string; readonly pipelineId: string }];
}

/** Thread ends counted for health: the last minute's. */
const CHURN_WINDOW_MS = 60_000;

export class Observer {
  readonly runs = new Tally();
  readonly nodes = new Tally();
  readonly metrics: Metrics;
  private readonly threadEnds: number[] = [];

  constructor(
    private readonly events: EventEmitter<ExecutorEvents>,
    version: string,
    gauges: GaugeSources,
  ) {
    this.metrics = new Metrics(version, gauges);
  }

  runStarted(run: PipelineRun, nodeCount: number): void {
    if (this.metrics.enabled) this.metrics.runStarted(run.pipelineId, nodeCount);
    if (this.events.listenerCount('runStart') > 0) this.events.emit('runStart', { runId: run.runId, pipelineId: run.pipelineId } satisfies RunStartEvent);
  }

  admitted(run: PipelineRun, waitedMs: number): void {
    if (this.metrics.enabled) this.metrics.runAdmitted(run.pipelineId, waitedMs);
  }

  wantsStarts(): boolean {
    return this.events.listenerCount('nodeStart') > 0;
  }

  nodeStarted(run: PipelineRun, nodeId: string, attempt: number, startedAt: number): void {
    if (this.events.listenerCount('nodeStart') === 0) return;
    this.events.emit('nodeStart', { runId: run.runId, pipelineId: run.pipelineId, nodeId, attempt, startedAt } satisfies NodeStartEvent);
  }

  nodeEnded(run: PipelineRun, nodeId: string, status: Status, startedAt: number | undefined, endedAt: number, error: unknown): void {
    const durationMs = startedAt === undefined ? undefined : endedAt - startedAt;
    this.nodes.record(status, durationMs);
    if (this.metrics.enabled) this.metrics.nodeEnded(run.pipelineId, nodeId, status, errorType(error), durationMs);
    if (this.events.listenerCount('nodeEnd') > 0) {
      this.events.emit('nodeEnd', { runId: run.runId, pipelineId: run.pipelineId, nodeId, status, durationMs, error } satisfies NodeEndEvent);
    }
  }

  runEnded(run: PipelineRun, status: Status, error: unknown, durationMs: number): void {
    this.runs.record(status, durationMs);
    if (this.metrics.enabled) {
      const timedOut = (error as { code?: unknown } | undefined)?.code === 'ERR_PIPELINE_TIMEOUT';
      const completedNodes = timedOut ? (error as { completedNodes: readonly string[] }).completedNodes.length : 0;
      this.metrics.runEnded(run.pipelineId, status, durationMs, timedOut ? { completedNodes } : undefined);
    }
    if (this.events.listenerCount('runEnd') > 0) {
      this.events.emit('runEnd', { runId: run.runId, pipelineId: run.pipelineId, status, durationMs, error } satisfies RunEndEvent);
    }
  }

  threadEnded(reason: ThreadExit['reason'], at: number): void {
    // A thread replaced on schedule is no sign of trouble.
    if (reason !== 'recycled') this.threadEnds.push(at);
    if (this.metrics.enabled) this.metrics.threadEnded(reason);
  }

  threadReplaced(): void {
    if (this.metrics.enabled) this.metrics.threadReplaced();
  }

  /** Threads that ended in the last minute. */
  recentThreadEnds(now: number): number {
    while (this.threadEnds.length > 0 && this.threadEnds[0]! < now - CHURN_WINDOW_MS) this.threadEnds.shift();
    return this.threadEnds.length;
  }
}

/** The class name of an error, as a bounded label. */
function errorType(error: unknown): string | undefined {
  if (error === undefined) return undefined;
  return error instanceof Error ? error.name : typeof error;
}
