/**
 * What a segment's failure becomes: the error a run rejects with (or records) for the
 * node it ended on, and what kind of failure it was, as far as retrying goes.
 */
import {
  NodeOutputError,
  NodeTimeoutException,
  NonErrorThrownException,
  PipelineDefinitionError,
  WorkerCrashedException,
} from '../errors';
import type { FailureKind } from '../plan/retry';
import type { Settlement } from '../pool/dispatcher';
import { describe } from '../shared/thrown';

/** The failing node, as its error names it. */
export interface Failing {
  readonly nodeId: string;
  readonly pipelineId: string;
  readonly runId: string;
  /** Its timeout, for a `'timed-out'` settlement. */
  readonly timeoutMs: number;
}

/** The error and the kind of failure of a segment that ended on `node` otherwise than done. */
export function segmentError(node: Failing, settlement: Exclude<Settlement, { kind: 'done' }>): [unknown, FailureKind] {
  const { nodeId, pipelineId, runId } = node;
  switch (settlement.kind) {
    case 'failed':
      return [attribute(settlement.error, nodeId, pipelineId, runId), 'error'];
    case 'load-failed':
      return [new PipelineDefinitionError(settlement.message, { pipelineId, nodeId, cause: settlement.cause }), 'fatal'];
    case 'unclonable':
      return [new NodeOutputError({ nodeId, pipelineId, runId, cause: settlement.cause }), 'fatal'];
    case 'input-unclonable':
      return [
        new PipelineDefinitionError(
          `The input of node "${nodeId}" of pipeline "${pipelineId}" cannot be sent to a worker thread: ${describe(settlement.cause)}`,
          { pipelineId, nodeId, cause: settlement.cause },
        ),
        'fatal',
      ];
    case 'crashed':
      return [new WorkerCrashedException({ nodeId, pipelineId, runId, exitCode: settlement.exitCode, cause: settlement.cause }), 'crash'];
    case 'timed-out':
      return [new NodeTimeoutException({ nodeId, pipelineId, runId, timeoutMs: node.timeoutMs }), 'timeout'];
    case 'stopped':
    case 'killed':
      // Only the run stops its segments, and it decided then what follows; reaching here is a bug.
      return [new WorkerCrashedException({ nodeId, pipelineId, runId, cause: new Error(`segment ${settlement.kind} unasked`) }), 'fatal'];
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
