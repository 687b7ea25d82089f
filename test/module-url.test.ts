import { expect } from 'chai';
import { pathToFileURL } from 'node:url';
import { PipelineDefinitionError } from '../src/index';
import { fixture, rejection, useExecutors } from './helpers';

describe('a module given as a URL object', () => {
  const newExecutor = useExecutors();

  it('runs as its href does, and plans as its href does', async () => {
    const executor = newExecutor({ threads: 1 });
    const module = new URL(pathToFileURL(fixture('ops.mjs')).href);
    expect(await executor.executePipeline({ nodes: [{ id: 'a', module, export: 'double' }], initialInput: 4 })).to.equal(8);
    expect(await executor.executePipeline({ nodes: [{ id: 'a', module: module.href, export: 'double' }], initialInput: 5 })).to.equal(10);
  });

  it('is refused unless it is a file: URL, and when its file does not exist', async () => {
    const executor = newExecutor({ threads: 1 });
    const remote = await rejection(executor.executePipeline({ nodes: [{ id: 'a', module: new URL('https://example.com/nodes.js') }] }));
    expect(remote).to.be.instanceOf(PipelineDefinitionError);
    expect((remote as Error).message).to.equal(
      'Node "a" names its module by a https: URL (https://example.com/nodes.js); give an absolute path or a file: URL',
    );
    const missing = await rejection(executor.executePipeline({ nodes: [{ id: 'a', module: pathToFileURL('/nowhere/nodes.js') }] }));
    expect(missing).to.be.instanceOf(PipelineDefinitionError);
    expect((missing as Error).message).to.equal('Module of node "a" does not exist: /nowhere/nodes.js');
  });
});
