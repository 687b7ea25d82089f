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
  BackendUnavailableException,
  ExecutorClosedException,
} from './errors';
export { DEFAULT_TIMEOUTS } from './config';
export { HEALTH_LIMITS } from './health';
export { transfer } from './transfer';
export { bullmqBackend } from './remote/bullmq';
export { startWorker } from './remote/worker';

export type { ExecutorOptions, TimeoutOptions } from './config';
export type { PipelineHandle, CloseOptions, ExecutorStats } from './executor';
export type { HealthOptions, HealthReport, HealthStatus } from './health';
export type { RunStartEvent, RunEndEvent, NodeStartEvent, NodeEndEvent } from './observer';
export type { Status, CountsByStatus, DurationSummary } from './stats';
export type { ThreadHealth } from './dispatch';
export type { Backend } from './config';
export type { BullmqBackendOptions } from './remote/bullmq';
export type { WorkerProcessOptions, RemoteWorker } from './remote/worker';
export type { CleanupHandler } from './scheduler';
export type { ThreadExit } from './dispatch';
export type { NodeDefinition, PipelineRequest, ProgressEvent } from './pipeline';
export type { NodeContext, NodeFunction } from './node';
export type { PartialResults } from './errors';
