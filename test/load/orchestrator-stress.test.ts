/**
 * The seed's stress suite (LUKHAS "Orchestrator Stress Testing"), with its
 * configuration: node timeout 500 ms, pipeline timeout 1500 ms, grace 50 ms.
 *
 * Run alone: npx mocha test/load/orchestrator-stress.test.ts
 */
import { expect } from 'chai';
import { CancellationException, type PipelineExecutor } from '../../src/index';
import { COMPLETED, Probe, STARTED, fixture, rejection, useExecutors } from '../helpers';
import {
  SEED_TIMEOUTS,
  errorRequest,
  expectNodeError,
  expectNodeTimeout,
  expectPipelineTimeout,
  nodeTimeoutRequest,
  percentile,
  pipelineTimeoutRequest,
  threeNodes,
} from '../seed';

describe('orchestrator stress (the seed)', function () {
  this.timeout(120_000);
  const newExecutor = useExecutors();
  let executor: PipelineExecutor;

  beforeEach(async () => {
    executor = newExecutor({ timeouts: SEED_TIMEOUTS });
    // Warm up: start the threads and load the node module in each of them (not measured:
    // the seed's timeouts are for the measured runs, and thread starts on a busy machine may exceed them).
    await Promise.all(
      Array.from({ length: 50 }, () =>
        executor.executePipeline({ pipelineId: 'warm-up', nodes: threeNodes(), initialInput: 0, timeouts: { nodeTimeoutMs: 30_000, pipelineTimeoutMs: 60_000 } }),
      ),
    );
  });

  it('1. concurrent requests: 1000 pipelines of three nodes all succeed, p95 under 250 ms', async () => {
    const latencies: number[] = [];
    const results = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        const start = performance.now();
        const result = await executor.executePipeline<number>({
          pipelineId: `stress-${i}`,
          nodes: threeNodes(),
          initialInput: 0,
        });
        latencies.push(performance.now() - start);
        return result;
      }),
    );
    expect(results).to.have.length(1000);
    expect(results.every((result) => result === 3)).to.equal(true);
    latencies.sort((a, b) => a - b);
    const p50 = percentile(latencies, 50);
    const p95 = percentile(latencies, 95);
    const max = latencies[latencies.length - 1]!;
    console.log(`      1000 pipelines x 3 nodes x 10 ms: p50 ${p50.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms, max ${max.toFixed(1)} ms`);
    expect(p95).to.be.below(250);
  });

  it('2a. node timeout: node2 waits 600 ms against a 500 ms node timeout', async () => {
    const probe = new Probe();
    const timeout = expectNodeTimeout(await rejection(executor.executePipeline(nodeTimeoutRequest(probe.buffer))));
    expect(timeout.code).to.equal('ERR_NODE_TIMEOUT');
    expect(probe.get(STARTED)).to.equal(1);
    expect(probe.get(COMPLETED), 'node2 ran to completion').to.equal(0);
  });

  it('2b. pipeline timeout: four 400 ms nodes against a 1500 ms pipeline timeout', async () => {
    const timeout = expectPipelineTimeout(await rejection(executor.executePipeline(pipelineTimeoutRequest())));
    expect(timeout.code).to.equal('ERR_PIPELINE_TIMEOUT');
    expect(timeout.pipelineId).to.equal('pipeline-timeout');
  });

  it('3. cancellation: a long node is cancelled and never completes', async () => {
    const probe = new Probe();
    const controller = new AbortController();
    const run = executor.executePipeline({
      pipelineId: 'cancellation',
      nodes: [{ id: 'long', module: fixture('notify-then-wait.js'), params: { ms: 5_000, probe: probe.buffer } }],
      initialInput: 0,
      signal: controller.signal,
      timeouts: { nodeTimeoutMs: 10_000, pipelineTimeoutMs: 10_000 },
    });
    await probe.until(STARTED);
    controller.abort('caller went away');
    const error = await rejection(run);
    expect(error).to.be.instanceOf(CancellationException);
    const cancelled = error as CancellationException;
    expect(cancelled.code).to.equal('ERR_CANCELLED');
    expect(cancelled.pipelineId).to.equal('cancellation');
    expect(cancelled.reason).to.equal('caller went away');
    expect(probe.get(COMPLETED), 'the node ran to completion').to.equal(0);
    expect(executor.stats().terminations, 'the thread of the node was not terminated').to.equal(1);
  });

  it('4. error recovery: the error node2 raises reaches the caller', async () => {
    expectNodeError(await rejection(executor.executePipeline(errorRequest())));
  });
});
