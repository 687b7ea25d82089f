import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture } from './helpers';

const root = join(__dirname, '..');

/**
 * Runs a script in a fresh Node process against the built package (`npm run build`);
 * `hide`: packages that process cannot find, as if they were not installed.
 */
function runNode(args: string[], hide: readonly string[] = []): { status: number | null; stdout: string; stderr: string } {
  const preload = hide.length === 0 ? [] : ['-r', fixture('without-peers.js')];
  const env = { ...process.env, LUKHAS_HIDE: hide.join(',') };
  const child = spawnSync(process.execPath, [...preload, ...args], { cwd: root, encoding: 'utf8', timeout: 30_000, env });
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

  it("declares its types with names of Node's types that every @types/node from 20 to 26 has", () => {
    // @types/node 24 and 26 dropped IntervalHistogram and TransferListItem: declarations
    // naming them do not compile there (without skipLibCheck). Check any name added here
    // against those versions first.
    const portable = ['AsyncLocalStorage', 'EventEmitter', 'MessagePort', 'ResourceLimits', 'Transferable', 'Worker'];
    const names = new Set<string>();
    for (const dir of ['dist/src', 'dist/workers']) {
      for (const file of readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith('.d.ts'))) {
        const text = readFileSync(join(root, dir, file), 'utf8');
        for (const [, list] of text.matchAll(/import(?: type)? \{([^}]*)\} from 'node:[^']+'/g)) {
          for (const name of list!.split(',')) names.add(name.trim().replace(/^type /, '').split(' as ')[0]!);
        }
        for (const [, name] of text.matchAll(/import\('node:[^']+'\)\.(\w+)/g)) names.add(name!);
      }
    }
    expect([...names].filter((name) => name !== '' && !portable.includes(name))).to.deep.equal([]);
  });

  it('declares bullmq and ioredis as optional peer dependencies, installed only for its own tests', () => {
    const manifest = require(join(root, 'package.json')) as Record<string, Record<string, unknown> | undefined>;
    expect(Object.keys(manifest.dependencies ?? {}).sort()).to.deep.equal(['@opentelemetry/api', 'piscina']);
    expect(manifest.peerDependencies).to.have.keys('bullmq', 'ioredis');
    expect(manifest.peerDependenciesMeta).to.deep.equal({ bullmq: { optional: true }, ioredis: { optional: true } });
    expect(manifest.devDependencies).to.include.keys('bullmq', 'ioredis');
  });

  it('runs pipelines on its embedded pool without bullmq and ioredis installed', () => {
    const script = `
      const { PipelineExecutor } = require('lukhas-orchestrator');
      (async () => {
        const executor = new PipelineExecutor({ threads: 1 });
        const result = await executor.executePipeline({ nodes: [{ id: 'a', module: ${JSON.stringify(fixture('sleep-add.js'))} }], initialInput: 1 });
        await executor.close();
        console.log(JSON.stringify(result));
      })();`;
    const child = runNode(['-e', script], ['bullmq', 'ioredis']);
    expect(child.stderr).to.equal('');
    expect(JSON.parse(child.stdout)).to.equal(2);
  });

  describe('without bullmq or ioredis installed, the BullMQ backend fails at once, naming what to install', () => {
    const describeError = `(error) => console.log(JSON.stringify({ name: error.name, code: error.code, packages: error.packages, message: error.message, cause: error.cause?.code }))`;

    it('bullmqBackend()', () => {
      const script = `
        const { bullmqBackend } = require('lukhas-orchestrator');
        try { bullmqBackend({ connection: 'redis://127.0.0.1:1' }); console.log('{}'); } catch (error) { (${describeError})(error); }`;
      const both = runNode(['-e', script], ['bullmq', 'ioredis']);
      expect(both.stderr).to.equal('');
      expect(JSON.parse(both.stdout)).to.deep.equal({
        name: 'MissingPackageError',
        code: 'ERR_MISSING_PACKAGE',
        packages: ['bullmq', 'ioredis'],
        message:
          'The BullMQ backend needs bullmq and ioredis, which are not installed: run `npm install bullmq ioredis` ' +
          '(optional peer dependencies of lukhas-orchestrator; the embedded pool does without them)',
        cause: 'MODULE_NOT_FOUND',
      });
      const one = runNode(['-e', script], ['ioredis']);
      expect(JSON.parse(one.stdout)).to.include({ code: 'ERR_MISSING_PACKAGE' }).and.to.have.property('message').that.includes('needs ioredis, which is not installed: run `npm install ioredis`');
    });

    it('startWorker()', () => {
      const script = `
        const { startWorker } = require('lukhas-orchestrator');
        startWorker({ connection: 'redis://127.0.0.1:1', moduleRoots: [require('node:os').tmpdir()] }).then(() => console.log('{}'), ${describeError});`;
      const child = runNode(['-e', script], ['bullmq']);
      expect(child.stderr).to.equal('');
      expect(JSON.parse(child.stdout)).to.include({ code: 'ERR_MISSING_PACKAGE' }).and.to.have.deep.property('packages', ['bullmq']);
    });

    it('the command line', () => {
      const child = runNode([join(root, 'dist', 'src', 'cli.js'), 'worker', '--redis', 'redis://127.0.0.1:1', '--module-root', tmpdir()], ['bullmq', 'ioredis']);
      expect(child.status).to.equal(1);
      expect(child.stdout).to.equal('');
      expect(child.stderr).to.include('A worker process of the BullMQ backend needs bullmq and ioredis, which are not installed: run `npm install bullmq ioredis`');
    });
  });
});
