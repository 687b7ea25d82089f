import { expect } from 'chai';
import { pathToFileURL } from 'node:url';
import { fixture, useExecutors } from './helpers';

const ops = fixture('ops.mjs');

describe('data flow', () => {
  const newExecutor = useExecutors();

  it('runs a chain in list order, each node taking the previous output', async () => {
    const executor = newExecutor();
    const result = await executor.executePipeline({
      nodes: [
        { id: 'add', module: fixture('sleep-add.js'), params: { ms: 1 } },
        { id: 'double', module: ops, export: 'double' },
        { id: 'triple', module: ops, export: 'double', params: { factor: 3 } },
        { id: 'increment', module: ops },
      ],
      initialInput: 4,
    });
    expect(result).to.equal((4 + 1) * 2 * 3 + 1);
  });

  it('loads CommonJS, ESM (by path and by file: URL) and TypeScript modules', async () => {
    const executor = newExecutor();
    const result = await executor.executePipeline({
      nodes: [
        { id: 'cjs', module: fixture('sleep-add.js'), params: { ms: 1 } },
        { id: 'esm', module: pathToFileURL(ops).href, export: 'double' },
        { id: 'ts', module: fixture('typed-node.ts'), params: { offset: 1 } },
      ],
      initialInput: 1,
    });
    expect(result).to.equal(((1 + 1) * 2) ** 2 + 1);
  });

  it('gives each node its context: ids, params, a live signal, a run id unique per call', async () => {
    const executor = newExecutor();
    const request = {
      pipelineId: 'ctx',
      nodes: [{ id: 'describe', module: ops, export: 'describe', params: { colour: 'blue' } }],
      initialInput: 'x',
    };
    type Described = { input: string; nodeId: string; pipelineId: string; runId: string; params: unknown; aborted: boolean };
    const [first, second] = await Promise.all([
      executor.executePipeline<Described>(request),
      executor.executePipeline<Described>(request),
    ]);
    expect(first).to.include({ input: 'x', nodeId: 'describe', pipelineId: 'ctx', aborted: false });
    expect(first.params).to.deep.equal({ colour: 'blue' });
    expect(first.runId).to.be.a('string').with.length.above(8);
    expect(second.runId).to.not.equal(first.runId);
  });

  it('feeds a DAG: roots take the input, one dependency its output, several a map by id', async () => {
    const executor = newExecutor();
    // a: 1 + 1 = 2; b: 2 * 2 = 4; c: 2 * 3 = 6; d: 4 + 6 = 10
    const result = await executor.executePipeline({
      nodes: [
        { id: 'a', module: ops },
        { id: 'b', module: ops, export: 'double', dependsOn: ['a'] },
        { id: 'c', module: ops, export: 'double', params: { factor: 3 }, dependsOn: ['a'] },
        { id: 'd', module: ops, export: 'sum', dependsOn: ['b', 'c'] },
      ],
      initialInput: 1,
    });
    expect(result).to.equal(10);
  });

  it('names the inputs of a node with several dependencies by their ids', async () => {
    const executor = newExecutor();
    const result = await executor.executePipeline({
      nodes: [
        { id: 'left', module: ops },
        { id: 'right', module: ops },
        { id: 'join', module: ops, export: 'keys', dependsOn: ['right', 'left'] },
      ],
      initialInput: 0,
    });
    expect(result).to.deep.equal(['left', 'right']);
  });

  it('returns { [sinkId]: output } when a DAG has several sinks', async () => {
    const executor = newExecutor();
    const result = await executor.executePipeline({
      nodes: [
        { id: 'root', module: ops },
        { id: 'x2', module: ops, export: 'double', dependsOn: ['root'] },
        { id: 'x5', module: ops, export: 'double', params: { factor: 5 }, dependsOn: ['root'] },
      ],
      initialInput: 1,
    });
    expect(result).to.deep.equal({ x2: 4, x5: 10 });
  });

  it('runs nodes whose dependencies are met at the same time', async () => {
    const executor = newExecutor({ threads: 1 });
    const rendezvous = new SharedArrayBuffer(4);
    const branch = (id: string) => ({
      id,
      module: fixture('rendezvous.js'),
      params: { probe: rendezvous, parties: 3 },
      dependsOn: ['start'],
    });
    // Each branch waits until all three have started: run one after another, they would fail.
    const result = await executor.executePipeline({
      nodes: [{ id: 'start', module: ops }, branch('p'), branch('q'), branch('r')],
      initialInput: 0,
    });
    expect(result).to.deep.equal({ p: 'p', q: 'q', r: 'r' });
  });

  it('runs independent pipelines concurrently on shared threads', async () => {
    const executor = newExecutor({ threads: 1 });
    const rendezvous = new SharedArrayBuffer(4);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        executor.executePipeline({
          pipelineId: `p${i}`,
          nodes: [{ id: `n${i}`, module: fixture('rendezvous.js'), params: { probe: rendezvous, parties: 20 } }],
        }),
      ),
    );
    expect(results).to.deep.equal(Array.from({ length: 20 }, (_, i) => `n${i}`));
  });

  it('passes binary data through the nodes intact', async () => {
    const executor = newExecutor();
    const input = new Uint8Array(1 << 20).map((_, i) => i % 251);
    const result = await executor.executePipeline<Uint8Array>({
      nodes: [{ id: 'same', module: fixture('identity.js') }, { id: 'again', module: fixture('identity.js') }],
      initialInput: input,
    });
    expect(result).to.be.instanceOf(Uint8Array);
    expect(Buffer.compare(Buffer.from(result), Buffer.from(input))).to.equal(0);
  });
});
