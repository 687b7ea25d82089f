import { expect } from 'chai';
import { once } from 'node:events';
import { WorkerCrashedException, type ThreadExit } from '../src/index';
import { COMPLETED, Probe, STARTED, fixture, rejection, useExecutors } from './helpers';

const faults = fixture('faults.js');
const sleepAdd = fixture('sleep-add.js');

describe('worker faults', () => {
  const newExecutor = useExecutors();

  /** Healthy runs sharing the thread, started before the fault; all must succeed. */
  async function withBystanders(run: (probe: Probe) => Promise<unknown>, executor: ReturnType<ReturnType<typeof useExecutors>>) {
    const healthy = new Probe();
    const bystanders = Array.from({ length: 10 }, (_, i) =>
      executor.executePipeline({ nodes: [{ id: 'ok', module: sleepAdd, params: { ms: 300, probe: healthy.buffer } }], initialInput: i }),
    );
    await healthy.until(STARTED, 10);
    const error = await run(healthy);
    expect(await Promise.all(bystanders)).to.deep.equal(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(healthy.get(COMPLETED)).to.be.at.least(10);
    return error;
  }

  it('process.exit() after an await names the node, with the exit code; the thread is replaced', async () => {
    const executor = newExecutor({ threads: 1 });
    const error = (await withBystanders(
      () => rejection(executor.executePipeline({ pipelineId: 'quits', nodes: [{ id: 'exit', module: faults, export: 'exitLater', params: { ms: 20, code: 5 } }] })),
      executor,
    )) as WorkerCrashedException;
    expect(error).to.be.instanceOf(WorkerCrashedException);
    expect(error).to.include({ code: 'ERR_WORKER_CRASHED', nodeId: 'exit', pipelineId: 'quits', exitCode: 5 });
    expect(executor.stats().crashes).to.equal(1);
    expect(await executor.executePipeline({ nodes: [{ id: 'next', module: sleepAdd }], initialInput: 1 })).to.equal(2);
  });

  for (const { what, exported, nodeId, cause } of [
    { what: 'an error thrown from a timer', exported: 'throwLater', nodeId: 'leaves-a-timer', cause: Error },
    { what: 'an unhandled rejection', exported: 'rejectLater', nodeId: 'leaves-a-promise', cause: RangeError },
  ]) {
    it(`${what} after the node returned fails its run, naming that node`, async () => {
      const executor = newExecutor({ threads: 1 });
      const error = (await withBystanders(
        () =>
          rejection(
            executor.executePipeline({
              nodes: [
                { id: nodeId, module: faults, export: exported, params: { ms: 40 } },
                { id: 'still-running', module: fixture('notify-then-wait.js'), params: { ms: 5_000 } },
              ],
              initialInput: 0,
            }),
          ),
        executor,
      )) as WorkerCrashedException;
      expect(error).to.be.instanceOf(WorkerCrashedException);
      expect(error.nodeId).to.equal(nodeId);
      expect(error.cause).to.be.instanceOf(cause);
    });
  }

  it('a node that runs out of memory under resourceLimits fails its run; others are unaffected', async () => {
    const executor = newExecutor({ threads: 1, resourceLimits: { maxOldGenerationSizeMb: 64 } });
    const error = (await withBystanders(
      () => rejection(executor.executePipeline({ nodes: [{ id: 'greedy', module: faults, export: 'exhaustMemory', params: {} }] })),
      executor,
    )) as WorkerCrashedException;
    expect(error).to.be.instanceOf(WorkerCrashedException);
    expect(error.nodeId).to.equal('greedy');
    expect((error.cause as { code?: string }).code).to.equal('ERR_WORKER_OUT_OF_MEMORY');
  });

  it("never crashes the process through the pool's error event", async () => {
    const executor = newExecutor({ threads: 1 });
    const exited = once(executor, 'threadExit');
    // A thread that dies with no task on it: its last node left a timer that throws.
    const result = await executor.executePipeline({ nodes: [{ id: 'n', module: faults, export: 'throwLater', params: { ms: 30 } }], initialInput: 0 });
    expect(result).to.equal(1);
    const [info] = (await exited) as [ThreadExit];
    expect(info).to.include({ reason: 'crashed', exitCode: 1, nodeId: 'n' });
    expect(executor.stats().crashes).to.equal(1);
    expect(await executor.executePipeline({ nodes: [{ id: 'next', module: sleepAdd }], initialInput: 1 })).to.equal(2);
  });
});
