/** A node's `ctx`: what its function receives besides its input. */
import type { RunningContext, SegmentRun } from './segment';

export class Context implements RunningContext {
  private controller: AbortController | undefined;
  private reason: DOMException | undefined;

  /** `onProgress` is called with the run the first time a value waits to be sent. */
  constructor(
    private readonly run: SegmentRun,
    readonly params: unknown,
    readonly nodeId: string,
    readonly pipelineId: string,
    readonly runId: string,
    readonly attempt: number,
    readonly index: number | undefined,
    readonly traceparent: string | undefined,
    private readonly onProgress: (run: SegmentRun) => void,
  ) {}

  get traceContext(): unknown {
    return this.traceparent === undefined ? undefined : traceContextOf(this.traceparent);
  }

  /** Made on first use: most nodes never look at it. */
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
    this.onProgress(run);
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
