export { PipelineExecutor } from './executor';
export {
  OrchestratorException,
  TimeoutException,
  NodeTimeoutException,
  PipelineTimeoutException,
  CancellationException,
  PipelineDefinitionError,
  PipelineFailedException,
  QueueFullException,
  WorkerCrashedException,
  NodeOutputError,
  NonErrorThrownException,
  ExecutorClosedException,
} from './errors';
export { DEFAULT_TIMEOUTS } from './config';
export { transfer } from './transfer';

export type { ExecutorOptions, TimeoutOptions } from './config';
export type { PipelineHandle, CloseOptions, ExecutorStats } from './executor';
export type { CleanupHandler } from './scheduler';
export type { ThreadExit } from './dispatch';
export type { NodeDefinition, PipelineRequest, ProgressEvent } from './pipeline';
export type { NodeContext, NodeFunction } from './node';
export type { PartialResults } from './errors';
