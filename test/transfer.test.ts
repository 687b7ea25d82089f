import { expect } from 'chai';
import { CancellationException, NodeOutputError, PipelineDefinitionError, transfer } from '../src/index';
import { COMPLETED, Probe, STARTED, fixture, rejection, useExecutors } from './helpers';

const buffers = fixture('buffers.js');

describe('zero-copy data', () => {
  const newExecutor = useExecutors();

  it('moves a node output marked with transfer() instead of copying it', async () => {
    const executor = newExecutor();
    const probe = new Probe();
    const result = await executor.executePipeline<Uint8Array>({
      nodes: [{ id: 'move', module: buffers, export: 'moveAndCheck', params: { probe: probe.buffer } }],
    });
    expect(result).to.be.instanceOf(Uint8Array);
    expect(result.length).to.equal(1024);
    expect(result.every((byte) => byte === 7)).to.equal(true);
    // The node's own buffer is detached once it moved: it was not copied.
    await probe.until(COMPLETED);
  });

  it('moves a run input marked with transfer(): the caller no longer holds it', async () => {
    const executor = newExecutor();
    const input = new Uint8Array(1 << 20).fill(1);
    const result = await executor.executePipeline<number>({ nodes: [{ id: 'sum', module: buffers, export: 'sum' }], initialInput: transfer(input) });
    expect(result).to.equal(1 << 20);
    expect(input.byteLength, 'the input was copied').to.equal(0);
  });

  it('passes moved data along a chain and back', async () => {
    const executor = newExecutor();
    const result = await executor.executePipeline<Uint8Array>({
      nodes: [
        { id: 'fill', module: buffers, export: 'fill', params: { size: 16 << 20, value: 1 } },
        { id: 'add-1', module: buffers, export: 'addOne' },
        { id: 'add-2', module: buffers, export: 'addOne' },
      ],
    });
    expect(result.length).to.equal(16 << 20);
    expect(result[0]).to.equal(3);
    expect(result[result.length - 1]).to.equal(3);
  });

  it('passes moved data from one segment to the next and copies it to several consumers', async () => {
    const executor = newExecutor();
    const result = await executor.executePipeline<Record<string, number>>({
      nodes: [
        { id: 'fill', module: buffers, export: 'fill', params: { size: 1000, value: 2 } },
        { id: 'a', module: buffers, export: 'sum', dependsOn: ['fill'] },
        { id: 'b', module: buffers, export: 'sum', dependsOn: ['fill'] },
      ],
    });
    expect(result).to.deep.equal({ a: 2000, b: 2000 });
  });

  it('lists a moved-on output among the completed nodes but not the partial results', async () => {
    const executor = newExecutor();
    const probe = new Probe();
    const handle = executor.startPipeline({
      nodes: [
        { id: 'fill', module: buffers, export: 'fill', params: { size: 8, value: 1 } },
        { id: 'add', module: buffers, export: 'addOne' },
        { id: 'wait', module: fixture('honour-signal.js'), params: { probe: probe.buffer } },
      ],
    });
    await probe.until(STARTED);
    handle.cancel();
    const error = (await rejection(handle.result)) as CancellationException;
    expect(error.completedNodes).to.deep.equal(['fill', 'add']);
    expect(error.partialResults).to.deep.equal({});
  });

  it('refuses what cannot cross threads with a typed error naming the node', async () => {
    const executor = newExecutor({ threads: 1 });
    const error = (await rejection(
      executor.executePipeline({ nodes: [{ id: 'point', module: fixture('faults.js'), export: 'returnClassInstance' }] }),
    )) as NodeOutputError;
    expect(error).to.be.instanceOf(NodeOutputError);
    expect(error.nodeId).to.equal('point');
    expect(error.message).to.include('an instance of Point, whose methods would be lost');

    class Job {
      run(): void {}
    }
    const input = await rejection(executor.executePipeline({ nodes: [{ id: 'takes', module: buffers, export: 'sum' }], initialInput: new Job() }));
    expect(input).to.be.instanceOf(PipelineDefinitionError);
    expect((input as Error).message).to.include('(for "takes") cannot cross threads: it is an instance of Job');
  });

  it('transfer() refuses a value with nothing to move', () => {
    expect(() => transfer({ a: 1 })).to.throw(TypeError, 'transfer() takes an ArrayBuffer');
    expect(() => transfer(42)).to.throw(TypeError);
    const held = { pixels: new Uint8Array(4), meta: 'x' };
    expect(transfer(held)).to.equal(held);
  });
});
