/** Runs S1-S5: warm-up, the raw-piscina candidates' trial, then interleaved iterations. */
import { performance } from 'node:perf_hooks';
import { RawPiscina, describeBaseline, poolOptions } from './baseline';
import { Samples, inputsFor, runBatch, type BatchSpec, type RunFn } from './batch';
import { timeNodeOnAllCores } from './calibrate';
import { interleave, type Contender } from './harness';
import { Orchestrator, describeExecutor, toNodes, transfer } from './orchestrator';
import { startPlainBullmq, type PlainBullmq } from './plain-bullmq';
import { startCluster, type Cluster } from './remote';
import type { Progress } from './progress';
import { figuresOf, ratiosOf, warmUpOf, type Candidate, type ScenarioResult } from './report';
import type { BatchScenario } from './scenarios';
import { percentile, sorted } from './stats';
import { Rounds, judge } from './verdict';

function criterion(def: BatchScenario): string {
  const batches = def.trialBatches === 1 ? 'one trial batch' : `the best of ${def.trialBatches} trial batches`;
  return `raw piscina candidates, each warmed up, then ${batches} of ${def.trialCount.toLocaleString('en-US')} runs; the lowest p95 is measured`;
}

function spec(def: BatchScenario, count = def.count): BatchSpec {
  return { ...def.workload, count, concurrency: Math.min(def.concurrency, count) };
}

/**
 * Warm-up batches until `def.warmUpMs` passed and at least two ran: starts every
 * thread, loads the node modules in it, and gets the code on both sides of the
 * threads compiled and the heaps grown.
 */
async function warmUp(run: RunFn, def: BatchScenario): Promise<Samples> {
  const count = Math.min(def.count, def.warmUpCount);
  // At least one run per thread at once, so that every thread loads the modules.
  const warm: BatchSpec = { ...def.workload, count, concurrency: Math.min(count, Math.max(def.concurrency, def.threads)) };
  const until = performance.now() + def.warmUpMs;
  const samples = new Samples();
  for (let batches = 0; batches < 2 || performance.now() < until; batches++) {
    await runBatch(run, warm, inputsFor(warm), samples);
  }
  return samples;
}

/**
 * A contender whose iterations are batches of `def.count` runs, inputs made off the
 * clock; `rounds` keeps each iteration's latencies apart.
 */
function batchContender(label: string, run: RunFn, def: BatchScenario, into: Samples, rounds: Rounds): Contender {
  const batch = spec(def);
  let inputs: unknown[] = [];
  return {
    label,
    prepare: () => {
      inputs = inputsFor(batch);
    },
    iteration: async () => {
      rounds.begin();
      await runBatch(run, batch, inputs, into);
      rounds.end();
    },
  };
}

/** A candidate's warm-up and trial batches: its best p95 and wall time, and its failures. */
async function trial(raw: RawPiscina, def: BatchScenario): Promise<{ p95Ms: number | null; wallMs: number; failures: number }> {
  const run: RunFn = (input) => raw.graph(def.workload.steps, input);
  const warm = await warmUp(run, def);
  const batch = spec(def, def.trialCount);
  let p95Ms: number | null = null;
  let wallMs = Infinity;
  let failures = warm.failures;
  for (let i = 0; i < def.trialBatches; i++) {
    const samples = new Samples();
    const inputs = inputsFor(batch);
    const start = performance.now();
    await runBatch(run, batch, inputs, samples);
    wallMs = Math.min(wallMs, performance.now() - start);
    const p95 = percentile(sorted(samples.latencies), 95);
    if (p95 !== null) p95Ms = Math.min(p95Ms ?? Infinity, p95);
    failures += samples.failures;
  }
  return { p95Ms, wallMs, failures };
}

/** Tries each candidate; keeps the pool of the one with the lowest p95 (among those without failures). */
async function pickBaseline(def: BatchScenario, progress: Progress): Promise<{ raw: RawPiscina; candidates: Candidate[] }> {
  const tried: Omit<Candidate, 'chosen'>[] = [];
  let best: { raw: RawPiscina; p95: number; failures: number; index: number } | undefined;
  for (const [index, options] of def.candidates.entries()) {
    const description = describeBaseline(options, def.threads);
    progress.update(`${def.id}  raw piscina candidate ${index + 1}/${def.candidates.length}: ${description}`);
    const raw = new RawPiscina(options, def.threads);
    let result: Awaited<ReturnType<typeof trial>>;
    try {
      result = await trial(raw, def);
    } catch (error) {
      await Promise.all([raw.close(), best?.raw.close()]);
      throw error;
    }
    tried.push({ description, options: poolOptions(options, def.threads), ...result });
    const p95 = result.p95Ms ?? Infinity;
    if (best === undefined || (result.failures === 0 && (best.failures > 0 || p95 < best.p95))) {
      await best?.raw.close();
      best = { raw, p95, failures: result.failures, index };
    } else {
      await raw.close();
    }
  }
  if (best === undefined) throw new Error(`${def.id} has no raw piscina candidates`);
  const chosen = best.index;
  return { raw: best.raw, candidates: tried.map((candidate, i) => ({ ...candidate, chosen: i === chosen })) };
}

export async function runBatchScenario(def: BatchScenario, progress: Progress): Promise<ScenarioResult> {
  const picked = await pickBaseline(def, progress);
  const raw = picked.raw;
  progress.update(`${def.id}  starting the orchestrator${def.remote ? ', redis-server and the worker processes' : ''}`);
  let cluster: Cluster | undefined;
  let plain: PlainBullmq | undefined;
  try {
    if (def.remote) {
      cluster = await startCluster(def.executor, def.threads, `bench-${def.id}`);
      // The same runs as a user of plain BullMQ would run them, on the same redis-server.
      progress.update(`${def.id}  starting the plain BullMQ worker processes`);
      plain = await startPlainBullmq(cluster.redisUrl, `plain-${def.id}`, def.workload.steps);
    }
  } catch (error) {
    await Promise.all([raw.close(), cluster?.close()]);
    throw error;
  }
  const executorOptions = cluster?.options ?? def.executor;
  const orchestrator = new Orchestrator(executorOptions, def.id);
  try {
    await orchestrator.ready();
    const nodes = toNodes(def.workload.steps);
    const runOrchestrator: RunFn = (input) => orchestrator.run(nodes, def.transferInput ? transfer(input) : input);
    const runBaseline: RunFn = (input) => raw.graph(def.workload.steps, input);
    // Both warm right before they are measured (the baseline sat idle while the others were tried).
    progress.update(`${def.id}  warming up the orchestrator`);
    const orchestratorWarmUp = warmUpOf(await warmUp(runOrchestrator, def));
    progress.update(`${def.id}  warming up raw piscina again`);
    const baselineWarmUp = warmUpOf(await warmUp(runBaseline, def));
    if (plain !== undefined) progress.update(`${def.id}  warming up plain BullMQ`);
    const plainWarmUp = plain === undefined ? undefined : warmUpOf(await warmUp(plain.run, def));

    const orchestratorSamples = new Samples();
    const baselineSamples = new Samples();
    const plainSamples = new Samples();
    const orchestratorRounds = new Rounds(orchestratorSamples);
    const baselineRounds = new Rounds(baselineSamples);
    const plainRounds = new Rounds(plainSamples);
    const nodeMsBefore = def.cpuRounds > 0 ? await timeNodeOnAllCores(def.cpuRounds, def.threads) : undefined;
    const [orchestratorRun, baselineRun, plainRun] = await interleave(
      def.id,
      [
        batchContender('orchestrator', runOrchestrator, def, orchestratorSamples, orchestratorRounds),
        batchContender('raw piscina', runBaseline, def, baselineSamples, baselineRounds),
        ...(plain === undefined ? [] : [batchContender('plain BullMQ', plain.run, def, plainSamples, plainRounds)]),
      ],
      def.iterations,
      (label, iteration, of) => progress.update(`${def.id}  iteration ${iteration}/${of}: ${label}, ${def.count.toLocaleString('en-US')} runs`),
    );
    const nodeMs = nodeMsBefore === undefined ? undefined : (nodeMsBefore + (await timeNodeOnAllCores(def.cpuRounds, def.threads))) / 2;
    const floor = def.floor(nodeMs);
    orchestratorSamples.walls.push(...orchestratorRun!.walls);
    baselineSamples.walls.push(...baselineRun!.walls);

    const orchestratorFigures = figuresOf(orchestratorSamples);
    const baselineFigures = figuresOf(baselineSamples);
    const rounds = { orchestrator: orchestratorRounds.figures(orchestratorRun!.walls), baseline: baselineRounds.figures(baselineRun!.walls) };
    let third: Pick<ScenarioResult, 'plainBullmq' | 'toPlainBullmq'> = {};
    let plainRoundFigures: ReturnType<Rounds['figures']> | undefined;
    if (plain !== undefined) {
      plainSamples.walls.push(...plainRun!.walls);
      plainRoundFigures = plainRounds.figures(plainRun!.walls);
      const plainFigures = figuresOf(plainSamples);
      const toPlainBullmq = ratiosOf(orchestratorFigures, plainFigures, null).toBaseline;
      third = { plainBullmq: { ...plainFigures, description: plain.description, options: plain.options, noise: plainRun!.noise }, toPlainBullmq };
    }
    return {
      id: def.id,
      title: def.title,
      count: def.count,
      concurrency: def.concurrency,
      iterations: def.iterations,
      orchestrator: {
        ...orchestratorFigures,
        description:
          describeExecutor(def.executor) +
          (def.transferInput ? '; the input and the outputs moved with transfer()' : '') +
          (cluster === undefined ? '' : `; ${cluster.description}`),
        options: { ...def.executor, ...(cluster === undefined ? {} : { backend: 'bullmq' }) },
        noise: orchestratorRun!.noise,
      },
      baseline: {
        ...baselineFigures,
        description: describeBaseline(raw.options, def.threads),
        options: poolOptions(raw.options, def.threads),
        noise: baselineRun!.noise,
        criterion: criterion(def),
        candidates: picked.candidates,
      },
      floorMs: floor?.ms ?? null,
      floorNote: floor?.note ?? null,
      floorBounds: floor?.bounds ?? [],
      ratios: ratiosOf(orchestratorFigures, baselineFigures, floor),
      rounds: { ...rounds, ...(plainRoundFigures === undefined ? {} : { plainBullmq: plainRoundFigures }) },
      verdicts: judge(def.targets ?? [], rounds.orchestrator, rounds.baseline, floor?.ms ?? null, plainRoundFigures),
      warmUp: { orchestrator: orchestratorWarmUp, baseline: baselineWarmUp, ...(plainWarmUp === undefined ? {} : { plainBullmq: plainWarmUp }) },
      ...third,
      ok: [orchestratorFigures, baselineFigures, orchestratorWarmUp, baselineWarmUp, third.plainBullmq, plainWarmUp].every((f) => f === undefined || f.failures === 0),
      error: null,
    };
  } finally {
    progress.update(`${def.id}  closing`);
    await Promise.all([orchestrator.close(), raw.close(), plain?.close()]);
    await cluster?.close();
  }
}
