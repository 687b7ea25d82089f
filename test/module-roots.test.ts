/**
 * `moduleRoots` of the embedded executor: a node runs only a file inside the roots, after
 * `..` and symbolic links are resolved; anything else fails the run's definition check,
 * naming the node and the module, before anything is loaded.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PipelineDefinitionError, PipelineExecutor, bullmqBackend } from '../src/index';
import { rejection, useExecutors } from './helpers';

describe('module roots (embedded executor)', () => {
  const newExecutor = useExecutors();
  let base: string;
  let root: string;
  let outside: string;
  /** A file the modules outside the root create when they are loaded. */
  let sideEffect: string;

  /** A module that creates `sideEffect` as it loads, and returns its input + 1. */
  const module = (dir: string, name: string): string => {
    const path = join(dir, name);
    writeFileSync(path, `require('node:fs').writeFileSync(${JSON.stringify(sideEffect)}, 'loaded');\nmodule.exports = (input) => input + 1;\n`);
    return path;
  };

  before(() => {
    base = mkdtempSync(join(tmpdir(), 'lukhas-roots-'));
    root = join(base, 'root');
    outside = join(base, 'outside');
    mkdirSync(root);
    mkdirSync(outside);
    sideEffect = join(base, 'loaded');
  });

  afterEach(() => rmSync(sideEffect, { force: true }));
  after(() => rmSync(base, { recursive: true, force: true }));

  /** The run fails with a PipelineDefinitionError naming the node and the module, and nothing was loaded. */
  async function expectRefused(executor: PipelineExecutor, moduleName: string, pattern: RegExp): Promise<void> {
    const error = await rejection(executor.executePipeline({ pipelineId: 'p', nodes: [{ id: 'step', module: moduleName }], initialInput: 1 }));
    expect(error).to.be.instanceOf(PipelineDefinitionError);
    expect((error as PipelineDefinitionError).nodeId).to.equal('step');
    expect((error as Error).message).to.include(moduleName).and.match(pattern);
    expect(existsSync(sideEffect), 'the module was loaded').to.equal(false);
  }

  it('runs a module inside a root, by path or file: URL', async () => {
    const inside = module(root, 'inside.js');
    const executor = newExecutor({ threads: 1, moduleRoots: [root] });
    expect(await executor.executePipeline({ nodes: [{ id: 'a', module: inside }, { id: 'b', module: pathToFileURL(inside).href }], initialInput: 1 })).to.equal(3);
  });

  it('refuses a package name, a node: built-in and a relative path', async () => {
    const executor = newExecutor({ threads: 1, moduleRoots: [root] });
    await expectRefused(executor, 'child_process', /package name/);
    await expectRefused(executor, 'node:child_process', /relative path or a package name/);
    await expectRefused(executor, './root/inside.js', /relative path/);
  });

  it('refuses a path outside the roots, and one that leaves them through ..', async () => {
    const away = module(outside, 'away.js');
    const executor = newExecutor({ threads: 1, moduleRoots: [root] });
    await expectRefused(executor, away, /outside the module roots/);
    await expectRefused(executor, join(root, '..', 'outside', 'away.js'), /outside the module roots/);
  });

  it('follows symbolic links: one inside a root that leads out is refused, one that stays in runs', async () => {
    const away = module(outside, 'linked-away.js');
    const link = join(root, 'link-out.js');
    symlinkSync(away, link);
    const executor = newExecutor({ threads: 1, moduleRoots: [root] });
    await expectRefused(executor, link, /outside the module roots/);
    // A root given through a link is its real path: the same files are inside.
    const linkedRoot = join(base, 'linked-root');
    symlinkSync(root, linkedRoot);
    const viaLink = newExecutor({ threads: 1, moduleRoots: [linkedRoot] });
    const inside = module(root, 'inside-link.js');
    expect(await viaLink.executePipeline({ nodes: [{ id: 'a', module: join(linkedRoot, 'inside-link.js') }], initialInput: 1 })).to.equal(2);
    expect(await viaLink.executePipeline({ nodes: [{ id: 'a', module: inside }], initialInput: 2 })).to.equal(3);
  });

  it('a module allowed without roots, or under other roots, is still refused under these (no cache lets it through)', async () => {
    const away = module(outside, 'cached.js');
    const definition = { pipelineId: 'p', nodes: [{ id: 'step', module: away }], initialInput: 1 };
    expect(await newExecutor({ threads: 1 }).executePipeline(definition)).to.equal(2);
    expect(await newExecutor({ threads: 1, moduleRoots: [outside] }).executePipeline(definition)).to.equal(2);
    rmSync(sideEffect);
    await expectRefused(newExecutor({ threads: 1, moduleRoots: [root] }), away, /outside the module roots/);
  });

  it('names a bad moduleRoots option: not absolute, missing, not a directory, or with a backend', () => {
    expect(() => new PipelineExecutor({ moduleRoots: ['relative/dir'] })).to.throw(TypeError, /`moduleRoots` to be an absolute directory path, got `"relative\/dir"`/);
    expect(() => new PipelineExecutor({ moduleRoots: [join(base, 'missing')] })).to.throw(TypeError, /Module root ".*missing" of `moduleRoots` does not exist/);
    const file = module(root, 'a-file.js');
    expect(() => new PipelineExecutor({ moduleRoots: [file] })).to.throw(TypeError, /is not a directory/);
    expect(() => new PipelineExecutor({ moduleRoots: [] })).to.throw(TypeError, /non-empty array/);
    const backend = bullmqBackend({ connection: 'redis://127.0.0.1:1', secret: 'a-secret-of-16-bytes-or-more', log: () => {} });
    expect(() => new PipelineExecutor({ backend, moduleRoots: [root] })).to.throw(TypeError, /--module-root/);
  });
});
