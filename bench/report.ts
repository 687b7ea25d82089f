/** The results: their JSON shape, and the figures and ratios drawn from the samples. */
import type { FairnessResult } from './fairness';
import type { MemoryResult } from './memory';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Samples } from './batch';
import type { Calibration } from './calibrate';
import type { Noise } from './machine';
import { distribution, median, percentile, ratio, sorted } from './stats';
import type { RoundFigures, Verdict } from './verdict';

export type Metric = 'p50Ms' | 'p95Ms' | 'p99Ms' | 'maxMs' | 'wallMs' | 'perSecond';
export const METRICS: readonly Metric[] = ['p50Ms', 'p95Ms', 'p99Ms', 'maxMs', 'wallMs', 'perSecond'];

/** What one contender measured in one scenario. */
export interface Figures {
  /** Runs made (measured iterations only), and how many of them failed. */
  readonly runs: number;
  readonly failures: number;
  readonly firstError: string | null;
  /** Per-run latency percentiles over every successful measured run, in ms. */
  readonly p50Ms: number | null;
  readonly p95Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
  /** Median wall time of one iteration (one batch), in ms; `null` where it means nothing. */
  readonly wallMs: number | null;
  /** Successful runs per second of iteration wall time. */
  readonly perSecond: number | null;
  /** Latency percentiles 0, 1, ..., 100, in ms: the empirical distribution. */
  readonly distributionMs: readonly number[];
}

export interface ContenderResult extends Figures {
  readonly description: string;
  readonly options: Readonly<Record<string, unknown>>;
  /** How busy other processes kept the machine during this contender's measured iterations. */
  readonly noise: Noise;
}

/** One baseline candidate's trial batch. */
export interface Candidate {
  readonly description: string;
  readonly options: Readonly<Record<string, unknown>>;
  readonly p95Ms: number | null;
  readonly wallMs: number;
  readonly failures: number;
  readonly chosen: boolean;
}

export interface BaselineResult extends ContenderResult {
  /** How the options were chosen, and the candidates tried. */
  readonly criterion: string;
  readonly candidates: readonly Candidate[];
}

/** The unmeasured runs before the measured ones; they must succeed too. */
export interface WarmUp {
  readonly runs: number;
  readonly failures: number;
  readonly firstError: string | null;
}

export interface Floor {
  readonly ms: number;
  readonly note: string;
  /** The figures the floor is a lower bound of. */
  readonly bounds: readonly Metric[];
}

export interface ScenarioResult {
  readonly id: string;
  readonly title: string;
  /** Runs per iteration, how many at once, and measured iterations per contender. */
  readonly count: number;
  readonly concurrency: number;
  readonly iterations: number;
  readonly orchestrator: ContenderResult;
  readonly baseline: BaselineResult;
  readonly floorMs: number | null;
  readonly floorNote: string | null;
  readonly floorBounds: readonly Metric[];
  readonly ratios: {
    /** orchestrator / raw piscina, per figure (for perSecond, above 1 is better). */
    readonly toBaseline: Partial<Record<Metric, number | null>>;
    /** figure / floor, for the figures the floor bounds. */
    readonly toFloor: {
      readonly orchestrator: Partial<Record<Metric, number | null>>;
      readonly baseline: Partial<Record<Metric, number | null>>;
    };
  };
  readonly warmUp: { readonly orchestrator: WarmUp; readonly baseline: WarmUp; readonly plainBullmq?: WarmUp };
  /**
   * The backend's scenarios: the same runs through plain BullMQ (see plain-bullmq.ts), a
   * third contender, and the orchestrator's figures over its (above 1: the orchestrator
   * took longer; for perSecond, above 1 is better).
   */
  readonly plainBullmq?: ContenderResult;
  readonly toPlainBullmq?: Partial<Record<Metric, number | null>>;
  /** The figures of each measured iteration (a round is one of each contender, back to back). */
  readonly rounds?: { readonly orchestrator: readonly RoundFigures[]; readonly baseline: readonly RoundFigures[]; readonly plainBullmq?: readonly RoundFigures[] };
  /** The scenario's targets, judged on the median of the rounds. */
  readonly verdicts?: readonly Verdict[];
  /** Every run of both contenders, warm-up included, ended as it should (succeeded; for S6, was cancelled). */
  readonly ok: boolean;
  /** Why the scenario could not be measured, if it could not. */
  readonly error: string | null;
  /** How busy the rest of the machine was meanwhile (set by the runner). */
  readonly noise?: Noise;
  /** S6: rejection -> the next trivial run completed. */
  readonly recovery?: { readonly orchestrator: Figures; readonly baseline: Figures };
  /** S6: abort -> the baseline's worker thread exited (piscina rejects before that). */
  readonly baselineThreadExit?: Figures;
}

export interface BenchReport {
  readonly node: string;
  readonly cpu: string;
  readonly cores: number;
  readonly commit: string | null;
  /** The working tree had uncommitted changes. */
  readonly dirty: boolean | null;
  readonly quick: boolean;
  readonly date: string;
  readonly durationMs: number;
  /** How busy the rest of the machine was during the whole run. */
  readonly noise: Noise;
  readonly calibration: Calibration;
  readonly scenarios: readonly ScenarioResult[];
  /** S9: fairness between two keys (null when not run). */
  readonly fairness?: FairnessResult | null;
  /** M1: heap use over 100,000 runs (null when not run). */
  readonly memory: MemoryResult | null;
}

/** Figures of a contender's samples; `withWall` false for scenarios of single runs. */
export function figuresOf(samples: Samples, withWall = true): Figures {
  const ascending = sorted(samples.latencies);
  const totalWall = samples.walls.reduce((sum, wall) => sum + wall, 0);
  return {
    runs: samples.runs,
    failures: samples.failures,
    firstError: samples.firstError,
    p50Ms: percentile(ascending, 50),
    p95Ms: percentile(ascending, 95),
    p99Ms: percentile(ascending, 99),
    maxMs: ascending.length === 0 ? null : ascending[ascending.length - 1]!,
    wallMs: withWall ? median(samples.walls) : null,
    perSecond: withWall && totalWall > 0 ? (samples.latencies.length * 1000) / totalWall : null,
    distributionMs: distribution(ascending),
  };
}

export function warmUpOf(samples: Samples): WarmUp {
  return { runs: samples.runs, failures: samples.failures, firstError: samples.firstError };
}

/** Ratios of a scenario's figures: to the baseline, and to the floor where it bounds them. */
export function ratiosOf(
  orchestrator: Figures,
  baseline: Figures,
  floor: Floor | null,
): ScenarioResult['ratios'] {
  const toBaseline: Partial<Record<Metric, number | null>> = {};
  for (const metric of METRICS) toBaseline[metric] = ratio(orchestrator[metric], baseline[metric]);
  const toFloor = (figures: Figures): Partial<Record<Metric, number | null>> => {
    const out: Partial<Record<Metric, number | null>> = {};
    for (const metric of floor?.bounds ?? []) out[metric] = ratio(figures[metric], floor?.ms);
    return out;
  };
  return { toBaseline, toFloor: { orchestrator: toFloor(orchestrator), baseline: toFloor(baseline) } };
}

/** Writes through a temporary file, so a reader never sees half a file. */
export function writeAtomically(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, path);
}

/** The report as JSON: times rounded to the microsecond, Infinity (not JSON) spelled out. */
export function toJson(report: BenchReport): string {
  const replacer = (_key: string, value: unknown): unknown => {
    if (value === Infinity) return 'Infinity';
    if (typeof value === 'number' && !Number.isInteger(value)) return Math.round(value * 1000) / 1000;
    return value;
  };
  return `${JSON.stringify(report, replacer, 2)}\n`;
}
