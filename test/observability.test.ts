import { expect } from 'chai';
import { metrics, trace } from '@opentelemetry/api';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type DataPoint,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { CancellationException, type NodeEndEvent, type PipelineExecutor, type RunEndEvent } from '../src/index';
import { Probe, STARTED, fixture, rejection, useExecutors } from './helpers';

const sleepAdd = fixture('sleep-add.js');
const honour = fixture('honour-signal.js');

/** Runs one of each outcome: success, error, node timeout, pipeline timeout, cancellation. */
async function runEachOutcome(executor: PipelineExecutor): Promise<void> {
  await executor.ready();
  await executor.executePipeline({ pipelineId: 'ok', nodes: [{ id: 'a', module: sleepAdd }, { id: 'b', module: sleepAdd }], initialInput: 0 });
  await rejection(executor.executePipeline({ pipelineId: 'broken', nodes: [{ id: 'fails', module: fixture('throw-custom.js'), export: 'custom' }] }));
  await rejection(
    executor.executePipeline({ pipelineId: 'slow-node', nodes: [{ id: 'stuck', module: fixture('notify-then-wait.js'), params: { ms: 5_000 }, timeoutMs: 50 }] }),
  );
  await rejection(
    executor.executePipeline({
      pipelineId: 'slow-run',
      nodes: [{ id: 'quick', module: sleepAdd, params: { ms: 1 } }, { id: 'waits', module: honour, params: {} }],
      initialInput: 0,
      timeouts: { pipelineTimeoutMs: 150 },
    }),
  );
  const probe = new Probe();
  const controller = new AbortController();
  const cancelled = rejection(
    executor.executePipeline({ pipelineId: 'cancelled', nodes: [{ id: 'listens', module: honour, params: { probe: probe.buffer } }], signal: controller.signal }),
  );
  await probe.until(STARTED);
  controller.abort('enough');
  expect(await cancelled).to.be.instanceOf(CancellationException);
}

describe('observability', () => {
  const newExecutor = useExecutors();

  describe('OpenTelemetry metrics', () => {
    let exporter: InMemoryMetricExporter;
    let reader: PeriodicExportingMetricReader;

    beforeEach(() => {
      exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
      reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
      metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
    });
    afterEach(async () => {
      await reader.shutdown();
      metrics.disable();
    });

    async function collected(): Promise<Map<string, MetricData>> {
      await reader.forceFlush();
      const found = new Map<string, MetricData>();
      for (const batch of exporter.getMetrics()) {
        for (const scope of batch.scopeMetrics) for (const metric of scope.metrics) found.set(metric.descriptor.name, metric);
      }
      return found;
    }

    /** Sum of a counter's points (or count of a histogram's) whose labels include `labels`. */
    function total(metric: MetricData | undefined, labels: Record<string, unknown> = {}): number {
      if (metric === undefined) return 0;
      return (metric.dataPoints as DataPoint<unknown>[])
        .filter((point) => Object.entries(labels).every(([key, value]) => point.attributes[key] === value))
        .reduce((sum, point) => sum + (typeof point.value === 'number' ? point.value : (point.value as { count: number }).count), 0);
    }

    it('records every outcome of runs and nodes, labelled by pipeline and node, never by run', async () => {
      const executor = newExecutor({ timeouts: { cleanupGraceMs: 20 } });
      await runEachOutcome(executor);
      const found = await collected();

      const runs = found.get('orchestrator_pipeline_executions_total');
      expect(total(runs, { pipeline_id: 'ok', status: 'success' })).to.equal(1);
      expect(total(runs, { pipeline_id: 'broken', status: 'error' })).to.equal(1);
      expect(total(runs, { pipeline_id: 'slow-node', status: 'timeout' })).to.equal(1);
      expect(total(runs, { pipeline_id: 'slow-run', status: 'timeout' })).to.equal(1);
      expect(total(runs, { pipeline_id: 'cancelled', status: 'cancelled' })).to.equal(1);
      expect(total(found.get('orchestrator_pipeline_duration_ms'))).to.equal(5);
      expect(total(found.get('orchestrator_pipeline_node_count'), { pipeline_id: 'ok' })).to.equal(1);
      expect(total(found.get('orchestrator_pipeline_timeouts_total'), { pipeline_id: 'slow-run' })).to.equal(1);
      expect(total(found.get('orchestrator_pipeline_timeouts_total'))).to.equal(1);
      const atTimeout = found.get('orchestrator_pipeline_completed_nodes_at_timeout')!.dataPoints[0]!.value as { sum: number };
      expect(atTimeout.sum).to.equal(1);

      const nodes = found.get('orchestrator_node_executions_total');
      expect(total(nodes, { pipeline_id: 'ok', status: 'success' })).to.equal(2);
      expect(total(nodes, { node_id: 'fails', status: 'error', error_type: 'ValidationError' })).to.equal(1);
      expect(total(nodes, { node_id: 'stuck', status: 'timeout' })).to.equal(1);
      expect(total(nodes, { node_id: 'quick', status: 'success' })).to.equal(1);
      expect(total(nodes, { node_id: 'waits', status: 'cancelled' })).to.equal(1);
      expect(total(nodes, { node_id: 'listens', status: 'cancelled' })).to.equal(1);
      expect(total(found.get('orchestrator_node_timeouts_total'), { node_id: 'stuck' })).to.equal(1);
      expect(total(found.get('orchestrator_node_duration_ms'), { status: 'success' })).to.equal(3);
      expect(total(found.get('orchestrator_thread_terminations_total'), { reason: 'terminated' })).to.equal(1);
      expect(total(found.get('orchestrator_queue_wait_ms'))).to.equal(5);
      expect(found.get('orchestrator_runs_in_flight')?.dataPoints[0]?.value).to.equal(0);
      expect(found.get('orchestrator_threads')?.dataPoints[0]?.value).to.be.a('number');

      for (const metric of found.values()) {
        for (const point of metric.dataPoints) {
          expect(Object.keys(point.attributes)).to.not.include('run_id');
          expect(Object.values(point.attributes).join(' ')).to.not.match(/[0-9a-f]{8}-[0-9a-f]{4}-/);
        }
      }
    });
  });

  describe('OpenTelemetry tracing', () => {
    let exporter: InMemorySpanExporter;

    beforeEach(() => {
      exporter = new InMemorySpanExporter();
      trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    });
    afterEach(() => {
      trace.disable();
    });

    it('makes a span per run and per node attempt, with status, ids and attempt, and hands the node its context', async () => {
      const executor = newExecutor();
      const handle = executor.startPipeline({
        pipelineId: 'traced',
        nodes: [
          { id: 'flaky', module: fixture('flaky.js'), params: { failures: 1 }, retries: 1, backoff: { baseMs: 1 } },
          { id: 'sees', module: fixture('traced.js') },
        ],
        initialInput: 0,
      });
      const seen = (await handle.result) as { traceparent: string; traceId: string; spanId: string };
      const spans = exporter.getFinishedSpans();
      const runSpan = spans.find((span) => span.name === 'pipeline traced')!;
      expect(runSpan.attributes).to.include({ 'lukhas.run_id': handle.runId, 'lukhas.pipeline_id': 'traced', 'lukhas.status': 'success' });
      const nodeSpans = spans.filter((span) => span.name.startsWith('node '));
      const byName = (name: string): ReadableSpan[] => nodeSpans.filter((span) => span.name === name);
      expect(byName('node flaky').map((span) => [span.attributes['lukhas.attempt'], span.attributes['lukhas.status']])).to.deep.equal([
        [1, 'error'],
        [2, 'success'],
      ]);
      for (const span of nodeSpans) expect(span.parentSpanContext?.spanId).to.equal(runSpan.spanContext().spanId);
      const sees = byName('node sees')[0]!;
      expect(seen.traceparent).to.equal(`00-${sees.spanContext().traceId}-${sees.spanContext().spanId}-01`);
      expect([seen.traceId, seen.spanId]).to.deep.equal([sees.spanContext().traceId, sees.spanContext().spanId]);
    });

    it('marks the spans of a failed run as errors', async () => {
      const executor = newExecutor();
      await rejection(executor.executePipeline({ pipelineId: 'broken', nodes: [{ id: 'fails', module: fixture('throw-custom.js'), export: 'nodeFailed' }] }));
      const spans = exporter.getFinishedSpans();
      for (const name of ['pipeline broken', 'node fails']) {
        const span = spans.find((candidate) => candidate.name === name)!;
        expect(span.status).to.deep.equal({ code: 2, message: 'Error: Node failed' });
      }
    });
  });

  describe('stats()', () => {
    it('counts runs and node attempts by outcome, with duration percentiles, without any exporter', async () => {
      const executor = newExecutor({ timeouts: { cleanupGraceMs: 20 } });
      await runEachOutcome(executor);
      const stats = executor.stats();
      expect(stats.runs).to.deep.equal({ success: 1, error: 1, timeout: 2, cancelled: 1 });
      expect(stats.nodes).to.deep.equal({ success: 3, error: 1, timeout: 1, cancelled: 2 });
      expect(stats.runDurationMs.count).to.equal(5);
      expect(stats.nodeDurationMs.count).to.equal(7);
      expect(stats.nodeDurationMs.p50Ms).to.be.above(5);
      expect(stats.runDurationMs.p99Ms).to.be.at.least(stats.runDurationMs.p50Ms);
      expect(stats.utilisation).to.be.within(0, 1);
      expect(stats).to.include({ runsInFlight: 0, runsQueued: 0, threads: 2, terminations: 1 });
    });
  });

  describe('events', () => {
    it('tell of runs and node attempts starting and ending, in order', async () => {
      const executor = newExecutor();
      const seen: string[] = [];
      executor.on('runStart', ({ pipelineId }) => seen.push(`runStart ${pipelineId}`));
      executor.on('nodeStart', ({ nodeId, attempt }) => seen.push(`nodeStart ${nodeId} ${attempt}`));
      executor.on('nodeEnd', ({ nodeId, status }: NodeEndEvent) => seen.push(`nodeEnd ${nodeId} ${status}`));
      executor.on('runEnd', ({ pipelineId, status }: RunEndEvent) => seen.push(`runEnd ${pipelineId} ${status}`));
      await executor.executePipeline({ pipelineId: 'p', nodes: [{ id: 'a', module: sleepAdd }, { id: 'b', module: sleepAdd }], initialInput: 0 });
      expect(seen).to.deep.equal(['runStart p', 'nodeStart a 1', 'nodeEnd a success', 'nodeStart b 1', 'nodeEnd b success', 'runEnd p success']);
    });
  });

  describe('health()', () => {
    it('is ok when all is well', async () => {
      const executor = newExecutor();
      await executor.ready();
      const report = await executor.health();
      expect(report.status).to.equal('ok');
      expect(report.reasons).to.deep.equal([]);
      expect(report.threads.map((thread) => thread.responsive)).to.deep.equal([true, true]);
    });

    it('answers within its time limit when a thread is stuck, naming the node that holds it', async () => {
      const executor = newExecutor({ threads: 2, timeouts: { cleanupGraceMs: 20 } });
      await executor.ready();
      const probe = new Probe();
      const stuck = executor.startPipeline({
        pipelineId: 'hog',
        nodes: [{ id: 'spinner', module: fixture('notify-then-spin.js'), params: { probe: probe.buffer } }],
      });
      await probe.until(STARTED);
      const asked = performance.now();
      const report = await executor.health({ timeoutMs: 100 });
      expect(performance.now() - asked).to.be.below(1_000);
      expect(report.status).to.equal('degraded');
      expect(report.reasons.join('\n')).to.match(new RegExp(`did not answer: node "spinner" of run ${stuck.runId} has held it for \\d+ ms`));
      stuck.cancel();
      await rejection(stuck.result);
    });

    it('is an error once the executor is closed', async () => {
      const executor = newExecutor({ threads: 1 });
      await executor.close();
      const report = await executor.health();
      expect(report.status).to.equal('error');
      expect(report.reasons).to.include('the executor is closed');
    });
  });
});
