'use strict';
// Starts the benchmark (bench/run.ts) under plain Node, compiling bench/*.ts in memory
// with TypeScript's transpileModule (no type checks; `npm run typecheck` does those).
//
// Why not `node -r ts-node/register`: a process under ts-node makes the orchestrator
// start its worker threads under ts-node too (it does so for users who run TypeScript
// nodes), which makes every thread start take about 3x longer and load TypeScript
// into every worker, while the raw-piscina baseline's threads would not pay it. The
// benchmark measures the built library as a plain Node.js process uses it.
const { readFileSync } = require('node:fs');
const { join, sep } = require('node:path');
const ts = require('typescript');

const benchDir = __dirname + sep;
const compilerOptions = {
  module: ts.ModuleKind.CommonJS,
  target: ts.ScriptTarget.ES2022,
  esModuleInterop: true,
  inlineSourceMap: true,
};

// What the BullMQ backend's scenarios run against, shared with its tests.
const remoteEnv = join(__dirname, '..', 'test', 'remote-env.ts');

require.extensions['.ts'] = (module, filename) => {
  if (!filename.startsWith(benchDir) && filename !== remoteEnv) throw new Error(`bench/main.js compiles only bench/*.ts and test/remote-env.ts, not ${filename}`);
  const { outputText } = ts.transpileModule(readFileSync(filename, 'utf8'), { compilerOptions, fileName: filename });
  module._compile(outputText, filename);
};

require(join(__dirname, 'run.ts'));
