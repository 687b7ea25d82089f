/**
 * A worker process's attempts at jobs, and their locks. BullMQ hands a job to another
 * process once its lock lapses (this process paused past `--lock-ms`, a long GC, Redis
 * out of reach); the first attempt must then stop at once and never report, or the same
 * nodes run twice at once and the executor hears from both.
 *
 * Each attempt's lock is renewed at half its duration (at once, then, after a pause of
 * the process: its overdue timer fires first thing). An attempt is *lost*:
 * - when `extendJobLocks` reports its lock is no longer its token;
 * - by this process's own clock, when Redis does not answer and its lock has gone
 *   `lockDurationMs` without a renewal (Redis has let it lapse by then);
 * - when a report of it finds the lock is not its own (`jobs.ts`), or BullMQ refuses its
 *   completion ("Missing lock").
 */
import type { Job, Worker } from 'bullmq';
import type { JobReporter, Running } from './jobs';
import type { JobData } from './wire';

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
   * Renews the locks of the attempts not lost, and loses those whose lock Redis says is
   * no longer theirs. When Redis does not answer within half a lock, loses those whose
   * lock has gone `lockDurationMs` without renewal by this process's clock: Redis has
   * let it lapse by then.
   */
  async renew(): Promise<void> {
    const held = this.values().filter((attempt) => !attempt.lost);
    if (held.length === 0) return;
    const sentAt = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(resolve, this.lockDurationMs / 2, undefined)));
    const extended = this.worker.extendJobLocks(held.map((attempt) => attempt.jobId), held.map((attempt) => attempt.token), this.lockDurationMs);
    const failed = await Promise.race([extended.catch(() => undefined), late]);
    clearTimeout(timer);
    if (failed === undefined) {
      const now = performance.now();
      for (const attempt of held) {
        const age = now - attempt.lockedAt;
        if (age >= this.lockDurationMs) this.lose(attempt, `its lock went ${Math.round(age)} ms without renewal, past its ${this.lockDurationMs} ms (--lock-ms): Redis does not answer`);
      }
      return;
    }
    const lost = new Set(failed);
    for (const attempt of held) {
      if (lost.has(attempt.jobId)) this.lose(attempt, 'its lock is no longer its own (it lapsed, or the job went to another process)');
      else if (!attempt.lost) attempt.lockedAt = sentAt;
    }
  }
}
