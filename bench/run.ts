/**
 * `npm run bench [-- --quick] [-- --only=S1,S6] [-- --picture]`: the orchestrator (the built library, dist/)
 * against raw piscina and against the theoretical floor, scenario by scenario, in one process.
 * Prints a table per scenario with its targets' verdicts, and writes bench/results/latest.json
 * and latest.svg (ignored by git); with --picture, also the README's picture, readme.svg.
 * Exits non-zero if any run of any scenario did not end as it should; a target not met
 * is printed, never an exit code (a shared machine's timings are no reason to fail CI).
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { runBatchScenario } from './batch-scenario';
import { describeError } from './batch';
import { calibrate } from './calibrate';
import { CPU_NODE_TARGET_MS, sizesFor } from './config';
import { watchNoise } from './machine';
import { Progress } from './progress';
import { toJson, writeAtomically, type BenchReport, type ScenarioResult } from './report';
import { batchScenarios } from './scenarios';
import { shapeScenarios } from './shapes';
import { runStopCase, stopCases } from './stopping';
import { formatMemory, runMemory, type MemoryResult } from './memory';
import { clusterMissing } from './remote';
import { FAIRNESS_FULL, FAIRNESS_QUICK, formatFairness, runFairness, type FairnessResult } from './fairness';
import { renderSvg } from './svg';
import { describeNoise, formatScenario } from './tables';

const ROOT = join(__dirname, '..');
const RESULTS = join(__dirname, 'results');

function git(...args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

/** A result for a scenario that could not be measured at all. */
function erroredResult(id: string, title: string, error: unknown): ScenarioResult {
  const unknown = { otherProcesses: null, steal: null };
  const none = { runs: 0, failures: 0, firstError: null, p50Ms: null, p95Ms: null, p99Ms: null, maxMs: null, wallMs: null, perSecond: null, distributionMs: [] };
  return {
    id,
    title,
    count: 0,
    concurrency: 0,
    iterations: 0,
    orchestrator: { ...none, description: '-', options: {}, noise: unknown },
    baseline: { ...none, description: '-', options: {}, noise: unknown, criterion: '-', candidates: [] },
    floorMs: null,
    floorNote: null,
    floorBounds: [],
    ratios: { toBaseline: {}, toFloor: { orchestrator: {}, baseline: {} } },
    warmUp: { orchestrator: { runs: 0, failures: 0, firstError: null }, baseline: { runs: 0, failures: 0, firstError: null } },
    ok: false,
    error: describeError(error),
  };
}

async function main(): Promise<number> {
  const began = performance.now();
  const runNoise = watchNoise();
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  // --only S4,S6 runs the scenarios whose id starts with one of these.
  const only = args.find((arg) => arg.startsWith('--only='))?.slice('--only='.length).split(',').filter(Boolean);
  const progress = new Progress();
  const cores = availableParallelism();
  const commit = git('rev-parse', 'HEAD');
  const status = git('status', '--porcelain');
  const cpu = cpus()[0]?.model.trim() ?? 'unknown';

  progress.update('calibrating the CPU nodes');
  const calibration = calibrate(CPU_NODE_TARGET_MS);
  progress.clear();
  console.log(`lukhas-orchestrator benchmark${quick ? ' (--quick)' : ''}: Node ${process.version}, ${cpu}, ${cores} cores, commit ${commit ?? 'unknown'}${status ? ' (uncommitted changes)' : ''}`);
  console.log(`CPU node: ${calibration.rounds.toLocaleString('en-US')} rounds of PBKDF2-HMAC-SHA256 = ${calibration.nodeMs.toFixed(2)} ms on the main thread (target ${calibration.targetMs} ms)`);
  console.log('Ratios compare figures of this run only; timings on a shared machine vary by tens of percent between runs.\n');

  const sizes = sizesFor(quick);
  // The BullMQ backend's scenarios need a redis-server; without one they are skipped, saying why.
  const missing = clusterMissing();
  if (missing !== undefined) console.log(`The BullMQ backend's scenarios (S1-bullmq, S3-bullmq) are skipped: ${missing}.\n`);
  const jobs: { id: string; title: string; run: () => Promise<ScenarioResult> }[] = [
    ...batchScenarios(sizes, calibration, cores)
      .filter((def) => !def.remote || missing === undefined)
      .map((def) => ({ id: def.id, title: def.title, run: () => runBatchScenario(def, progress) })),
    ...stopCases(sizes.S6, cores).map((c) => ({ id: c.id, title: c.title, run: () => runStopCase(c, progress) })),
    ...shapeScenarios(sizes, calibration, cores).map((def) => ({ id: def.id, title: def.title, run: () => runBatchScenario(def, progress) })),
  ];
  const scenarios: ScenarioResult[] = [];
  for (const job of jobs.filter((j) => only === undefined || only.some((prefix) => j.id.startsWith(prefix)))) {
    const start = performance.now();
    const noiseOf = watchNoise();
    let result: ScenarioResult;
    try {
      result = await job.run();
    } catch (error) {
      result = erroredResult(job.id, job.title, error);
    }
    result = { ...result, noise: noiseOf() };
    progress.clear();
    console.log(formatScenario(result));
    const noise = describeNoise(result.noise);
    console.log(`  (${((performance.now() - start) / 1000).toFixed(1)} s${noise ? `; ${noise}` : ''})\n`);
    scenarios.push(result);
  }

  let fairness: FairnessResult | null = null;
  if (only === undefined || only.some((prefix) => 'S9'.startsWith(prefix))) {
    const start = performance.now();
    try {
      fairness = await runFairness(quick ? FAIRNESS_QUICK : FAIRNESS_FULL, calibration, cores, (text) => progress.update(text));
      progress.clear();
      console.log(formatFairness(fairness));
    } catch (error) {
      progress.clear();
      console.log(`S9  could not run: ${describeError(error)}`);
    }
    console.log(`  (${((performance.now() - start) / 1000).toFixed(1)} s)\n`);
  }

  let memory: MemoryResult | null = null;
  if (only === undefined || only.some((prefix) => 'M1'.startsWith(prefix))) {
    try {
      memory = await runMemory(quick, cores, (done, of) => progress.update(`M1  ${done.toLocaleString('en-US')} of ${of.toLocaleString('en-US')} runs`));
    } catch (error) {
      const varied = { runs: 0, failures: 1, mainFirstMiB: 0, mainAllMiB: 0, mainGrowth: 0, threadsFirstMiB: 0, threadsAllMiB: 0, threadsGrowth: 0 };
      memory = { id: 'M1', runs: 0, failures: 1, heapAfterFirstMiB: 0, heapAfterAllMiB: 0, growth: 0, ok: false, varied };
      console.error(describeError(error));
    }
    progress.clear();
    console.log(`${formatMemory(memory)}\n`);
  }

  const report: BenchReport = {
    node: process.version,
    cpu,
    cores,
    commit,
    dirty: status === null ? null : status !== '',
    quick,
    date: new Date().toISOString(),
    durationMs: Math.round(performance.now() - began),
    noise: runNoise(),
    calibration,
    scenarios,
    fairness,
    memory,
  };
  // Both ignored by git; the README's picture is refreshed only when asked (--picture).
  writeAtomically(join(RESULTS, 'latest.json'), toJson(report));
  writeAtomically(join(RESULTS, 'latest.svg'), renderSvg(report));
  if (args.includes('--picture')) writeAtomically(join(RESULTS, 'readme.svg'), renderSvg(report));
  const failed = scenarios.filter((s) => !s.ok).map((s) => s.id);
  if (memory !== null && !memory.ok) failed.push('M1');
  if (fairness !== null && !fairness.ok) failed.push('S9');
  const noise = describeNoise(report.noise);
  console.log(`Wrote bench/results/latest.json and latest.svg${args.includes('--picture') ? ' and readme.svg (the README\'s picture)' : ''} in ${(report.durationMs / 1000).toFixed(1)} s${noise ? `; ${noise}` : ''}.`);
  if (failed.length > 0) console.log(`FAILED: ${failed.join(', ')} (some runs did not end as they should)`);
  return failed.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Should a thread outlive its pool, do not hang CI.
    setTimeout(() => process.exit(code), 5_000).unref();
  },
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
