/**
 * A worker process's bookkeeping of the jobs it has taken up: the segments running, the
 * backlog not started yet, the node lists decoded once per plan, and what each job
 * reports back to the executor as its segments run.
 */
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { ModuleRoots } from '../plan/module-roots';
import type { SegmentTicket } from '../pool/dispatcher';
import type { TaskNode } from '../shared/protocol';
import type { SentSettlement } from '../shared/settlement';
import { checkNodeList } from './checks';
import { quoted, type Signer } from './trust';
import type { JobData, JobResult, SegmentPayload, Update } from './wire';

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

/**
 * A node list, decoded, the id under which the pool's threads keep it, if they do, and
 * why each node's module may not run here (undefined where it may).
 */
export interface Nodes {
  readonly list: readonly TaskNode[];
  readonly segmentId: number | undefined;
  readonly refusals: readonly (string | undefined)[];
}

/**
 * Node lists decoded so far, by their encoding: every run of a plan without params sends
 * the same list, which is decoded once, and kept by the pool's threads under one id.
 */
export class NodeLists {
  private readonly lists = new Map<string, Nodes>();
  private nextId = 1;

  constructor(private readonly roots: ModuleRoots) {}

  /** @throws {Refused} for a malformed list. */
  get(encoded: string): Nodes {
    const known = this.lists.get(encoded);
    if (known !== undefined) return known;
    const list = checkNodeList(encoded);
    const refusals = list.map((node) => this.roots.refusal(node.module));
    if (list.some((node) => node.params !== undefined)) return { list, segmentId: undefined, refusals };
    // Bounded, against executors that make plans without end.
    if (this.lists.size >= 1024) this.lists.clear();
    const nodes = { list, segmentId: this.nextId++, refusals };
    this.lists.set(encoded, nodes);
    return nodes;
  }
}

/**
 * A job's saved outputs (`field -> value`), read back: with a secret, those whose MAC
 * does not match are dropped (the segment then runs those nodes again).
 */
export function openSaved(raw: Record<string, string>, jobId: string, signer: Signer, log: (line: string) => void): Record<string, string> {
  if (!signer.signs) return raw;
  const saved: Record<string, string> = {};
  for (const [field, stored] of Object.entries(raw)) {
    const colon = stored.indexOf(':');
    const value = stored.slice(colon + 1);
    if (colon > 0 && signer.verify('saved', jobId, field, value, stored.slice(0, colon))) saved[field] = value;
    else log(`ignored saved output ${quoted(field)} of job ${quoted(jobId)}: its signature does not match`);
  }
  return saved;
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

  /** Ends already sent as progress updates, by index. */
  private readonly sentEnds = new Set<number>();

  constructor(
    private readonly job: Job<JobData>,
    private readonly redis: Redis,
    private readonly key: string,
    private readonly signer: Signer,
    private readonly maxJobBytes: number,
  ) {}

  update(update: Update): void {
    if (update.k === 'e') this.sentEnds.add(update.i);
    this.updates.push(update);
    this.schedule();
  }

  save(field: string, value: string): void {
    const mac = this.signer.sign('saved', this.job.id!, field, value);
    this.saves[field] = mac === undefined ? value : `${mac}:${value}`;
    this.saving = true;
    this.schedule();
  }

  /**
   * The job's return value, signed: every end, but those already sent as progress
   * updates (null) where all of them would weigh more than a report may.
   */
  result(ends: readonly string[]): JobResult {
    let e: (string | null)[] = [...ends];
    if (ends.reduce((sum, end) => sum + end.length + 3, 0) > this.maxJobBytes - 1024) {
      e = ends.map((end, index) => (this.sentEnds.has(index) ? null : end));
    }
    const m = this.signer.sign('result', this.job.id!, '', JSON.stringify(e));
    return (m === undefined ? { e } : { e, m }) as JobResult;
  }

  /** Resolves once everything reported so far has been sent (or failed to be). */
  async drained(): Promise<void> {
    while (this.scheduled) await new Promise<void>((resolve) => setImmediate(resolve));
    await this.sending;
  }

  private chunks(updates: Update[]): Update[][] {
    const chunks: Update[][] = [];
    let chunk: Update[] = [];
    let bytes = 0;
    for (const update of updates) {
      const weight = ('b' in update ? update.b.length : 0) + 64;
      if (chunk.length > 0 && bytes + weight > this.maxJobBytes - 1024) {
        chunks.push(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(update);
      bytes += weight;
    }
    if (chunk.length > 0) chunks.push(chunk);
    return chunks;
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
          // In as many updates as keep each within what a report may weigh.
          for (const u of this.chunks(updates)) {
            const m = this.signer.sign('progress', this.job.id!, '', JSON.stringify(u));
            await this.job.updateProgress(m === undefined ? { u } : { u, m });
          }
        })
        // Redis unreachable: the job's return value still carries every end.
        .catch(() => {});
    });
  }
}

