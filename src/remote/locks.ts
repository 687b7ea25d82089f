/**
 * A worker process's attempts at jobs, and their locks. BullMQ hands a job to another
 * process once its lock lapses (this process paused past `--lock-ms`, a long GC, Redis
 * out of reach); the first attempt must then stop at once and never report, or the same
 * nodes run twice at once and the executor hears from both.
 *
 * Each attempt's lock is renewed at half its duration (at once, then, after a pause of
 * the process: its overdue timer fires first thing). An attempt is *lost*:
 * - when `extendJobLocks` reports its lock is no longer its token;
 * - by this process's own clock, when its lock has gone without a renewal for its
 *   duration less a margin (`marginMs`): long enough before Redis can let it lapse that
 *   its segments have stopped (their grace period, and the termination of a thread that
 *   does not stop) before another process could take the job up;
 * - when a report of it finds the lock is not its own (`jobs.ts`), or BullMQ refuses its
 *   completion ("Missing lock").
 */
import type { Job, Worker } from 'bullmq';
import type { JobReporter, Running } from './jobs';
import type { JobData } from './wire';

/** What a lock's own-clock expiry leaves for stopping, beyond the segments' grace period: a thread's termination and a timer's lateness. */
const STOP_MARGIN_MS = 250;

/**
 * How long before its lock could lapse in Redis an attempt whose segments have
 * `graceMs` to stop is given up: their grace period and a margin, but at most a
 * quarter of the lock (a renewal sent at half the lock has the rest to come back).
 */
export function marginMs(lockDurationMs: number, graceMs: number): number {
  return Math.min(graceMs + STOP_MARGIN_MS, lockDurationMs / 4);
}

/** One attempt at a job: BullMQ's `attemptsStarted` when this process took it up, and the lock's token. */
export interface Attempt {
  readonly job: Job<JobData>;
  readonly jobId: string;
  readonly token: string;
  readonly number: number;
  /** Its segments and its reporter, once its data is decoded. */
  entries: readonly Running[];
  reporter: JobReporter | undefined;
  /** When its lock was last known set, by `performance.now()`: before the request that set it. */
  lockedAt: number;
  lost: boolean;
  /** Resolves once its segments have ended and its end (if any) is reported. */
  done: Promise<void>;
}

export class Attempts {
  private readonly byToken = new Map<string, Attempt>();
  private renewing = false;

  constructor(
    private readonly worker: Worker,
    private readonly lockDurationMs: number,
    private readonly onLost: (attempt: Attempt, why: string) => void,
  ) {}

  get size(): number {
    return this.byToken.size;
  }

  add(attempt: Attempt): void {
    this.byToken.set(attempt.token, attempt);
  }

  delete(attempt: Attempt): void {
    if (this.byToken.get(attempt.token) === attempt) this.byToken.delete(attempt.token);
  }

  values(): Attempt[] {
    return [...this.byToken.values()];
  }

  /** Marks an attempt lost (once), which stops its segments and silences it. */
  lose(attempt: Attempt, why: string): void {
    if (attempt.lost) return;
    attempt.lost = true;
    this.onLost(attempt, why);
  }

  /**
   * Loses, by this process's clock, the attempts whose lock has gone without renewal
   * for the lock's duration less their margin (see {@link marginMs}): Redis does not
   * answer, or this process could not ask in time (paused, starved).
   */
  expire(): void {
    const now = performance.now();
    for (const attempt of this.byToken.values()) {
      if (attempt.lost) continue;
      const graceMs = attempt.entries.reduce((most, entry) => Math.max(most, Number.isFinite(entry.payload.graceMs) ? entry.payload.graceMs : 0), 0);
      const age = now - attempt.lockedAt;
      const limit = this.lockDurationMs - marginMs(this.lockDurationMs, graceMs);
      if (age >= limit) {
        this.lose(attempt, `its lock went ${Math.round(age)} ms without renewal, past the ${Math.round(limit)} ms that leave its segments time to stop before the lock (--lock-ms ${this.lockDurationMs}) can lapse`);
      }
    }
  }

  /**
   * Renews the locks of the attempts not lost, and loses those whose lock Redis says is
   * no longer theirs. When Redis does not answer, {@link expire} gives them up in time.
   */
  async renew(): Promise<void> {
    const held = this.values().filter((attempt) => !attempt.lost);
    // One renewal at a time: while one waits for Redis, the next would only queue behind it.
    if (held.length === 0 || this.renewing) return;
    this.renewing = true;
    const sentAt = performance.now();
    let failed: string[] | undefined;
    try {
      failed = await this.worker.extendJobLocks(held.map((attempt) => attempt.jobId), held.map((attempt) => attempt.token), this.lockDurationMs).catch(() => undefined);
    } finally {
      this.renewing = false;
    }
    if (failed === undefined) return;
    const lost = new Set(failed);
    for (const attempt of held) {
      if (lost.has(attempt.jobId)) this.lose(attempt, 'its lock is no longer its own (it lapsed, or the job went to another process)');
      else if (!attempt.lost) attempt.lockedAt = Math.max(attempt.lockedAt, sentAt);
    }
  }
}
