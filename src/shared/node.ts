/** What a node function receives besides its input. */
export interface NodeContext<Params = unknown> {
  /**
   * Aborts when the node should stop: its timeout or the pipeline's passed
   * (`reason.name === 'TimeoutError'`), the run was cancelled or another node of it
   * failed (`'AbortError'`). A node that has not settled `cleanupGraceMs` later has
   * its thread terminated.
   */
  readonly signal: AbortSignal;
  /** The node definition's `params`. */
  readonly params: Params;
  readonly nodeId: string;
  readonly pipelineId: string;
  /** Unique per `executePipeline` call. */
  readonly runId: string;
  /** Which attempt this is: 1 for the first, 2 for the first retry (see the node's `retries`). */
  readonly attempt: number;
  /**
   * For a map node, the position of the element this call runs (its input is that
   * element); undefined for any other node.
   */
  readonly index: number | undefined;
  /**
   * Reports progress to the caller (`onProgress` of the run, the executor's `'progress'`
   * event). Throttled: the caller gets at most one value per `progressIntervalMs` per
   * node, the latest, and the last one before the node completes. Must be cloneable.
   */
  progress(value: unknown): void;
  /**
   * The W3C traceparent of the node's span, when the application traces runs (an
   * OpenTelemetry tracer provider is registered on the main thread).
   */
  readonly traceparent: string | undefined;
  /**
   * An OpenTelemetry `Context` whose span is the node's, to parent spans the node
   * starts: `tracer.startActiveSpan('step', {}, ctx.traceContext, (span) => ...)`.
   * Undefined when the run is not traced.
   */
  readonly traceContext: unknown;
}

/**
 * A node: takes its input (the previous node's output, or the pipeline's input, or
 * `{ [depId]: output }` for several dependencies) and returns its output or a
 * promise of it. Inputs and outputs cross threads by structured clone.
 */
export type NodeFunction<Input = unknown, Output = unknown, Params = unknown> = (
  input: Input,
  ctx: NodeContext<Params>,
) => Output | Promise<Output>;
