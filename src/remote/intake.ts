/**
 * What a worker process takes from the queue, and how it ends a job it does not run:
 * failed at once, with the reason, never retried and never handed out again.
 *
 * - *A job whose fields do not parse.* BullMQ parses a job's data, options, progress and
 *   parent as it hands the job over; one that does not parse throws from `getNextJob()`
 *   after the job was moved to active under this process's token, and BullMQ's own
 *   worker leaves it there: its lock lapses, it is found stalled, handed out again and
 *   throws again, for ever (its `deferredFailure`, set once it has stalled past
 *   `maxStalledCount`, is read only from a job that parses). Here such a job is handed
 *   over all the same, without its fields, marked with why, and refused like any other.
 * - *A job that stalled past `maxStalledCount`* (the processes that took it up died or
 *   froze, again and again): BullMQ marks it (`deferredFailure`) and leaves failing it to
 *   whoever takes it up next. Its `getNextJob()` fails it (as its own worker does) before
 *   handing it over, and this process fails any that still comes through.
 * - *A refused job* (malformed, unsigned, too large; see `checks.ts`).
 *
 * Every job a worker process fails, it fails with BullMQ's `UnrecoverableError`: never
 * retried, whatever attempts its options ask for (an executor asks for none).
 */
import type { Job, JobJsonRaw, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { checkJob } from './checks';
import type { Peers } from './peers';
import { quoted, type Signer } from './trust';
import type { JobData } from './wire';

/** Jobs handed over whose fields do not parse, and why. */
const unreadable = new WeakMap<Job, { readonly why: string; readonly badParent: boolean }>();

/** The fields BullMQ parses as JSON as it hands a job over. */
const PARSED = ['data', 'opts', 'progress', 'parent'] as const;
/** The fields kept of a job whose fields do not parse: BullMQ reads them as numbers (or as the name), which never throws. */
const KEPT = ['name', 'timestamp', 'processedOn', 'delay', 'priority', 'ats', 'atm', 'attemptsMade', 'stc'] as const;

/** Whether `text` parses as JSON into an object: what Redis's scripts need of a parent. */
function isObjectJson(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object';
  } catch {
    return false;
  }
}

/** Why `raw`'s fields cannot be read. */
function unparsed(raw: JobJsonRaw): string {
  for (const field of PARSED) {
    const text = raw[field];
    if (text === undefined || text === '') continue;
    try {
      JSON.parse(text);
    } catch {
      return `its ${field} does not parse as JSON`;
    }
  }
  return raw.parent !== undefined && !isObjectJson(raw.parent) ? 'its parent is not an object' : 'its fields are malformed';
}

/** BullMQ's Worker, but that a job whose fields do not parse is handed over, marked (see above). */
export function tolerantWorker(bullmq: Peers['bullmq']): new (...args: ConstructorParameters<typeof Worker>) => Worker {
  return class TolerantWorker extends bullmq.Worker {
    protected override createJob(raw: JobJsonRaw, jobId: string): Job {
      // A parent that is not an object (even an empty one) may pass here, but fails Redis's scripts.
      const badParent = raw.parent !== undefined && !isObjectJson(raw.parent);
      if (!badParent) {
        try {
          return super.createJob(raw, jobId);
        } catch {
          // Marked below.
        }
      }
      const kept: Record<string, string> = { data: 'null', opts: '{}' };
      for (const field of KEPT) if (typeof raw[field] === 'string') kept[field] = raw[field];
      const job = super.createJob(kept as unknown as JobJsonRaw, jobId);
      unreadable.set(job, { why: unparsed(raw), badParent });
      return job;
    }
  };
}

/** What a worker process says of a job BullMQ failed for having stalled too often. */
const STALLED = '(BullMQ marks a job whose lock lapsed more than --max-stalled times: the processes that took it up died or froze)';

/** Takes jobs in, and fails those not to run. */
export class Intake {
  constructor(
    private readonly bullmq: Peers['bullmq'],
    private readonly redis: Redis,
    private readonly jobKey: (jobId: string) => string,
    private readonly resumeKey: (jobId: string) => string,
    private readonly signer: Signer,
    private readonly maxJobBytes: number,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * A job's segments `[segmentId, payload]`, when it is to run; otherwise undefined, and
   * the job is being failed (`failing` resolves once it is, or Redis refused).
   */
  admit(job: Job<JobData>, token: string): { readonly segments?: readonly (readonly [string, string])[]; readonly failing?: Promise<void> } {
    if (job.deferredFailure) {
      this.log(`failed job ${quoted(job.id)}: ${quoted(job.deferredFailure)} ${STALLED}`);
      return { failing: this.fail(job, token, job.deferredFailure) };
    }
    let why = unreadable.get(job)?.why;
    if (why === undefined) {
      try {
        return { segments: checkJob(job.id!, job.name, job.data, this.signer, this.maxJobBytes) };
      } catch (error) {
        why = (error as Error).message;
      }
    }
    // Dropped before anything of it is decoded or loaded; failed, so that an executor
    // waiting for it (if any) fails the runs it names at once.
    this.log(`refused job ${quoted(job.id)} (name ${quoted(job.name)}): ${why}; nothing of it was run`);
    return { failing: this.fail(job, token, `refused by a worker process: ${why}`) };
  }

  /** Fails a job taken up, for good (see above); its saved outputs go with it. Resolves once done, or refused (the lock lost, Redis gone). */
  async fail(job: Job, token: string, reason: string | Error): Promise<void> {
    const error = new this.bullmq.UnrecoverableError(typeof reason === 'string' ? reason : reason.message);
    if (typeof reason !== 'string') error.stack = reason.stack;
    try {
      // A parent Redis cannot read would fail the failing itself.
      if (unreadable.get(job)?.badParent) await this.redis.hdel(this.jobKey(job.id!), 'parent', 'parentKey');
      await job.moveToFailed(error, token, false);
      await this.redis.del(this.resumeKey(job.id!));
    } catch {
      // The lock was lost (the job went to another process) or Redis is gone.
    }
  }

  /** BullMQ failed a job itself (one that stalled too often, as it handed it over): said, and its saved outputs dropped. */
  failedByBullmq(job: Job | undefined, error: Error): void {
    this.log(`failed job ${quoted(job?.id)}: ${quoted(error.message)} ${STALLED}`);
    if (job?.id !== undefined) this.redis.del(this.resumeKey(job.id)).catch(() => {});
  }
}
