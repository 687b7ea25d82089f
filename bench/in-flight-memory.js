'use strict';
// Main-thread memory per run in flight: the heap (after a full GC) right after
// submitting N of the seed's runs (three 10 ms sleeps) at once, less the heap before,
// over N. The orchestrator (the built library, dist/, with its default timeouts: every
// run's node and pipeline timeouts are watched) against raw piscina's chains of
// pending `run()` calls, each contender in a process of its own, alternating, several
// rounds; it prints each round and the median with its spread.
//
//   npm run bench:memory                   # 100,000 runs, 5 rounds per contender
//   npm run bench:memory -- 200000 3       # N and rounds
const { execFileSync } = require('node:child_process');
const { join } = require('node:path');

const NODES = join(__dirname, 'fixtures', 'nodes.js');
const RAW_WORKER = join(__dirname, 'fixtures', 'piscina-worker.js');

async function measure(kind, count) {
  const threads = 2;
  let one;
  let close;
  if (kind === 'orchestrator') {
    const { PipelineExecutor } = require('../dist/src/index.js');
    const executor = new PipelineExecutor({ threads });
    await executor.ready();
    const nodes = [1, 2, 3].map((n) => ({ id: `n${n}`, module: NODES, export: 'sleepAdd' }));
    one = (i) => executor.executePipeline({ pipelineId: 'seed', nodes, initialInput: i });
    close = () => executor.close();
  } else {
    const { Piscina } = require('piscina');
    const pool = new Piscina({ filename: RAW_WORKER, minThreads: threads, maxThreads: threads, concurrentTasksPerWorker: 1024 });
    const node = (input) => pool.run({ fn: 'sleepAdd', input });
    one = (i) => node(i).then(node).then(node);
    close = () => pool.destroy();
  }
  // Warm up: plans cached, code compiled, threads started.
  await Promise.all(Array.from({ length: 2000 }, (_, i) => one(i)));
  global.gc();
  global.gc();
  const before = process.memoryUsage().heapUsed;
  const runs = new Array(count);
  for (let i = 0; i < count; i++) runs[i] = one(i);
  global.gc();
  global.gc();
  const after = process.memoryUsage().heapUsed;
  const results = await Promise.all(runs);
  if (results.some((value, i) => value !== i + 3)) throw new Error(`${kind}: a run gave a wrong result`);
  await close();
  return (after - before) / count;
}

async function main() {
  if (process.argv[2] === '--child') {
    process.stdout.write(`${await measure(process.argv[3], Number(process.argv[4]))}\n`);
    return;
  }
  const runs = Number(process.argv[2] ?? 100_000);
  const rounds = Number(process.argv[3] ?? 5);
  const kinds = ['orchestrator', 'raw piscina'];
  const bytes = { orchestrator: [], 'raw piscina': [] };
  const ratios = [];
  console.log(`Main-thread heap per run in flight, ${runs.toLocaleString('en-US')} seed runs at once, ${rounds} rounds:`);
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? kinds : [...kinds].reverse();
    const got = {};
    for (const kind of order) {
      const out = execFileSync(process.execPath, ['--expose-gc', __filename, '--child', kind === 'orchestrator' ? 'orchestrator' : 'raw', String(runs)], { encoding: 'utf8' });
      got[kind] = Number(out.trim());
      bytes[kind].push(got[kind]);
    }
    ratios.push(got.orchestrator / got['raw piscina']);
    console.log(`  round ${round + 1}: orchestrator ${got.orchestrator.toFixed(0)} B, raw piscina ${got['raw piscina'].toFixed(0)} B, ratio ${ratios[round].toFixed(2)}x`);
  }
  const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
  const spread = (values) => `${Math.min(...values).toFixed(2)}-${Math.max(...values).toFixed(2)}`;
  console.log(`orchestrator ${median(bytes.orchestrator).toFixed(0)} B, raw piscina ${median(bytes['raw piscina']).toFixed(0)} B per run`);
  console.log(`ratio: median ${median(ratios).toFixed(2)}x (${spread(ratios)}); target at most 1x raw piscina's: ${median(ratios) <= 1 ? 'met' : 'NOT MET'}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
