import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '..');

/** The code blocks of the README's TypeScript quick start, in order. */
function quickStart(): { nodes: string; main: string; tsconfig: string } {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('### In TypeScript');
  const section = readme.slice(start, readme.indexOf('\n## ', start));
  const blocks = [...section.matchAll(/```(ts|json)\n([\s\S]*?)```/g)].map((match) => match[2]!);
  expect(blocks, 'src/nodes.ts, src/main.ts and tsconfig.json').to.have.length(3);
  const [nodes, main, tsconfig] = blocks as [string, string, string];
  return { nodes, main, tsconfig };
}

function run(args: string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
  const child = spawnSync(process.execPath, args, { cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: child.status, stdout: child.stdout, stderr: child.stderr };
}

describe("the README's TypeScript quick start, against the built package", () => {
  let project: string;
  before(() => {
    project = mkdtempSync(join(tmpdir(), 'lukhas-quick-start-'));
    const { nodes, main, tsconfig } = quickStart();
    mkdirSync(join(project, 'src'));
    mkdirSync(join(project, 'node_modules', '@types'), { recursive: true });
    symlinkSync(root, join(project, 'node_modules', 'lukhas-orchestrator'), 'dir');
    symlinkSync(join(root, 'node_modules', '@types', 'node'), join(project, 'node_modules', '@types', 'node'), 'dir');
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'quick-start', private: true, type: 'module' }));
    writeFileSync(join(project, 'tsconfig.json'), tsconfig);
    writeFileSync(join(project, 'src', 'nodes.ts'), nodes);
    writeFileSync(join(project, 'src', 'main.ts'), main);
  });
  after(() => {
    rmSync(project, { recursive: true, force: true });
  });

  const tsc = (): string => join(root, 'node_modules', 'typescript', 'bin', 'tsc');

  it('compiles as pasted and prints what its comments say', () => {
    const compiled = run([tsc(), '-p', '.'], project);
    expect(compiled.stdout + compiled.stderr).to.equal('');
    expect(compiled.status).to.equal(0);
    const ran = run([join('dist', 'main.js')], project);
    expect(ran.stderr).to.equal('');
    expect(ran.stdout).to.equal('10.0\n11 64\nslow\n');
  });

  it('does not compile the mistakes it lists', () => {
    const main = readFileSync(join(project, 'src', 'main.ts'), 'utf8');
    const mistakes = main.split('\n').flatMap((line, index) => (/^\/\/ (executor|nodes)\./.test(line) ? [index + 1] : []));
    expect(mistakes).to.have.length(3);
    writeFileSync(join(project, 'src', 'main.ts'), main.replace(/^\/\/ (executor|nodes)\./gm, '$1.'));
    const compiled = run([tsc(), '-p', '.', '--noEmit'], project);
    const lines = [...compiled.stdout.matchAll(/^src\/main\.ts\((\d+),\d+\): error/gm)].map((match) => Number(match[1]));
    expect(lines).to.deep.equal(mistakes);
  });
});
