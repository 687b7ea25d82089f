/**
 * Shared runs (`dedupeKey`): calls with the key of a run in flight join it, settle as
 * it does, and leave it one by one; the run stops only when every caller has cancelled.
 */
import { expect } from 'chai';
import { CancellationException } from '../src/index';
import { Gates } from './gates';
import { fixture, rejection, useExecutors } from './helpers';

describe('shared runs (dedupeKey)', function () {
  this.timeout(60_000);
  const create = useExecutors();

  it('joins a run in flight with the same key: one run, the same result for every caller', async () => {
    const executor = create({ threads: 1 });
    const gates = new Gates();
    const request = { nodes: [gates.node('wait')], initialInput: { photo: 17 }, dedupeKey: 'photo-17' };
    const first = executor.executePipeline(request);
    await gates.started(1);
    const second = executor.executePipeline(request);
    const third = executor.startPipeline(request);
    const other = executor.executePipeline({ ...request, dedupeKey: 'photo-18' });
    await gates.started(2);
    expect(third.runId).to.be.a('string');
    expect(executor.stats()).to.include({ sharedRuns: 2, runsJoined: 2, runsInFlight: 2 });
    gates.open();
    const [a, b, c, d] = await Promise.all([first, second, third.result, other]);
    expect(a).to.deep.equal({ photo: 17 });
    expect(b).to.equal(a);
    expect(c).to.equal(a);
    expect(d).to.not.equal(a);
    expect(gates.startedCount).to.equal(2);
    expect(executor.stats()).to.include({ sharedRuns: 0, runsJoined: 2, runsInFlight: 0 });
    expect(executor.stats().runs.success).to.equal(2);

    // Once the run has settled, the key starts a new one.
    const again = executor.executePipeline(request);
    await gates.started(3);
    expect(await again).to.deep.equal({ photo: 17 });
  });

  it('gives every caller the same error', async () => {
    const executor = create({ threads: 1 });
    const gates = new Gates();
    const nodes = [gates.node('wait'), { id: 'fail', module: fixture('throw-custom.js'), export: 'custom' }];
    const first = executor.executePipeline({ nodes, dedupeKey: 'k' });
    await gates.started(1);
    const second = executor.executePipeline({ nodes, dedupeKey: 'k' });
    gates.open();
    const [a, b] = await Promise.all([rejection(first), rejection(second)]);
    expect((a as Error).name).to.equal('ValidationError');
    expect(b).to.equal(a);
    expect(executor.stats().runs.error).to.equal(1);
  });

  it("cancelling one caller's handle or signal detaches that caller only; the run goes on for the others", async () => {
    const executor = create({ threads: 1 });
    const gates = new Gates();
    const request = { nodes: [gates.node('wait')], initialInput: 5, dedupeKey: 'k' };
    const first = executor.startPipeline(request);
    await gates.started(1);
    const controller = new AbortController();
    const second = executor.executePipeline({ ...request, signal: controller.signal });
    const third = executor.executePipeline(request);
    first.cancel('not needed any more');
    controller.abort('gone too');
    const [left, alsoLeft] = await Promise.all([rejection(first.result), rejection(second)]);
    expect(left).to.be.instanceOf(CancellationException);
    expect((left as CancellationException).reason).to.equal('not needed any more');
    expect((alsoLeft as CancellationException).reason).to.equal('gone too');
    expect((left as CancellationException).runId).to.equal(first.runId);
    // The run is still in flight for the third caller; its node was never asked to stop.
    expect(executor.stats()).to.include({ sharedRuns: 1, runsInFlight: 1 });
    gates.open();
    expect(await third).to.equal(5);
    expect(gates.abortedCount).to.equal(0);
    expect(executor.stats().runs).to.include({ success: 1, cancelled: 0 });
  });

  it('stops the run once every caller has cancelled', async () => {
    const executor = create({ threads: 1 });
    const gates = new Gates();
    const request = { nodes: [gates.node('wait')], dedupeKey: 'k' };
    const controller = new AbortController();
    const first = executor.startPipeline({ ...request, signal: controller.signal });
    await gates.started(1);
    const second = executor.startPipeline(request);
    second.cancel('second');
    expect(await rejection(second.result)).to.be.instanceOf(CancellationException);
    controller.abort('first');
    const error = await rejection(first.result);
    expect(error).to.be.instanceOf(CancellationException);
    expect((error as CancellationException).reason).to.equal('first');
    expect(gates.abortedCount).to.equal(1);
    expect(executor.stats()).to.include({ sharedRuns: 0, runsInFlight: 0 });
    expect(executor.stats().runs.cancelled).to.equal(1);
    // A caller whose signal had aborted before the call never joins.
    const aborted = AbortSignal.abort('early');
    const late = executor.executePipeline({ ...request, signal: aborted });
    expect(((await rejection(late)) as CancellationException).reason).to.equal('early');
    expect(gates.startedCount).to.equal(1);
  });
});
