import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fixture } from './helpers';

const root = join(__dirname, '..');

/** Runs a script in a fresh Node process against the built package (`npm run build`). */
function runNode(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const child = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', timeout: 30_000 });
  return { status: child.status, stdout: child.stdout, stderr: child.stderr };
}

describe('the built package', () => {
  it('works through require(), and the process exits by itself after close()', () => {
    const script = `
      const { PipelineExecutor, NodeTimeoutException } = require('lukhas-orchestrator');
      (async () => {
        const executor = new PipelineExecutor({ threads: 1 });
        const result = await executor.executePipeline({ nodes: [{ id: 'a', module: ${JSON.stringify(fixture('sleep-add.js'))} }], initialInput: 1 });
        await executor.close();
        console.log(JSON.stringify({ result, errors: typeof NodeTimeoutException }));
      })();`;
    const child = runNode(['-e', script]);
    expect(child.stderr).to.equal('');
    expect(child.status).to.equal(0);
    expect(JSON.parse(child.stdout)).to.deep.equal({ result: 2, errors: 'function' });
  });

  it('works through import with named exports', () => {
    const script = `
      import { PipelineExecutor, CancellationException } from 'lukhas-orchestrator';
      const executor = new PipelineExecutor({ threads: 1 });
      const result = await executor.executePipeline({ nodes: [{ id: 'a', module: ${JSON.stringify(fixture('ops.mjs'))}, export: 'double' }], initialInput: 21 });
      await executor.close();
      console.log(JSON.stringify({ result, errors: typeof CancellationException }));`;
    const child = runNode(['--input-type=module', '-e', script]);
    expect(child.stderr).to.equal('');
    expect(child.status).to.equal(0);
    expect(JSON.parse(child.stdout)).to.deep.equal({ result: 42, errors: 'function' });
  });

  it('starts nothing when merely imported', () => {
    const script = `
      require('lukhas-orchestrator');
      // stdout is a pipe or a terminal; anything else would be ours.
      const handles = process.getActiveResourcesInfo().filter((name) => name !== 'TTYWrap' && name !== 'PipeWrap');
      console.log(JSON.stringify(handles));`;
    const child = runNode(['-e', script]);
    expect(child.status).to.equal(0);
    expect(JSON.parse(child.stdout)).to.deep.equal([]);
  });

  it('loads neither bullmq nor ioredis unless the BullMQ backend is used', () => {
    const script = `
      const { PipelineExecutor } = require('lukhas-orchestrator');
      (async () => {
        const executor = new PipelineExecutor({ threads: 1 });
        await executor.executePipeline({ nodes: [{ id: 'a', module: ${JSON.stringify(fixture('sleep-add.js'))} }], initialInput: 1 });
        await executor.close();
        const loaded = Object.keys(require.cache).filter((file) => /node_modules[\\/](bullmq|ioredis)[\\/]/.test(file));
        console.log(JSON.stringify(loaded));
      })();`;
    const child = runNode(['-e', script]);
    expect(child.status).to.equal(0);
    expect(JSON.parse(child.stdout)).to.deep.equal([]);
  });
});
