/**
 * A worker process's bookkeeping of the jobs it has taken up: the segments running, the
 * backlog not started yet, the node lists decoded once per plan, and what each job
 * reports back to the executor as its segments run.
 */
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { SegmentTicket } from '../pool/dispatcher';
import type { TaskNode } from '../shared/protocol';
import type { SentSettlement } from '../shared/settlement';
import { decode, type JobData, type SegmentPayload, type Update } from './wire';

/** How long a job's saved outputs outlive its last save. */
export const RESUME_TTL_MS = 24 * 3_600_000;

/** A segment this process has taken up. */
export interface Running {
  readonly payload: SegmentPayload;
  readonly nodes: Nodes;
  /** Once it is on the pool. */
  ticket: SegmentTicket | undefined;
  /** A stop that came before it was on the pool. */
  stopBefore: boolean;
  /** A stop was passed on to it (by message, or by its mark). */
  stopped: boolean;
  /** Set when this process stopped the segment itself: its node's timeout, or its crash. */
  ending: SentSettlement | undefined;
  /** It ended, or never had to run. */
  over: boolean;
}

/**
 * The segments taken up whose first node has not started: how far this process is
 * behind. Each is looked at until it starts, then forgotten.
 */
export class Backlog {
  private readonly waiting = new Set<Running>();

  add(entry: Running): void {
    this.waiting.add(entry);
  }

  delete(entry: Running): void {
    this.waiting.delete(entry);
  }

  /** Whether at least `limit` segments wait. */
  atLeast(limit: number): boolean {
    let count = 0;
    for (const entry of this.waiting) {
      if (entry.over || (entry.ticket !== undefined && entry.ticket.progress().started)) this.waiting.delete(entry);
      else if (++count >= limit) return true;
    }
    return false;
  }
}

/** A node list, decoded, and the id under which the pool's threads keep it, if they do. */
export interface Nodes {
  readonly list: readonly TaskNode[];
  readonly segmentId: number | undefined;
}

/**
 * Node lists decoded so far, by their encoding: every run of a plan without params sends
 * the same list, which is decoded once, and kept by the pool's threads under one id.
 */
export class NodeLists {
  private readonly lists = new Map<string, Nodes>();
  private nextId = 1;

  get(encoded: string): Nodes {
    const known = this.lists.get(encoded);
    if (known !== undefined) return known;
    const list = decode(encoded) as TaskNode[];
    if (list.some((node) => node.params !== undefined)) return { list, segmentId: undefined };
    // Bounded, against executors that make plans without end.
    if (this.lists.size >= 1024) this.lists.clear();
    const nodes = { list, segmentId: this.nextId++ };
    this.lists.set(encoded, nodes);
    return nodes;
  }
}

/**
 * A job's updates and saves of a turn, sent together once the turn is over, in order:
 * the saves first, so that nothing is reported that a successor could not resume from.
 */
export class JobReporter {
  private updates: Update[] = [];
  private saves: Record<string, string> = {};
  private saving = false;
  private scheduled = false;
  private sending: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly job: Job<JobData>,
    private readonly redis: Redis,
    private readonly key: string,
  ) {}

  update(update: Update): void {
    this.updates.push(update);
    this.schedule();
  }

  save(field: string, value: string): void {
    this.saves[field] = value;
    this.saving = true;
    this.schedule();
  }

  /** Resolves once everything reported so far has been sent (or failed to be). */
  async drained(): Promise<void> {
    while (this.scheduled) await new Promise<void>((resolve) => setImmediate(resolve));
    await this.sending;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const { updates, saves, saving } = this;
      this.updates = [];
      this.saves = {};
      this.saving = false;
      this.sending = this.sending
        .then(async () => {
          // Kept a day from the last save: a job that fails for good leaves nothing behind.
          if (saving) await this.redis.multi().hset(this.key, saves).pexpire(this.key, RESUME_TTL_MS).exec();
          if (updates.length > 0) await this.job.updateProgress({ u: updates });
        })
        // Redis unreachable: the job's return value still carries every end.
        .catch(() => {});
    });
  }
}

