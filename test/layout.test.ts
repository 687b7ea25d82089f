/**
 * The layout holds: no import cycles among the sources, what runs in a worker thread
 * imports only src/shared/, and no file grows past one concept.
 */
import { expect } from 'chai';
import { ESLint } from 'eslint';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..');
/** Files that may be longer: one concept each (a run's state machine). */
const LONG_ALLOWED = new Set(['src/run/scheduler.ts']);
const MAX_LINES = 450;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...sources(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** Relative imports of a file (`import ... from`, `export ... from`, `import()`, `require()`), as files. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const found: string[] = [];
  const pattern = /(?:from\s+|import\s*\(\s*|require\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g;
  for (const match of text.matchAll(pattern)) {
    const target = join(dirname(file), match[1]!);
    for (const candidate of [`${target}.ts`, join(target, 'index.ts'), target]) {
      if (existsSync(join(ROOT, candidate)) && candidate.endsWith('.ts')) {
        found.push(relative(ROOT, join(ROOT, candidate)));
        break;
      }
    }
  }
  return found;
}

describe('layout', () => {
  const files = [...sources('src'), ...sources('workers')];
  const graph = new Map(files.map((file) => [file, importsOf(file)]));

  it('has no import cycles among src/ and workers/', () => {
    // Iterative depth-first search; a back edge is a cycle.
    const state = new Map<string, 1 | 2>();
    const cycles: string[] = [];
    for (const start of files) {
      if (state.has(start)) continue;
      const stack: { file: string; next: number }[] = [{ file: start, next: 0 }];
      state.set(start, 1);
      while (stack.length > 0) {
        const top = stack[stack.length - 1]!;
        const deps = graph.get(top.file) ?? [];
        if (top.next >= deps.length) {
          state.set(top.file, 2);
          stack.pop();
          continue;
        }
        const dep = deps[top.next++]!;
        if (state.get(dep) === 1) {
          const path = stack.map((entry) => entry.file);
          cycles.push([...path.slice(path.indexOf(dep)), dep].join(' -> '));
        } else if (!state.has(dep)) {
          state.set(dep, 1);
          stack.push({ file: dep, next: 0 });
        }
      }
    }
    expect(cycles).to.deep.equal([]);
  });

  it('lets workers/ import only src/shared/ of the library', () => {
    const outside = files
      .filter((file) => file.startsWith('workers/'))
      .flatMap((file) => (graph.get(file) ?? []).filter((dep) => dep.startsWith('src/') && !dep.startsWith('src/shared/')).map((dep) => `${file} -> ${dep}`));
    expect(outside).to.deep.equal([]);
  });

  it("has an ESLint rule that refuses, in workers/, every way of importing the main thread's code", async function () {
    this.timeout(60_000);
    const refused = [
      "import { a } from '../src';",
      "import { a } from '../src/run/scheduler';",
      "import { a } from '../src/shared/../run/deadlines';",
      "import { a } from '../dist/src/index';",
      "import { a } from 'lukhas-orchestrator';",
      "export { a } from '../src/pool/dispatcher';",
      "const a = require('../src/run/scheduler');",
      "const a = import('../src/pool/dispatcher');",
      "type a = typeof import('../src/run/scheduler');",
      'const a = require(`../src/run/scheduler`);',
      'const a = import(`../src/pool/dispatcher`);',
      "const a = require('node:module').createRequire(__filename)('../src/run/scheduler');",
    ];
    const allowed = ["import { a } from '../src/shared/board';", "const a = require('../src/shared/board');", "import { a } from 'node:worker_threads';"];
    const eslint = new ESLint({ cwd: ROOT });
    const ruleIds = async (line: string): Promise<string[]> => {
      const [result] = await eslint.lintText(`${line}\nexport const used = [a];\n`, { filePath: join(ROOT, 'workers/probe.ts') });
      return result!.messages.map((message) => message.ruleId ?? message.message).filter((id) => id === 'no-restricted-imports' || id === 'no-restricted-syntax');
    };
    for (const line of refused) expect(await ruleIds(line), line).to.have.length.above(0);
    for (const line of allowed) expect(await ruleIds(line), line).to.deep.equal([]);
  });

  it('keeps src/shared/ free of the main thread: it imports only itself', () => {
    const outside = files
      .filter((file) => file.startsWith('src/shared/'))
      .flatMap((file) => (graph.get(file) ?? []).filter((dep) => !dep.startsWith('src/shared/')).map((dep) => `${file} -> ${dep}`));
    expect(outside).to.deep.equal([]);
  });

  it(`keeps files under ${MAX_LINES} lines, but for a few single concepts`, () => {
    const long = files
      .filter((file) => !LONG_ALLOWED.has(file))
      .map((file) => ({ file, lines: readFileSync(join(ROOT, file), 'utf8').split('\n').length }))
      .filter(({ lines }) => lines > MAX_LINES)
      .map(({ file, lines }) => `${file}: ${lines}`);
    expect(long).to.deep.equal([]);
  });
});
