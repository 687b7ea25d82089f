/**
 * S9, fairness: key A submits a burst of CPU runs at once; 50 ms later key B submits a
 * few of the same. Measured, in rounds whose cases alternate their order:
 *
 * - B alone: B's runs with nothing else in flight (B's p50 and p95);
 * - A alone: A's burst with nothing else (A's wall time, first call to last settlement);
 * - A then B with keys (`concurrencyKey` 'A' and 'B'): B's p50/p95, A's wall time;
 * - A then B without keys: the same runs in arrival order.
 *
 * Goals, judged on the median of the rounds: with keys, B's p95 at most 3x its p95
 * alone; A's wall time with B (keys) at most 1.05x A's alone.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { PipelineExecutor } from '../dist/src/index.js';
import type { Calibration } from './calibrate';
import { watchNoise, type Noise } from './machine';
import { toNodes } from './orchestrator';
import { median, percentile, sorted } from './stats';
import { describeNoise } from './tables';
import { chain } from './workload';

export interface FairnessSize {
  readonly aRuns: number;
  readonly bRuns: number;
  readonly rounds: number;
}

export const FAIRNESS_FULL: FairnessSize = { aRuns: 600, bRuns: 20, rounds: 5 };
export const FAIRNESS_QUICK: FairnessSize = { aRuns: 150, bRuns: 10, rounds: 1 };

/** How long after A's burst B submits. */
const B_AFTER_MS = 50;

type CaseName = 'bAlone' | 'aAlone' | 'keyed' | 'unkeyed';

/** One case's figures in one round; null where the case has none. */
interface Figures {
  readonly bP50Ms: number | null;
  readonly bP95Ms: number | null;
  readonly aWallMs: number | null;
}

export interface FairnessResult {
  readonly id: 'S9';
  readonly size: FairnessSize;
  /** Each case's figures, round by round. */
  readonly rounds: Readonly<Record<CaseName, readonly Figures[]>>;
  /** Medians over the rounds. */
  readonly medians: Readonly<Record<CaseName, Figures>>;
  readonly goals: {
    /** B's p95 with keys over B's p95 alone; goal at most 3. */
    readonly bP95ToAlone: number | null;
    /** A's wall time with B (keys) over A's alone; goal at most 1.05. */
    readonly aWallToAlone: number | null;
    readonly bMet: boolean;
    readonly aMet: boolean;
  };
  readonly failures: number;
  readonly noise: Noise;
  readonly ok: boolean;
}

export async function runFairness(size: FairnessSize, calibration: Calibration, threads: number, progress: (text: string) => void): Promise<FairnessResult> {
  const noiseOf = watchNoise();
  const executor = new PipelineExecutor({ threads });
  const nodes = toNodes(chain(3, 'cpu', { rounds: calibration.rounds }));
  let failures = 0;
  const run = (key: string | undefined): Promise<number> => {
    const start = performance.now();
    return executor.executePipeline({ pipelineId: 'S9', nodes, initialInput: 0, ...(key === undefined ? {} : { concurrencyKey: key }) }).then(
      () => performance.now() - start,
      () => {
        failures++;
        return performance.now() - start;
      },
    );
  };
  const burst = (count: number, key: string | undefined): Promise<number[]> => Promise.all(Array.from({ length: count }, () => run(key)));
  const bFigures = (latencies: number[]): Pick<Figures, 'bP50Ms' | 'bP95Ms'> => {
    const ascending = sorted(latencies);
    return { bP50Ms: percentile(ascending, 50), bP95Ms: percentile(ascending, 95) };
  };
  const cases: Record<CaseName, () => Promise<Figures>> = {
    bAlone: async () => ({ ...bFigures(await burst(size.bRuns, 'B')), aWallMs: null }),
    aAlone: async () => {
      const start = performance.now();
      await burst(size.aRuns, 'A');
      return { bP50Ms: null, bP95Ms: null, aWallMs: performance.now() - start };
    },
    keyed: () => together('A', 'B'),
    unkeyed: () => together(undefined, undefined),
  };
  async function together(aKey: string | undefined, bKey: string | undefined): Promise<Figures> {
    const start = performance.now();
    const a = burst(size.aRuns, aKey).then(() => performance.now() - start);
    await sleep(B_AFTER_MS);
    const b = await burst(size.bRuns, bKey);
    return { ...bFigures(b), aWallMs: await a };
  }

  const names = Object.keys(cases) as CaseName[];
  const rounds: Record<CaseName, Figures[]> = { bAlone: [], aAlone: [], keyed: [], unkeyed: [] };
  try {
    await executor.ready();
    // Warm-up: the threads load the module and the JIT settles.
    await burst(Math.min(size.aRuns, 100), undefined);
    for (let round = 0; round < size.rounds; round++) {
      // Each round runs the cases in another order, so that a drift of the machine's speed spreads over all.
      const order = round % 2 === 0 ? names : [...names].reverse();
      for (const name of order) {
        progress(`S9  round ${round + 1} of ${size.rounds}: ${name}`);
        rounds[name].push(await cases[name]());
      }
    }
  } finally {
    await executor.close();
  }
  const medianOf = (name: CaseName): Figures => ({
    bP50Ms: median(rounds[name].flatMap((f) => (f.bP50Ms === null ? [] : [f.bP50Ms]))),
    bP95Ms: median(rounds[name].flatMap((f) => (f.bP95Ms === null ? [] : [f.bP95Ms]))),
    aWallMs: median(rounds[name].flatMap((f) => (f.aWallMs === null ? [] : [f.aWallMs]))),
  });
  const medians = { bAlone: medianOf('bAlone'), aAlone: medianOf('aAlone'), keyed: medianOf('keyed'), unkeyed: medianOf('unkeyed') };
  const bP95ToAlone = ratio(medians.keyed.bP95Ms, medians.bAlone.bP95Ms);
  const aWallToAlone = ratio(medians.keyed.aWallMs, medians.aAlone.aWallMs);
  return {
    id: 'S9',
    size,
    rounds,
    medians,
    goals: { bP95ToAlone, aWallToAlone, bMet: bP95ToAlone !== null && bP95ToAlone <= 3, aMet: aWallToAlone !== null && aWallToAlone <= 1.05 },
    failures,
    noise: noiseOf(),
    ok: failures === 0,
  };
}

function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : a / b;
}

export function formatFairness(result: FairnessResult): string {
  const { size, medians, goals } = result;
  const ms = (value: number | null): string => (value === null ? '-' : `${Math.round(value).toLocaleString('en-US')} ms`);
  const x = (value: number | null): string => (value === null ? '-' : `${value.toFixed(2)}x`);
  const row = (label: string, figures: Figures): string =>
    `  ${label.padEnd(26)}${ms(figures.bP50Ms).padStart(10)}${ms(figures.bP95Ms).padStart(10)}${ms(figures.aWallMs).padStart(12)}`;
  const noise = describeNoise(result.noise);
  return [
    `S9  fairness: key A submits ${size.aRuns} runs of 3 CPU nodes at once, key B ${size.bRuns} of them ${B_AFTER_MS} ms later  [${result.ok ? 'ok' : 'FAILED'}]`,
    `  medians of ${size.rounds} round${size.rounds === 1 ? '' : 's'}, the cases' order alternating; ${result.failures} runs failed`,
    '',
    `  ${''.padEnd(26)}${"B's p50".padStart(10)}${"B's p95".padStart(10)}${"A's wall".padStart(12)}`,
    row('B alone', medians.bAlone),
    row('A alone', medians.aAlone),
    row('A then B, with keys', medians.keyed),
    row('A then B, without keys', medians.unkeyed),
    '',
    `  goal: with keys, B's p95 <= 3x alone: ${x(goals.bP95ToAlone)} ${goals.bMet ? 'met' : 'NOT met'}`,
    `  goal: with keys, A's wall <= 1.05x A alone: ${x(goals.aWallToAlone)} ${goals.aMet ? 'met' : 'NOT met'}`,
    noise === '' ? '' : `  (${noise})`,
  ].join('\n');
}
