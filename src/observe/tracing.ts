/**
 * Tracing through the OpenTelemetry API: a span per run (a child of the caller's
 * active span) and a span per node attempt (a child of its run's span). A node's span
 * context travels to its worker as a W3C `traceparent`, so node code can add child
 * spans (`ctx.traceContext`). With no tracer provider registered, spans do not record
 * and nothing of this runs past the run's first span.
 */
import { context, SpanStatusCode, trace, type Span, type Tracer } from '@opentelemetry/api';
import { performance } from 'node:perf_hooks';
import type { Status } from './stats';

/** A time of the dispatcher's clock (`performance.now()`) as epoch milliseconds. */
function epoch(time: number): number {
  return performance.timeOrigin + time;
}

/** The spans of one run. */
export class RunTrace {
  private readonly nodes = new Map<number, Span>();
  /** Nodes whose open span saw them start. */
  private readonly started = new Set<number>();

  private constructor(
    private readonly tracer: Tracer,
    private readonly span: Span,
  ) {}

  /** The run's span, or undefined when no tracer provider records it. */
  static start(runId: string, pipelineId: string, nodeCount: number): RunTrace | undefined {
    // The provider registered now (getTracer's result follows it, not the one at load).
    const tracer = trace.getTracer('lukhas-orchestrator');
    const span = tracer.startSpan(`pipeline ${pipelineId}`, {
      attributes: { 'lukhas.run_id': runId, 'lukhas.pipeline_id': pipelineId, 'lukhas.node_count': nodeCount },
    });
    if (!span.isRecording()) return undefined;
    return new RunTrace(tracer, span);
  }

  /**
   * Opens the span of a node attempt about to be sent (or keeps the open one of an
   * attempt that never started); returns its `traceparent`.
   */
  nodeSent(index: number, nodeId: string, attempt: number, runId: string, pipelineId: string): string {
    const open = this.nodes.get(index);
    if (open !== undefined && !this.started.has(index)) {
      open.setAttribute('lukhas.attempt', attempt);
      return traceparentOf(open);
    }
    open?.end();
    const parent = trace.setSpan(context.active(), this.span);
    const span = this.tracer.startSpan(
      `node ${nodeId}`,
      { attributes: { 'lukhas.run_id': runId, 'lukhas.pipeline_id': pipelineId, 'lukhas.node_id': nodeId, 'lukhas.attempt': attempt } },
      parent,
    );
    this.nodes.set(index, span);
    this.started.delete(index);
    return traceparentOf(span);
  }

  nodeStarted(index: number, startedAt: number): void {
    this.started.add(index);
    this.nodes.get(index)?.addEvent('started', epoch(startedAt));
  }

  nodeEnded(index: number, status: Status, error: unknown, endedAt: number): void {
    const span = this.nodes.get(index);
    if (span === undefined) return;
    this.nodes.delete(index);
    this.started.delete(index);
    finish(span, status, error, epoch(endedAt));
  }

  /** Ends the run's span, and those of its nodes still open (they never ran, or never to an end). */
  end(status: Status, error: unknown): void {
    for (const span of this.nodes.values()) finish(span, 'cancelled', undefined, undefined);
    this.nodes.clear();
    finish(this.span, status, error, undefined);
  }
}

function traceparentOf(span: Span): string {
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-${traceFlags.toString(16).padStart(2, '0')}`;
}

function finish(span: Span, status: Status, error: unknown, at: number | undefined): void {
  span.setAttribute('lukhas.status', status);
  if (status === 'success') {
    span.setStatus({ code: SpanStatusCode.OK });
  } else if (status !== 'cancelled') {
    if (error instanceof Error) span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? `${error.name}: ${error.message}` : status });
  }
  span.end(at);
}
