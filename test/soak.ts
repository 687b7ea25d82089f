/**
 * The soak run: the property tests of test/properties.test.ts for a chosen time, with a
 * steady mixed load beside them and a hard kill (a spinning node terminated) every two
 * seconds, against the built library.
 *
 *   npm run soak -- --minutes 10
 *
 * Prints, once a minute and at the end: runs started, settled, lost (not settled within
 * their bound), settled more than once, property violations, threads terminated and
 * crashed, and heap use after a GC. Exits non-zero on any lost, doubly settled or
 * wrong run, or when the heap grew more than 10% from the first minute.
 */
import fc from 'fast-check';
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as Library from '../src/index';
import { GRACE_MS, caseArb } from './property/model';
import { CASE_MODULES } from './property/modules';
import { runCase } from './property/runner';

// A private copy of the build: a rebuild while the soak runs must not change the
// code its replacement threads load.
const snapshot = join(__dirname, '..', `.soak-dist-${process.pid}`);
cpSync(join(__dirname, '..', 'dist'), snapshot, { recursive: true });
process.on('exit', () => rmSync(snapshot, { recursive: true, force: true }));
const lib = require(join(snapshot, 'src', 'index.js')) as typeof Library;
const fixture = (name: string): string => join(__dirname, 'fixtures', name);

function argument(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

const minutes = argument('minutes', 10);
const endAt = Date.now() + minutes * 60_000;
const counts = { started: 0, settled: 0, lost: 0, doubled: 0, wrong: 0, violations: 0, cases: 0 };
const violations: string[] = [];

function heapAfterGc(): number {
  for (let i = 0; i < 4; i++) global.gc?.();
  return process.memoryUsage().heapUsed;
}

/** Starts a run of the load, watching that it settles once, with the right result, in time. */
function watched(executor: Library.PipelineExecutor, request: Library.PipelineRequest, check: (outcome: unknown) => boolean): Promise<void> {
  counts.started++;
  let settles = 0;
  const bound = setTimeout(() => counts.lost++, 30_000);
  const result = executor.executePipeline(request);
  return result.then(
    (value) => {
      if (++settles > 1) counts.doubled++;
      counts.settled++;
      clearTimeout(bound);
      if (!check(value)) counts.wrong++;
    },
    (error: unknown) => {
      if (++settles > 1) counts.doubled++;
      counts.settled++;
      clearTimeout(bound);
      if (!check(error)) counts.wrong++;
    },
  );
}

async function steadyLoad(executor: Library.PipelineExecutor): Promise<void> {
  const sleepAdd = fixture('sleep-add.js');
  const nodes = ['a', 'b', 'c'].map((id) => ({ id, module: sleepAdd, params: { ms: 5 } }));
  while (Date.now() < endAt) {
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => watched(executor, { nodes, initialInput: i }, (value) => value === i + 3)),
    );
  }
}

async function hardKills(executor: Library.PipelineExecutor): Promise<void> {
  while (Date.now() < endAt) {
    await watched(
      executor,
      { nodes: [{ id: 'spin', module: fixture('notify-then-spin.js'), timeoutMs: 50 }] },
      (error) => error instanceof lib.NodeTimeoutException,
    );
    await sleep(2_000);
  }
}

async function properties(executor: Library.PipelineExecutor): Promise<void> {
  await fc.assert(
    fc.asyncProperty(caseArb, async (spec) => {
      counts.cases++;
      const report = await runCase(executor, spec, CASE_MODULES);
      counts.started += report.runs;
      counts.settled += report.runs;
      // The steady load and the kills beside the cases move timings beyond what the model
      // tells apart, and keep runs in flight: count what must hold whatever the timing.
      const firm = report.violations.filter((violation) => /did not settle|settled \d+ times|side effect|ran \d+ times|trivial/.test(violation));
      counts.violations += firm.length;
      for (const violation of firm) violations.push(`${violation} in ${JSON.stringify(spec)}`);
      if (Date.now() >= endAt) throw new Error('time is up');
    }),
    { numRuns: Number.MAX_SAFE_INTEGER, endOnFailure: true },
  ).catch((error: unknown) => {
    if (!String((error as { cause?: unknown }).cause).includes('time is up')) throw error;
  });
}

async function main(): Promise<void> {
  const executor = new lib.PipelineExecutor({ threads: 2, timeouts: { cleanupGraceMs: GRACE_MS, nodeTimeoutMs: Infinity } });
  await executor.ready();
  const start = Date.now();
  let firstHeap: number | undefined;
  const report = (label: string): number => {
    const heap = heapAfterGc();
    const stats = executor.stats();
    console.log(
      `${label} ${((Date.now() - start) / 60_000).toFixed(1)} min: ${counts.started} runs started, ${counts.settled} settled, ` +
        `${counts.lost} lost, ${counts.doubled} settled twice, ${counts.wrong} wrong, ${counts.violations} property violations ` +
        `(${counts.cases} cases); ${stats.terminations} threads terminated, ${stats.crashes} crashed; ` +
        `heap after GC ${(heap / 2 ** 20).toFixed(1)} MiB`,
    );
    return heap;
  };
  const ticker = setInterval(() => {
    const heap = report('soak');
    firstHeap ??= heap;
  }, 60_000);
  await Promise.all([steadyLoad(executor), hardKills(executor), properties(executor)]);
  clearInterval(ticker);
  await sleep(1_000);
  const heap = report('end');
  await executor.close();
  for (const violation of violations.slice(0, 20)) console.log(`violation: ${violation}`);
  const grew = firstHeap === undefined ? 0 : heap / firstHeap - 1;
  console.log(`heap growth from the first minute: ${(grew * 100).toFixed(1)}%`);
  const failed = counts.lost > 0 || counts.doubled > 0 || counts.wrong > 0 || counts.violations > 0 || grew > 0.1;
  process.exitCode = failed ? 1 : 0;
}

void main();
