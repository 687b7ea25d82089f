/**
 * The executor's look at its jobs in flight, every `SWEEP_MS`: a job gone from Redis
 * (restarted without persistence, or with AOF that lost its last second) is *lost*, and
 * its runs fail at once rather than wait for their pipeline timeout; a job that ended
 * while its event went unread (the stream trimmed, a reader reconnecting) is read back.
 *
 * A look waits for Redis: while it is down, nothing is decided; once it answers again, a
 * job missing from it on `MISSING_LOOKS` looks in a row is lost. A run whose job Redis
 * lost thus rejects within `LOST_BOUND_MS` of Redis answering again.
 *
 * With a secret, a job's failure is known from here alone (not from its `failed` event,
 * which anyone able to write to Redis could add): at once when its event comes, which
 * has the job's state looked at (`confirm`), or at a look.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { RemoteTicket } from './remote-ticket';
import type { JobData } from './wire';

/** How often the jobs in flight are looked at. */
export const SWEEP_MS = 1_000;
/** Looks in a row a job must be missing from Redis on to be taken for lost. */
const MISSING_LOOKS = 2;
/** How long after Redis answers again a run whose job it lost rejects, at most. */
export const LOST_BOUND_MS = (MISSING_LOOKS + 1) * SWEEP_MS;
/** Jobs in flight longer than this are looked up for an end whose event was missed. */
const MISSED_END_MS = 5_000;

export interface SweepHandlers {
  /** A job's return value, read back, as raw JSON. */
  result(jobId: string, raw: string): void;
  failed(jobId: string, reason: string): void;
  /** A job Redis no longer has. */
  lost(jobId: string): void;
}

export class Sweeper {
  private readonly missing = new Map<string, number>();
  private looking = false;
  private readonly confirming = new Set<string>();
  private looks = 0;

  constructor(
    private readonly redis: Redis,
    private readonly queue: Queue<JobData>,
    private readonly jobKey: (jobId: string) => string,
    private readonly jobs: () => [string, RemoteTicket[]][],
    private readonly handlers: SweepHandlers,
  ) {}

  /** One look (skipped while the previous one still waits for Redis). */
  async look(): Promise<void> {
    if (this.looking) return;
    this.looking = true;
    try {
      await this.lookNow();
    } catch {
      // Redis unreachable, or a job unreadable: try again next time.
    } finally {
      this.looking = false;
    }
  }

  private async lookNow(): Promise<void> {
    // Only jobs Redis has acknowledged: one still being added is not missing.
    const sent = this.jobs().filter(([, tickets]) => tickets[0]!.added);
    const known = new Set(sent.map(([jobId]) => jobId));
    for (const jobId of this.missing.keys()) if (!known.has(jobId)) this.missing.delete(jobId);
    if (sent.length === 0) return;
    const pipeline = this.redis.pipeline();
    for (const [jobId] of sent) pipeline.exists(this.jobKey(jobId));
    const found = (await pipeline.exec()) ?? [];
    const present: [string, RemoteTicket[]][] = [];
    sent.forEach((entry, index) => {
      const [error, count] = found[index] ?? [new Error('no reply'), 0];
      if (error !== null) return;
      const [jobId] = entry;
      if (count !== 0) {
        this.missing.delete(jobId);
        present.push(entry);
        return;
      }
      const times = (this.missing.get(jobId) ?? 0) + 1;
      this.missing.set(jobId, times);
      if (times >= MISSING_LOOKS) {
        this.missing.delete(jobId);
        this.handlers.lost(jobId);
      }
    });
    // Ends whose event went unread: every fifth look, for jobs long in flight.
    if (++this.looks % 5 !== 0) return;
    for (const [jobId, tickets] of present) {
      // One job that cannot be read does not keep the others from being looked at.
      if (Date.now() - tickets[0]!.sentAt > MISSED_END_MS) await this.readEnd(jobId).catch(() => {});
    }
  }

  /**
   * Looks at once whether job `jobId` has ended, as a look does: for an event that says
   * so but is not signed (a `failed` event, with a secret in use), which the job's state
   * in Redis then confirms or not. One such look per job at a time.
   */
  async confirm(jobId: string): Promise<void> {
    if (this.confirming.has(jobId)) return;
    this.confirming.add(jobId);
    try {
      await this.readEnd(jobId);
    } catch {
      // Redis unreachable: the looks go on.
    } finally {
      this.confirming.delete(jobId);
    }
  }

  /**
   * A job's end, read back from Redis, if it has ended: its two fields alone, as text,
   * not the whole job, which would not be read at all were one of its other fields not
   * to parse.
   */
  private async readEnd(jobId: string): Promise<void> {
    const state = await this.queue.getJobState(jobId);
    if (state !== 'completed' && state !== 'failed') return;
    const [returnvalue, failedReason] = await this.redis.hmget(this.jobKey(jobId), 'returnvalue', 'failedReason');
    if (state === 'completed' && typeof returnvalue === 'string') this.handlers.result(jobId, returnvalue);
    else if (state === 'failed') this.handlers.failed(jobId, failedReason ?? 'unknown');
  }
}
