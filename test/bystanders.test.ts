import { expect } from 'chai';
import { NodeTimeoutException, type NodeDefinition } from '../src/index';
import { Probe, STARTED, fixture, useExecutors } from './helpers';

const sleepAdd = fixture('sleep-add.js');

function threeNodes(ms: number): NodeDefinition[] {
  return ['a', 'b', 'c'].map((id) => ({ id, module: sleepAdd, params: { ms } }));
}

describe('bystanders and blame', function () {
  this.timeout(120_000);
  const newExecutor = useExecutors();

  it('200 healthy pipelines in flight while 20 hung nodes are killed: none fails', async () => {
    const executor = newExecutor({ timeouts: { nodeTimeoutMs: 60_000, cleanupGraceMs: 20 } });
    await executor.ready();
    const healthy = Array.from({ length: 200 }, (_, i) =>
      executor.executePipeline({ pipelineId: `healthy-${i}`, nodes: threeNodes(100), initialInput: i }),
    );
    const hungProbe = new Probe();
    const hung = Array.from({ length: 20 }, (_, i) =>
      executor
        .executePipeline({
          pipelineId: `hung-${i}`,
          nodes: [
            {
              id: 'hangs',
              module: fixture(i % 2 === 0 ? 'notify-then-spin.js' : 'notify-then-wait.js'),
              params: { ms: 60_000, probe: hungProbe.buffer },
              timeoutMs: 200,
            },
          ],
        })
        .catch((error: unknown) => error),
    );
    const outcomes = await Promise.all(hung);
    for (const outcome of outcomes) expect(outcome).to.be.instanceOf(NodeTimeoutException);
    expect(await Promise.all(healthy)).to.deep.equal(Array.from({ length: 200 }, (_, i) => i + 3));
    // A hung node that was a bystander of another one's kill started again (at-least-once).
    expect(hungProbe.get(STARTED)).to.be.at.least(20);
    // Hung nodes on the same thread go down together.
    expect(executor.stats().terminations).to.be.within(1, 20);
  });

  it('100 healthy 3-node runs and 3 spinning nodes, all at a 400 ms node timeout: only the spinners fail', async () => {
    const executor = newExecutor({ timeouts: { nodeTimeoutMs: 400, cleanupGraceMs: 50 } });
    await executor.ready();
    const spinning = new Probe();
    const spinners = Array.from({ length: 3 }, (_, i) =>
      executor
        .executePipeline({
          pipelineId: `spinner-${i}`,
          nodes: [{ id: `spin-${i}`, module: fixture('notify-then-spin.js'), params: { probe: spinning.buffer } }],
        })
        .catch((error: unknown) => error),
    );
    // The healthy runs start while the spinners hold the threads: their timers cannot fire.
    await spinning.until(STARTED, 1);
    const healthy = Array.from({ length: 100 }, (_, i) =>
      executor.executePipeline({ pipelineId: `healthy-${i}`, nodes: threeNodes(20), initialInput: i }).catch((error: unknown) => error),
    );
    const outcomes = await Promise.all(healthy);
    const failed = outcomes.filter((outcome) => outcome instanceof Error);
    expect(failed.map(String)).to.deep.equal([]);
    expect(outcomes).to.deep.equal(Array.from({ length: 100 }, (_, i) => i + 3));
    const spun = await Promise.all(spinners);
    expect(spun.map((error) => (error as NodeTimeoutException).nodeId).sort()).to.deep.equal(['spin-0', 'spin-1', 'spin-2']);
    for (const error of spun) expect(error).to.be.instanceOf(NodeTimeoutException);
  });
});
