/**
 * The BullMQ backend's segments waiting to be sent to Redis, on the executor's side:
 * at most `maxSegmentsInFlight` are in Redis (sent and not ended) at once, and the rest
 * wait here in the order of a {@link FairQueue}: the highest priority first, keys in
 * turn, arrival order within a key. Once in Redis, the worker processes take jobs in
 * the order they were added; so this bound is what lets a later run of another key or
 * a higher priority overtake a burst that is still waiting.
 */
import { FairQueue, placementOf } from '../pool/fair-queue';
import type { SegmentJob } from '../pool/dispatcher';
import { MAX_SEGMENTS_PER_JOB } from './trust';

/** A turn's segments are spread over about this many jobs, for the worker processes to share... */
const JOBS_PER_TURN = 32;

export class SendQueue<T extends { readonly job: SegmentJob }> {
  private readonly pending = new FairQueue<T>();
  private sent = 0;

  constructor(private readonly limit: number) {}

  /** Segments waiting to be sent. */
  get waiting(): number {
    return this.pending.size;
  }

  push(ticket: T): void {
    this.pending.push(ticket, placementOf(ticket.job));
  }

  /** Takes out a ticket not sent yet; false when it is not waiting here. */
  remove(ticket: T): boolean {
    return this.pending.remove(ticket, placementOf(ticket.job));
  }

  /** The tickets to send now, in order, counted as in Redis until {@link ended}. */
  take(): T[] {
    const out: T[] = [];
    while (this.sent < this.limit && this.pending.size > 0) {
      out.push(this.pending.shift()!);
      this.sent++;
    }
    return out;
  }

  /** A ticket taken to be sent has ended: whether others wait for its room. */
  ended(): boolean {
    this.sent--;
    return this.pending.size > 0;
  }

  /** Takes every waiting ticket out. */
  drain(): T[] {
    return this.pending.drain();
  }
}

/**
 * Packs segments into jobs, in order: up to an even share of {@link JOBS_PER_TURN} jobs
 * each, and fewer where their payloads would weigh more than a worker process takes
 * (each one alone is within the limit). `job` names the job of each pack and makes it.
 */
export function packJobs<T extends { readonly id: string; readonly payload: string | undefined; jobId: string | undefined; index: number }, J>(
  ready: readonly T[],
  maxJobBytes: number,
  job: (tickets: T[]) => J & { readonly opts: { readonly jobId: string } },
): J[] {
  const size = Math.min(MAX_SEGMENTS_PER_JOB, Math.ceil(ready.length / JOBS_PER_TURN));
  const jobs: J[] = [];
  let tickets: T[] = [];
  let bytes = 0;
  const pack = (): void => {
    const made = job(tickets);
    tickets.forEach((ticket, index) => {
      ticket.jobId = made.opts.jobId;
      ticket.index = index;
    });
    jobs.push(made);
    tickets = [];
    bytes = 0;
  };
  for (const ticket of ready) {
    const weight = ticket.id.length + ticket.payload!.length + 8;
    if (tickets.length > 0 && (tickets.length >= size || bytes + weight > maxJobBytes - 1024)) pack();
    tickets.push(ticket);
    bytes += weight;
  }
  pack();
  return jobs;
}
