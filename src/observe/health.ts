/**
 * `executor.health()`: a verdict (`ok`, `degraded`, `error`) with its reasons. Every
 * check is bounded in time: the threads have `timeoutMs` to answer, and nothing else
 * waits, so a health call never hangs, however stuck the threads are.
 */
import type { ThreadHealth } from '../pool/dispatcher';

export type HealthStatus = 'ok' | 'degraded' | 'error';

export interface HealthOptions {
  /**
   * How long each thread has to answer.
   * @default 250
   */
  readonly timeoutMs?: number;
}

export interface HealthReport {
  readonly status: HealthStatus;
  /** Why it is not `ok`, one sentence each. */
  readonly reasons: readonly string[];
  readonly threads: readonly ThreadHealth[];
  /** Main-thread event-loop delay since the previous health call. */
  readonly eventLoopDelayMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** Threads terminated or crashed in the last minute. */
  readonly threadsEndedLastMinute: number;
  readonly runsQueued: number;
  readonly tasksWaiting: number;
}

/** Thresholds of the verdict. */
export const HEALTH_LIMITS = Object.freeze({
  /** Event-loop delay p99 above which the executor is degraded, and in error. */
  eventLoopDegradedMs: 100,
  eventLoopErrorMs: 1_000,
  /** Threads ended in the last minute from which the executor is degraded, and in error. */
  threadChurnDegraded: 5,
  threadChurnError: 30,
  /** Share of `maxQueuedPipelines` waiting from which the executor is degraded. */
  queueDegraded: 0.9,
});

/**
 * What the verdict reads of the main thread's event-loop delay histogram (nanoseconds).
 * Declared here rather than imported: @types/node names that histogram's type
 * `IntervalHistogram` in some versions and `ELDHistogram` in others, and the package's
 * declarations must compile with each of them.
 */
export interface EventLoopDelays {
  readonly count: number;
  readonly max: number;
  percentile(percentile: number): number;
  reset(): void;
}

export interface HealthInputs {
  readonly closed: boolean;
  readonly threads: readonly ThreadHealth[];
  readonly liveThreads: number;
  readonly eventLoop: EventLoopDelays;
  /** The sampling interval of `eventLoop`: what it records beyond that is delay. */
  readonly eventLoopResolutionMs: number;
  readonly threadsEndedLastMinute: number;
  readonly runsQueued: number;
  readonly maxQueuedPipelines: number;
  readonly tasksWaiting: number;
}

export function judgeHealth(inputs: HealthInputs): HealthReport {
  const errors: string[] = [];
  const warnings: string[] = [];
  if (inputs.closed) errors.push('the executor is closed');
  if (inputs.liveThreads === 0) errors.push('no worker thread is alive');

  const stuck = inputs.threads.filter((thread) => !thread.responsive);
  for (const thread of stuck) {
    const held = thread.heldBy;
    warnings.push(
      held === undefined
        ? `thread ${thread.threadId} did not answer`
        : `thread ${thread.threadId} did not answer: node "${held.nodeId}" of run ${held.runId} has held it for ${Math.round(held.forMs)} ms`,
    );
  }
  if (inputs.threads.length > 0 && stuck.length === inputs.threads.length) errors.push('no worker thread answered');

  const loop = inputs.eventLoop;
  const delay = (nanos: number): number => (loop.count === 0 ? 0 : Math.max(0, nanos / 1e6 - inputs.eventLoopResolutionMs));
  const eventLoopDelayMs = { p50: delay(loop.percentile(50)), p99: delay(loop.percentile(99)), max: delay(loop.max) };
  loop.reset();
  if (eventLoopDelayMs.p99 > HEALTH_LIMITS.eventLoopErrorMs) errors.push(`the main thread's event loop lags ${Math.round(eventLoopDelayMs.p99)} ms (p99)`);
  else if (eventLoopDelayMs.p99 > HEALTH_LIMITS.eventLoopDegradedMs) warnings.push(`the main thread's event loop lags ${Math.round(eventLoopDelayMs.p99)} ms (p99)`);

  const churn = inputs.threadsEndedLastMinute;
  if (churn >= HEALTH_LIMITS.threadChurnError) errors.push(`${churn} worker threads were replaced in the last minute`);
  else if (churn >= HEALTH_LIMITS.threadChurnDegraded) warnings.push(`${churn} worker threads were replaced in the last minute`);

  const { runsQueued, maxQueuedPipelines, tasksWaiting } = inputs;
  if (Number.isFinite(maxQueuedPipelines) && runsQueued >= HEALTH_LIMITS.queueDegraded * maxQueuedPipelines && runsQueued > 0) {
    warnings.push(`${runsQueued} of at most ${maxQueuedPipelines} runs are waiting for admission`);
  }
  if (tasksWaiting > 0) warnings.push(`${tasksWaiting} node tasks are waiting for room on the threads`);

  return {
    status: errors.length > 0 ? 'error' : warnings.length > 0 ? 'degraded' : 'ok',
    reasons: [...errors, ...warnings],
    threads: inputs.threads,
    eventLoopDelayMs,
    threadsEndedLastMinute: churn,
    runsQueued,
    tasksWaiting,
  };
}
