import { expect } from 'chai';
import { pathToFileURL } from 'node:url';
import { defineNode, nodeModule } from '../src/index';
import type * as ops from './fixtures/typed-ops';
import { fixture, useExecutors } from './helpers';

const path = fixture('typed-ops.ts');
const url = pathToFileURL(path);

describe('typed node definitions', () => {
  const newExecutor = useExecutors();

  it('defineNode returns the definition as given, and a chain of them runs', async () => {
    const definition = { id: 'parse', module: path, export: 'parse' };
    const parse = defineNode<typeof ops.parse>(definition);
    expect(parse).to.equal(definition);
    const sum = defineNode<typeof ops.sum>({ id: 'sum', module: path, export: 'sum' });
    const total = await newExecutor({ threads: 1 }).executePipeline({ nodes: [parse, sum], initialInput: '1,2,3' });
    expect(total).to.equal(6);
  });

  it('nodeModule defines plain definitions: the id is the export unless given', () => {
    const nodes = nodeModule<typeof ops>(url);
    expect(nodes.module).to.equal(url);
    expect(nodes.node('parse')).to.deep.equal({ id: 'parse', module: url, export: 'parse' });
    expect(nodes.node('scale', { id: 'x2', params: { factor: 2 }, dependsOn: ['parse'], retries: 1 })).to.deep.equal({
      id: 'x2',
      module: url,
      export: 'scale',
      params: { factor: 2 },
      dependsOn: ['parse'],
      retries: 1,
    });
  });

  it('a DAG of nodeModule nodes runs, its module given as a URL object', async () => {
    const nodes = nodeModule<typeof ops>(url);
    const parse = nodes.node('parse');
    const total = nodes.node('sum', { id: 'total', dependsOn: ['parse'] });
    const scaled = nodes.node('scale', { id: 'scaled', dependsOn: ['parse'], params: { factor: 10 } });
    const both = nodes.node('describe', { dependsOn: ['total', 'scaled'] });
    const executor = newExecutor({ threads: 2 });
    const request = { nodes: [parse, total, scaled, both], initialInput: '1,2' } as const;
    expect(await executor.executePipeline(request)).to.equal('3/10,20');
    // Again, from the plan planned for the first run.
    expect(await executor.executePipeline(request)).to.equal('3/10,20');
    const sinks = await executor.executePipeline({ nodes: [parse, total, scaled], initialInput: '4' });
    expect(sinks).to.deep.equal({ total: 4, scaled: [40] });
  });
});
