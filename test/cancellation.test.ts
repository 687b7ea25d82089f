import { expect } from 'chai';
import { getEventListeners } from 'node:events';
import { CancellationException, NodeTimeoutException } from '../src/index';
import { ABORTED, CLEANUP, COMPLETED, Probe, RUNS, STARTED, fixture, rejection, useExecutors } from './helpers';

const sleepAdd = fixture('sleep-add.js');

describe('cancellation', () => {
  const newExecutor = useExecutors();

  it("aborts the running node's ctx.signal; a node that honours it stops and cleans up", async () => {
    const executor = newExecutor({ timeouts: { cleanupGraceMs: 5_000 } });
    const probe = new Probe();
    const controller = new AbortController();
    const run = executor.executePipeline({
      pipelineId: 'polite',
      nodes: [{ id: 'listens', module: fixture('honour-signal.js'), params: { probe: probe.buffer } }],
      signal: controller.signal,
    });
    await probe.until(STARTED);
    const reason = new Error('user closed the tab');
    controller.abort(reason);
    const error = (await rejection(run)) as CancellationException;
    expect(error).to.be.instanceOf(CancellationException);
    expect(error.reason).to.equal(reason);
    expect(error.pipelineId).to.equal('polite');
    expect(probe.get(ABORTED)).to.equal(1);
    expect(probe.get(CLEANUP)).to.equal(1);
    expect(executor.stats().terminations).to.equal(0);
  });

  it('terminates the thread of a node that ignores it, after the grace period', async () => {
    const executor = newExecutor({ timeouts: { cleanupGraceMs: 30 } });
    const probe = new Probe();
    const controller = new AbortController();
    const run = executor.executePipeline({
      nodes: [{ id: 'deaf', module: fixture('notify-then-spin.js'), params: { probe: probe.buffer } }],
      signal: controller.signal,
    });
    await probe.until(STARTED);
    controller.abort();
    expect(await rejection(run)).to.be.instanceOf(CancellationException);
    expect(executor.stats().terminations).to.equal(1);
  });

  it('never starts the nodes after the one running, and reports the completed ones', async () => {
    const executor = newExecutor();
    const running = new Probe();
    const later = new Probe();
    const controller = new AbortController();
    const run = executor.executePipeline({
      nodes: [
        { id: 'first', module: sleepAdd, params: { ms: 1 } },
        { id: 'second', module: fixture('honour-signal.js'), params: { probe: running.buffer } },
        { id: 'third', module: sleepAdd, params: { probe: later.buffer } },
      ],
      initialInput: 0,
      signal: controller.signal,
    });
    await running.until(STARTED);
    controller.abort('stop');
    const error = (await rejection(run)) as CancellationException;
    expect(error.completedNodes).to.deep.equal(['first']);
    expect(error.partialResults).to.deep.equal({ first: 1 });
    expect(later.get(RUNS)).to.equal(0);
  });

  it('rejects at once for an already-aborted signal, starting no node', async () => {
    const executor = newExecutor();
    const probe = new Probe();
    const signal = AbortSignal.abort('too late');
    const error = (await rejection(
      executor.executePipeline({ nodes: [{ id: 'n', module: sleepAdd, params: { probe: probe.buffer } }], signal }),
    )) as CancellationException;
    expect(error).to.be.instanceOf(CancellationException);
    expect(error.reason).to.equal('too late');
    expect(error.completedNodes).to.deep.equal([]);
    expect(probe.get(RUNS)).to.equal(0);
  });

  it('leaves no abort listener on a signal shared by many runs', async () => {
    const executor = newExecutor({ timeouts: { nodeTimeoutMs: 100, cleanupGraceMs: 20 } });
    const controller = new AbortController();
    const { signal } = controller;
    const ok = Array.from({ length: 30 }, () =>
      executor.executePipeline({ nodes: [{ id: 'ok', module: sleepAdd, params: { ms: 1 } }], initialInput: 0, signal }),
    );
    const failing = rejection(
      executor.executePipeline({ nodes: [{ id: 'bad', module: fixture('throw-custom.js'), export: 'nodeFailed' }], signal }),
    );
    const timingOut = rejection(executor.executePipeline({ nodes: [{ id: 'slow', module: fixture('honour-signal.js'), params: {} }], signal }));
    expect(getEventListeners(signal, 'abort').length).to.be.at.least(1);
    await Promise.all(ok);
    expect(await failing).to.have.property('message', 'Node failed');
    expect(await timingOut).to.be.instanceOf(NodeTimeoutException);
    expect(getEventListeners(signal, 'abort')).to.have.length(0);

    const probe = new Probe();
    const cancelled = Array.from({ length: 10 }, () =>
      rejection(
        executor.executePipeline({
          nodes: [{ id: 'long', module: fixture('honour-signal.js'), params: { probe: probe.buffer } }],
          signal,
          timeouts: { nodeTimeoutMs: Infinity },
        }),
      ),
    );
    await probe.until(STARTED, 10);
    controller.abort();
    for (const error of await Promise.all(cancelled)) expect(error).to.be.instanceOf(CancellationException);
    expect(getEventListeners(signal, 'abort')).to.have.length(0);
  });

  it('does not fail the runs that shared a terminated thread', async () => {
    const executor = newExecutor({ threads: 1, timeouts: { nodeTimeoutMs: 10_000, cleanupGraceMs: 20 } });
    const healthy = new Probe();
    const runs = Array.from({ length: 20 }, (_, i) =>
      executor.executePipeline({
        nodes: [
          { id: 'a', module: fixture('sleep-add.js'), params: { ms: 200, probe: healthy.buffer } },
          { id: 'b', module: fixture('sleep-add.js'), params: { ms: 1 } },
        ],
        initialInput: i,
      }),
    );
    await healthy.until(STARTED, 20);
    const spinner = new Probe();
    const controller = new AbortController();
    const doomed = executor.executePipeline({
      nodes: [{ id: 'spin', module: fixture('notify-then-spin.js'), params: { probe: spinner.buffer } }],
      signal: controller.signal,
    });
    await spinner.until(STARTED);
    controller.abort();
    expect(await rejection(doomed)).to.be.instanceOf(CancellationException);
    expect(await Promise.all(runs)).to.deep.equal(Array.from({ length: 20 }, (_, i) => i + 2));
    expect(executor.stats().terminations).to.equal(1);
    expect(executor.stats().resends).to.equal(20);
    expect(healthy.get(COMPLETED)).to.equal(20);
  });
});
