/**
 * The executor's own bookkeeping, for `executor.stats()` without any exporter: runs
 * and nodes counted by outcome, and the distribution of their durations.
 */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

/** How a run or a node ended. */
export type Status = 'success' | 'error' | 'timeout' | 'cancelled';

export interface CountsByStatus {
  readonly success: number;
  readonly error: number;
  readonly timeout: number;
  readonly cancelled: number;
}

export interface DurationSummary {
  readonly count: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Counts and durations of runs or of nodes. */
export class Tally {
  private readonly counts = { success: 0, error: 0, timeout: 0, cancelled: 0 };
  // Microseconds, from 1 µs to about 27 hours, 3 significant digits.
  private readonly durations: RecordableHistogram = createHistogram({ lowest: 1, highest: 1e11, figures: 3 });

  record(status: Status, durationMs: number | undefined): void {
    this.counts[status]++;
    if (durationMs !== undefined && durationMs >= 0) this.durations.record(Math.max(1, Math.round(durationMs * 1000)));
  }

  byStatus(): CountsByStatus {
    return { ...this.counts };
  }

  summary(): DurationSummary {
    const h = this.durations;
    const ms = (micros: number): number => (h.count === 0 ? 0 : micros / 1000);
    return {
      count: h.count,
      p50Ms: ms(h.percentile(50)),
      p95Ms: ms(h.percentile(95)),
      p99Ms: ms(h.percentile(99)),
      maxMs: ms(h.max),
    };
  }
}
