import { expect } from 'chai';
import { once } from 'node:events';
import { CancellationException, ExecutorClosedException, NodeTimeoutException, PipelineExecutor, PipelineTimeoutException } from '../src/index';
import { ABORTED, COMPLETED, Probe, STARTED, fixture, rejection, useExecutors } from './helpers';

const sleepAdd = fixture('sleep-add.js');
const honour = fixture('honour-signal.js');

describe('run handles', () => {
  const newExecutor = useExecutors();

  it('startPipeline returns the run id, the result and a cancel', async () => {
    const executor = newExecutor();
    const probe = new Probe();
    const handle = executor.startPipeline({ pipelineId: 'h', nodes: [{ id: 'n', module: honour, params: { probe: probe.buffer } }] });
    expect(handle.runId).to.be.a('string');
    expect(handle.pipelineId).to.equal('h');
    await probe.until(STARTED);
    handle.cancel('enough');
    const error = (await rejection(handle.result)) as CancellationException;
    expect(error).to.be.instanceOf(CancellationException);
    expect(error).to.include({ runId: handle.runId, reason: 'enough' });
    expect(probe.get(ABORTED)).to.equal(1);
  });

  it('cancel() without a reason gives an AbortError, as AbortController.abort() does', async () => {
    const executor = newExecutor();
    const probe = new Probe();
    const handle = executor.startPipeline({ nodes: [{ id: 'n', module: honour, params: { probe: probe.buffer } }] });
    await probe.until(STARTED);
    handle.cancel();
    const error = (await rejection(handle.result)) as CancellationException;
    expect((error.reason as DOMException).name).to.equal('AbortError');
  });

  it('startPipeline throws a definition error at once', () => {
    const executor = newExecutor({ threads: 1 });
    expect(() => executor.startPipeline({ nodes: [] })).to.throw('has no nodes');
  });

  it('executor.cancel(id) cancels every run with that run id or pipeline id, and counts them', async () => {
    const executor = newExecutor();
    const probe = new Probe();
    const start = (pipelineId: string) =>
      executor.startPipeline({ pipelineId, nodes: [{ id: 'n', module: honour, params: { probe: probe.buffer } }] });
    const batch = [start('batch-7'), start('batch-7'), start('batch-7')];
    const other = start('batch-8');
    const lone = start('batch-9');
    await probe.until(STARTED, 5);
    // Nothing awaits the results yet: keep their rejections handled.
    for (const handle of [...batch, other, lone]) handle.result.catch(() => {});
    expect(executor.cancel('batch-7', 'batch withdrawn')).to.equal(3);
    expect(executor.cancel(lone.runId)).to.equal(1);
    expect(executor.cancel('no-such-id')).to.equal(0);
    for (const error of await Promise.all([...batch, lone].map((handle) => rejection(handle.result)))) {
      expect(error).to.be.instanceOf(CancellationException);
    }
    other.cancel();
    expect(await rejection(other.result)).to.be.instanceOf(CancellationException);
    expect(executor.cancel('batch-7')).to.equal(0);
  });

  it('a CancellationException carries the completed nodes and partial results', async () => {
    const executor = newExecutor();
    const probe = new Probe();
    const handle = executor.startPipeline({
      nodes: [
        { id: 'one', module: sleepAdd, params: { ms: 1 } },
        { id: 'two', module: sleepAdd, params: { ms: 1 } },
        { id: 'three', module: honour, params: { probe: probe.buffer } },
      ],
      initialInput: 40,
    });
    await probe.until(STARTED);
    handle.cancel();
    const error = (await rejection(handle.result)) as CancellationException;
    expect(error.completedNodes).to.deep.equal(['one', 'two']);
    expect(error.partialResults).to.deep.equal({ one: 41, two: 42 });
  });

  describe('cleanup handlers', () => {
    it('run once, in order, after the nodes stopped, before the run rejects', async () => {
      const executor = newExecutor({ timeouts: { cleanupGraceMs: 1_000 } });
      const probe = new Probe();
      const calls: string[] = [];
      const handle = executor.startPipeline({ nodes: [{ id: 'n', module: honour, params: { probe: probe.buffer } }] });
      handle.onCleanup(async (failure) => {
        expect(probe.get(ABORTED), 'the node had not stopped').to.equal(1);
        await new Promise((resolve) => setImmediate(resolve));
        calls.push(`first:${failure.name}`);
      });
      handle.onCleanup(() => {
        calls.push('second');
      });
      await probe.until(STARTED);
      handle.cancel();
      handle.cancel();
      expect(await rejection(handle.result)).to.be.instanceOf(CancellationException);
      expect(calls).to.deep.equal(['first:CancellationException', 'second']);
    });

    it('run on a node timeout and on a pipeline timeout, not on success or a node error', async () => {
      const executor = newExecutor({ timeouts: { cleanupGraceMs: 1_000 } });
      await executor.ready();
      const calls: string[] = [];
      const track = (label: string, request: Parameters<PipelineExecutor['startPipeline']>[0]) => {
        const handle = executor.startPipeline(request);
        handle.onCleanup((failure) => {
          calls.push(`${label}:${failure.name}`);
        });
        return handle.result.catch((error: unknown) => error);
      };
      const outcomes = await Promise.all([
        track('node', { nodes: [{ id: 'n', module: honour, params: {}, timeoutMs: 50 }] }),
        track('pipeline', { nodes: [{ id: 'n', module: honour, params: {} }], timeouts: { pipelineTimeoutMs: 80 } }),
        track('ok', { nodes: [{ id: 'n', module: sleepAdd }], initialInput: 0 }),
        track('error', { nodes: [{ id: 'n', module: fixture('throw-custom.js'), export: 'nodeFailed' }] }),
      ]);
      expect(outcomes[0]).to.be.instanceOf(NodeTimeoutException);
      expect(outcomes[1]).to.be.instanceOf(PipelineTimeoutException);
      expect(outcomes[2]).to.equal(1);
      expect(calls.sort()).to.deep.equal(['node:NodeTimeoutException', 'pipeline:PipelineTimeoutException']);
    });

    it('report a failing or overlong handler through cleanupError, and go on with the next', async () => {
      const executor = newExecutor({ timeouts: { cleanupGraceMs: 100 } });
      const probe = new Probe();
      const reported: string[] = [];
      executor.on('cleanupError', (error, info) => reported.push(`${(error as Error).message}@${info.runId === handle.runId}`));
      const handle = executor.startPipeline({ nodes: [{ id: 'n', module: honour, params: { probe: probe.buffer } }] });
      const ran: string[] = [];
      handle.onCleanup(() => {
        throw new Error('could not delete the temp dir');
      });
      handle.onCleanup(() => new Promise<void>(() => {})); // never settles
      handle.onCleanup(() => {
        ran.push('last');
      });
      await probe.until(STARTED);
      handle.cancel();
      expect(await rejection(handle.result)).to.be.instanceOf(CancellationException);
      expect(reported).to.have.length(2);
      expect(reported[0]).to.equal('could not delete the temp dir@true');
      expect(reported[1]).to.match(/did not finish within 100 ms@true$/);
      expect(ran).to.deep.equal(['last']);
    });

    it('report through a process warning when nobody listens', async () => {
      const executor = newExecutor();
      const probe = new Probe();
      const handle = executor.startPipeline({ nodes: [{ id: 'n', module: honour, params: { probe: probe.buffer } }] });
      handle.onCleanup(() => {
        throw new Error('lock already released');
      });
      const warned = once(process, 'warning');
      await probe.until(STARTED);
      handle.cancel();
      await rejection(handle.result);
      const [warning] = (await warned) as [Error & { code?: string }];
      expect(warning.name).to.equal('CleanupWarning');
      expect(warning.code).to.equal('LUKHAS_CLEANUP_FAILED');
      expect(warning.message).to.include('lock already released');
    });
  });
});

describe('shutdown', () => {
  const newExecutor = useExecutors();

  it('close() refuses new runs, lets runs in flight finish, then resolves', async () => {
    const executor = newExecutor();
    const running = executor.executePipeline({ nodes: [{ id: 'n', module: sleepAdd, params: { ms: 100 } }], initialInput: 1 });
    const closed = executor.close();
    expect(await rejection(executor.executePipeline({ nodes: [{ id: 'n', module: sleepAdd }] }))).to.be.instanceOf(
      ExecutorClosedException,
    );
    expect(() => executor.startPipeline({ nodes: [{ id: 'n', module: sleepAdd }] })).to.throw(ExecutorClosedException);
    expect(await running).to.equal(2);
    await closed;
    expect(executor.close()).to.equal(closed);
  });

  it('close() cancels the runs still in flight at its deadline, stopping their nodes', async () => {
    const executor = newExecutor({ closeTimeoutMs: 60_000, timeouts: { cleanupGraceMs: 20 } });
    const probe = new Probe();
    const stuck = executor.executePipeline({ nodes: [{ id: 'n', module: fixture('notify-then-wait.js'), params: { ms: 30_000, probe: probe.buffer } }] });
    await probe.until(STARTED);
    await executor.close({ timeoutMs: 50 });
    const error = (await rejection(stuck)) as CancellationException;
    expect(error).to.be.instanceOf(CancellationException);
    expect(error.reason).to.be.instanceOf(ExecutorClosedException);
    expect(probe.get(COMPLETED)).to.equal(0);
  });

  it('supports await using', async () => {
    let executor: PipelineExecutor | undefined;
    {
      await using scoped = new PipelineExecutor({ threads: 1 });
      executor = scoped;
      expect(await scoped.executePipeline({ nodes: [{ id: 'n', module: sleepAdd }], initialInput: 0 })).to.equal(1);
    }
    expect(await rejection(executor.executePipeline({ nodes: [{ id: 'n', module: sleepAdd }] }))).to.be.instanceOf(
      ExecutorClosedException,
    );
  });
});
