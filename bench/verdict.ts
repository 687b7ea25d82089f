/**
 * Targets and their verdicts: a scenario's goals (a figure at most so many times raw
 * piscina's or the floor), judged on the median of its rounds' ratios, with the spread.
 *
 * A round is one measured iteration of each contender, back to back (the harness
 * alternates which goes first); its ratio compares the two iterations, or one to the
 * floor. The median of at least five rounds is what a target is judged on: single
 * iterations swing by 15% or more on a shared machine. A quick run has one round; its
 * verdicts are printed as indicative and never fail anything.
 */
import type { Samples } from './batch';
import { percentile, median, sorted } from './stats';

/** The figures of one iteration of one contender. */
export interface RoundFigures {
  readonly p50Ms: number | null;
  readonly p95Ms: number | null;
  readonly p99Ms: number | null;
  readonly wallMs: number | null;
}

export type RoundMetric = keyof RoundFigures;

export interface Target {
  readonly metric: RoundMetric;
  /**
   * What the orchestrator's figure is divided by: raw piscina's, the floor, (the backend's
   * scenarios) plain BullMQ's; `'ms'`: nothing, the figure itself is bounded (in milliseconds).
   */
  readonly against: 'baseline' | 'floor' | 'plainBullmq' | 'ms';
  /** The ratio (or, against `'ms'`, the time) the median must not pass. */
  readonly atMost: number;
  /** What the figure is of, when not the scenario's main latency (S6: the next run after a stop). */
  readonly of?: string;
  /** The median must stay below `atMost`, not only reach it. */
  readonly strictly?: boolean;
}

export interface Verdict extends Target {
  /** The ratio of each round (orchestrator / raw piscina, / the floor, or / plain BullMQ). */
  readonly ratios: readonly number[];
  readonly median: number | null;
  readonly min: number | null;
  readonly max: number | null;
  /** Met on the median; null when nothing could be measured. */
  readonly met: boolean | null;
  /** Fewer than five rounds: printed, but not a verdict. */
  readonly indicative: boolean;
}

/** Rounds needed for a verdict. */
export const VERDICT_ROUNDS = 5;

const NAMES: Record<RoundMetric, string> = { p50Ms: 'p50', p95Ms: 'p95', p99Ms: 'p99', wallMs: 'wall' };

/** Records each iteration's latencies apart, to give each round its figures. */
export class Rounds {
  private readonly from: number[] = [];
  private readonly to: number[] = [];

  constructor(private readonly samples: Samples) {}

  begin(): void {
    this.from.push(this.samples.latencies.length);
  }

  end(): void {
    this.to.push(this.samples.latencies.length);
  }

  /** Figures of each iteration; `walls` are the iterations' wall times, in order. */
  figures(walls: readonly number[]): RoundFigures[] {
    return this.from.map((start, i) => {
      const ascending = sorted(this.samples.latencies.slice(start, this.to[i]));
      return { p50Ms: percentile(ascending, 50), p95Ms: percentile(ascending, 95), p99Ms: percentile(ascending, 99), wallMs: walls[i] ?? null };
    });
  }
}

/** Judges each target on the rounds of the contenders and the floor. */
export function judge(
  targets: readonly Target[],
  orchestrator: readonly RoundFigures[],
  baseline: readonly RoundFigures[],
  floorMs: number | null,
  plainBullmq: readonly RoundFigures[] = [],
): Verdict[] {
  return targets.map((target) => {
    const ratios: number[] = [];
    orchestrator.forEach((round, i) => {
      const mine = round[target.metric];
      const theirs = target.against === 'ms' ? 1 : target.against === 'floor' ? floorMs : ((target.against === 'baseline' ? baseline : plainBullmq)[i]?.[target.metric] ?? null);
      if (mine !== null && theirs !== null && theirs > 0) ratios.push(mine / theirs);
    });
    const mid = median(ratios);
    const met = mid === null ? null : target.strictly === true ? mid < target.atMost : mid <= target.atMost;
    return {
      ...target,
      ratios,
      median: mid,
      min: ratios.length === 0 ? null : Math.min(...ratios),
      max: ratios.length === 0 ? null : Math.max(...ratios),
      met,
      indicative: ratios.length < VERDICT_ROUNDS,
    };
  });
}

function times(value: number | null, target: Target): string {
  if (value === null) return '-';
  return target.against === 'ms' ? `${value.toFixed(value < 10 ? 2 : 1)} ms` : `${value.toFixed(2)}x`;
}

/** "p95 at most 1.5x the floor", "p95 at most 5 ms" */
export function describeTarget(target: Target): string {
  const under = target.strictly === true ? 'under' : 'at most';
  const figure = `${target.of === undefined ? '' : `${target.of}: `}${NAMES[target.metric]}`;
  if (target.against === 'ms') return `${figure} ${under} ${target.atMost} ms`;
  const against = { floor: 'the floor', baseline: "raw piscina's", plainBullmq: "plain BullMQ's" }[target.against];
  return `${figure} ${under} ${target.atMost}x ${against}`;
}

/** One line per verdict, for the scenario's table. */
export function formatVerdicts(verdicts: readonly Verdict[]): string[] {
  if (verdicts.length === 0) return [];
  const lines = ['', '  targets, judged on the median of the rounds (min-max):'];
  for (const verdict of verdicts) {
    const outcome = verdict.met === null ? 'NOT MEASURED' : verdict.met ? 'met' : 'NOT MET';
    const rounds = `${verdict.ratios.length} round${verdict.ratios.length === 1 ? '' : 's'}`;
    const spread = verdict.ratios.length > 1 ? ` (${times(verdict.min, verdict)}-${times(verdict.max, verdict)})` : '';
    const note = verdict.indicative ? `  [${outcome}, indicative only: ${rounds}]` : `  [${outcome}]`;
    lines.push(`    ${describeTarget(verdict).padEnd(34)} median ${times(verdict.median, verdict)}${spread}, ${rounds}${note}`);
  }
  return lines;
}

/** "2 of 3 targets met" for a scenario's heading, or '' without targets. */
export function summarise(verdicts: readonly Verdict[]): string {
  if (verdicts.length === 0) return '';
  const met = verdicts.filter((verdict) => verdict.met === true).length;
  const indicative = verdicts.some((verdict) => verdict.indicative) ? ', indicative' : '';
  return `; targets: ${met} of ${verdicts.length} met${indicative}`;
}
