/**
 * The public surface of lukhas-orchestrator: everything a user, or the implementer of a
 * `Backend`, needs is exported here, and only here.
 */

// Running pipelines.
export { PipelineExecutor } from './executor';
export type { PipelineHandle, CloseOptions, ExecutorStats } from './executor';
export type { KeyStats } from './run/admission';
export type { ExecutorOptions, RecycleOptions, ResolvedTimeouts, TimeoutOptions } from './options';
export { DEFAULT_TIMEOUTS } from './options';
export type { NodeDefinition, MapOptions, PipelineRequest, ProgressEvent } from './plan/definition';

// Typed definitions: types that flow from each node to the result.
export { defineNode, nodeModule } from './plan/typed';
export type {
  TypedNode,
  AnyTypedNode,
  TypedNodeList,
  NodeModule,
  NodeOptions,
  NodeExports,
  NodeDefinitionOf,
  NodeInput,
  NodeOutput,
  NodeParams,
  InputOf,
  OutputOf,
  CheckedNodes,
  PipelineInput,
  PipelineResult,
  TypedPipelineRequest,
  PlainPipelineRequest,
} from './plan/typed';
export type { CleanupHandler } from './run/cleanup';

// Writing nodes.
export type { NodeContext, NodeFunction } from './shared/node';
export { transfer } from './shared/transfer';

// Errors.
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
  MapInputError,
  MapElementsFailedException,
  BackendUnavailableException,
  MissingPackageError,
  ExecutorClosedException,
} from './errors';
export type { PartialResults } from './errors';

// Observing.
export type { ExecutorEvents, RunStartEvent, RunEndEvent, NodeStartEvent, NodeEndEvent } from './observe/observer';
export type { HealthOptions, HealthReport, HealthStatus } from './observe/health';
export { HEALTH_LIMITS } from './observe/health';
export type { Status, CountsByStatus, DurationSummary } from './observe/stats';

// The BullMQ backend.
export { bullmqBackend } from './remote/bullmq';
export type { BullmqBackendOptions } from './remote/bullmq';
export type { RedisConnectionOptions } from './remote/connection';
export { startWorker } from './remote/worker';
export type { WorkerProcessOptions, RemoteWorker } from './remote/worker';

// Writing a backend: the dispatcher seam and what crosses it.
export type {
  Backend,
  Dispatcher,
  DispatcherEvents,
  DispatcherOptions,
  DispatcherStats,
  SegmentJob,
  SegmentListener,
  SegmentTicket,
  Settlement,
  ThreadExit,
  ThreadHealth,
} from './pool/dispatcher';
export type { RecycleLimits } from './pool/recycling';
export { Stop } from './shared/board';
export type { StopCode, TaskProgress } from './shared/board';
export type { TaskNode } from './shared/protocol';
