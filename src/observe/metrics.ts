/**
 * Metrics through the OpenTelemetry API: recorded into whatever meter provider the
 * application registered before creating the executor, and a no-op otherwise (then
 * nothing here runs on the hot path).
 *
 * Labels stay bounded: `pipeline_id` and `node_id` are names the user chose, `status`
 * and `error_type` (an error class name) come from small sets; a run id never is one.
 */
import {
  createNoopMeter,
  metrics,
  ValueType,
  type Attributes,
  type Counter,
  type Histogram,
  type Meter,
  type ObservableCallback,
  type ObservableGauge,
} from '@opentelemetry/api';
import type { ThreadExit } from '../pool/dispatcher';
import type { Status } from './stats';

const NOOP_METER = createNoopMeter();

/** What the gauges read. */
export interface GaugeSources {
  runsInFlight(): number;
  runsQueued(): number;
  threads(): number;
}

export class Metrics {
  /** False when no meter provider is registered: callers skip building labels. */
  readonly enabled: boolean;
  private readonly nodeDuration: Histogram;
  private readonly nodeExecutions: Counter;
  private readonly nodeTimeouts: Counter;
  private readonly pipelineDuration: Histogram;
  private readonly pipelineExecutions: Counter;
  private readonly pipelineNodeCount: Histogram;
  private readonly pipelineTimeouts: Counter;
  private readonly completedAtTimeout: Histogram;
  private readonly queueWait: Histogram;
  private readonly threadTerminations: Counter;
  private readonly threadReplacements: Counter;
  private readonly gauges: [ObservableGauge, ObservableCallback][];

  constructor(version: string, sources: GaugeSources) {
    const meter: Meter = metrics.getMeter('lukhas-orchestrator', version);
    this.enabled = !(meter instanceof NOOP_METER.constructor);
    const ms = { unit: 'ms', valueType: ValueType.DOUBLE };
    this.nodeDuration = meter.createHistogram('orchestrator_node_duration_ms', { description: 'Time a node ran, from its start in the worker', ...ms });
    this.nodeExecutions = meter.createCounter('orchestrator_node_executions_total', { description: 'Node attempts, by how they ended' });
    this.nodeTimeouts = meter.createCounter('orchestrator_node_timeouts_total', { description: 'Node attempts that ran past their timeout' });
    this.pipelineDuration = meter.createHistogram('orchestrator_pipeline_duration_ms', { description: 'Time from a run\'s call to its end', ...ms });
    this.pipelineExecutions = meter.createCounter('orchestrator_pipeline_executions_total', { description: 'Runs, by how they ended' });
    this.pipelineNodeCount = meter.createHistogram('orchestrator_pipeline_node_count', { description: 'Nodes of each run', valueType: ValueType.INT });
    this.pipelineTimeouts = meter.createCounter('orchestrator_pipeline_timeouts_total', { description: 'Runs that ran past their pipeline timeout' });
    this.completedAtTimeout = meter.createHistogram('orchestrator_pipeline_completed_nodes_at_timeout', {
      description: 'Nodes a run had completed when its pipeline timeout passed',
      valueType: ValueType.INT,
    });
    this.queueWait = meter.createHistogram('orchestrator_queue_wait_ms', { description: 'Time a run waited for admission', ...ms });
    this.threadTerminations = meter.createCounter('orchestrator_thread_terminations_total', {
      description: 'Worker threads that ended: terminated to stop a node, or crashed',
    });
    this.threadReplacements = meter.createCounter('orchestrator_thread_replacements_total', { description: 'Worker threads started to replace one that ended' });
    const gauge = (name: string, description: string, read: () => number): [ObservableGauge, ObservableCallback] => {
      const instrument = meter.createObservableGauge(name, { description, valueType: ValueType.INT });
      const callback: ObservableCallback = (result) => result.observe(read());
      instrument.addCallback(callback);
      return [instrument, callback];
    };
    this.gauges = [
      gauge('orchestrator_runs_in_flight', 'Runs admitted and not settled', sources.runsInFlight),
      gauge('orchestrator_runs_queued', 'Runs waiting for admission', sources.runsQueued),
      gauge('orchestrator_threads', 'Live worker threads', sources.threads),
    ];
  }

  runStarted(pipelineId: string, nodeCount: number): void {
    this.pipelineNodeCount.record(nodeCount, { pipeline_id: pipelineId });
  }

  runAdmitted(pipelineId: string, waitedMs: number): void {
    this.queueWait.record(waitedMs, { pipeline_id: pipelineId });
  }

  nodeEnded(pipelineId: string, nodeId: string, status: Status, errorType: string | undefined, durationMs: number | undefined): void {
    const labels: Attributes = { pipeline_id: pipelineId, node_id: nodeId, status };
    if (durationMs !== undefined) this.nodeDuration.record(durationMs, labels);
    this.nodeExecutions.add(1, errorType === undefined ? labels : { ...labels, error_type: errorType });
    if (status === 'timeout') this.nodeTimeouts.add(1, { pipeline_id: pipelineId, node_id: nodeId });
  }

  runEnded(pipelineId: string, status: Status, durationMs: number, pipelineTimeout: { completedNodes: number } | undefined): void {
    this.pipelineDuration.record(durationMs, { pipeline_id: pipelineId, status });
    this.pipelineExecutions.add(1, { pipeline_id: pipelineId, status });
    if (pipelineTimeout !== undefined) {
      this.pipelineTimeouts.add(1, { pipeline_id: pipelineId });
      this.completedAtTimeout.record(pipelineTimeout.completedNodes, { pipeline_id: pipelineId });
    }
  }

  threadEnded(reason: ThreadExit['reason']): void {
    this.threadTerminations.add(1, { reason });
  }

  threadReplaced(): void {
    this.threadReplacements.add(1);
  }

  /** Stops the gauges' callbacks. */
  close(): void {
    for (const [instrument, callback] of this.gauges) instrument.removeCallback(callback);
  }
}
