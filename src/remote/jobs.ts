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
import { serializeThrown } from '../shared/thrown';
import { attemptName, encode, type JobData, type JobResult, type RemoteEndReport, type SegmentPayload, type Update } from './wire';

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
  /** Its attempt at the job lost the job's lock: its end is never reported. */
  lost: boolean;
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
 * Sends a turn's saves and progress updates of one attempt at a job, in one step, only
 * while that attempt holds the job's lock (its token is the lock's value): once BullMQ
 * has handed the job to another process, nothing of this attempt is saved or reported.
 * Returns 1 when sent, 0 when the lock is not this attempt's.
 * KEYS: lock, resume hash, event stream, queue meta. ARGV: token, job id, the hash's
 * TTL, 2 * saves, then the saves' fields and values, then each update's JSON.
 */
const REPORT_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[4])
if n > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 5, 4 + n))
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
local maxEvents = redis.call('HGET', KEYS[4], 'opts.maxLenEvents') or 10000
for i = 5 + n, #ARGV do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxEvents, '*', 'event', 'progress', 'jobId', ARGV[2], 'data', ARGV[i])
end
return 1
`;

/** The Redis keys an attempt reports under. */
export interface ReportKeys {
  readonly lock: string;
  readonly resume: string;
  readonly events: string;
  readonly meta: string;
}

/** A connection that knows the report script. */
type Reporting = Redis & { lukhasReport(...args: (string | number)[]): Promise<number> };

/** Teaches a connection the report script (once per connection). */
export function withReportScript(redis: Redis): void {
  redis.defineCommand('lukhasReport', { numberOfKeys: 4, lua: REPORT_SCRIPT });
}

/**
 * A job's updates and saves of a turn, sent together once the turn is over, in order:
 * the saves first, so that nothing is reported that a successor could not resume from.
 * Everything is sent under the attempt's lock (see `REPORT_SCRIPT`); once it is lost,
 * or `silence()` is called, nothing more is.
 */
export class JobReporter {
  private updates: Update[] = [];
  private saves: Record<string, string> = {};
  private saving = false;
  private scheduled = false;
  private silenced = false;
  private sending: Promise<unknown> = Promise.resolve();

  /** Ends already sent as progress updates, by index. */
  private readonly sentEnds = new Set<number>();

  constructor(
    private readonly job: Job<JobData>,
    private readonly attempt: { readonly token: string; readonly number: number; readonly lost: () => void },
    private readonly redis: Redis,
    private readonly keys: ReportKeys,
    private readonly signer: Signer,
    private readonly maxJobBytes: number,
  ) {}

  /** Nothing more is sent: the attempt lost its lock. */
  silence(): void {
    this.silenced = true;
    this.updates = [];
    this.saves = {};
  }

  update(update: Update): void {
    if (this.silenced) return;
    if (update.k === 'e') this.sentEnds.add(update.i);
    this.updates.push(update);
    this.schedule();
  }

  save(field: string, value: string): void {
    if (this.silenced) return;
    const mac = this.signer.sign('saved', this.job.id!, field, value);
    this.saves[field] = mac === undefined ? value : `${mac}:${value}`;
    this.saving = true;
    this.schedule();
  }

  /**
   * The job's return value, signed for this attempt: every end, but those already sent
   * as progress updates (null) where all of them would weigh more than a report may.
   */
  result(ends: readonly string[]): JobResult {
    let e: (string | null)[] = [...ends];
    if (ends.reduce((sum, end) => sum + end.length + 3, 0) > this.maxJobBytes - 1024) {
      e = ends.map((end, index) => (this.sentEnds.has(index) ? null : end));
    }
    const a = this.attempt.number;
    const m = this.signer.sign('result', this.job.id!, attemptName(a), JSON.stringify(e));
    return (m === undefined ? { e, a } : { e, a, m }) as JobResult;
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

  /**
   * Tells the executor, signed, that this attempt has the job now (a progress update of
   * no updates, under the lock): from then on it ignores what earlier attempts report.
   * Sent by an attempt at a job taken over, before anything of it runs.
   */
  announce(): Promise<void> {
    const sent = this.sending.then(() => this.send([], [this.signed([])])).catch(() => {});
    this.sending = sent;
    return sent;
  }

  /** A report of `u`, signed for this attempt. */
  private signed(u: Update[]): string {
    const a = this.attempt.number;
    const m = this.signer.sign('progress', this.job.id!, attemptName(a), JSON.stringify(u));
    return JSON.stringify(m === undefined ? { u, a } : { u, a, m });
  }

  /**
   * Sends saves (`fields`, field and value in turn) and reports (`texts`): the saves with
   * the first report, each further report in a step of its own, to keep each within what
   * a report may weigh.
   */
  private async send(fields: string[], texts: string[]): Promise<void> {
    const steps = texts.length === 0 ? [[]] : texts.map((text) => [text]);
    for (const [index, step] of steps.entries()) {
      if (this.silenced) return;
      const pairs = index === 0 ? fields : [];
      if (pairs.length === 0 && step.length === 0) continue;
      const { lock, resume, events, meta } = this.keys;
      const sent = await (this.redis as Reporting).lukhasReport(lock, resume, events, meta, this.attempt.token, this.job.id!, RESUME_TTL_MS, pairs.length, ...pairs, ...step);
      if (sent === 0) return this.attempt.lost();
    }
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
      const texts = this.chunks(updates).map((u) => this.signed(u));
      this.sending = this.sending
        .then(() => this.send(saving ? Object.entries(saves).flat() : [], texts))
        // Redis unreachable: the job's return value still carries every end.
        .catch(() => {});
    });
  }
}

/**
 * A segment's end, encoded, within what a report may weigh: one whose outputs would make
 * it larger ends instead on the node with the largest output, as an output that cannot
 * cross (a `NodeOutputError` naming that node), with the outputs before it.
 */
export function fitted(settlement: SentSettlement, outputs: [number, unknown, number, number][], endedNodeStartedMs: number | undefined, maxJobBytes: number): string {
  const encoded = encode({ settlement, outputs, endedNodeStartedMs } satisfies RemoteEndReport);
  if (encoded.length <= maxJobBytes / 2) return encoded;
  const sizes = outputs.map(([, output]) => encode(output).length);
  const largest = sizes.length === 0 ? -1 : sizes.indexOf(Math.max(...sizes));
  if (largest < 0 || encoded.length - sizes[largest]! > maxJobBytes / 2) {
    // The settlement itself (a node's error) is what weighs: the node fails with word of it.
    const position = 'position' in settlement ? settlement.position : 0;
    const error = new RangeError(`the node's error takes about ${encoded.length} bytes encoded, above half the limit of ${maxJobBytes} bytes of a report (--max-job-bytes)`);
    return encode({ settlement: { kind: 'failed', position, error: serializeThrown(error) }, outputs: largest < 0 ? [] : outputs, endedNodeStartedMs } satisfies RemoteEndReport);
  }
  const [position] = outputs[largest]!;
  const cause = new RangeError(`its output takes ${sizes[largest]} bytes encoded, above half the limit of ${maxJobBytes} bytes of a report (--max-job-bytes)`);
  const kept = outputs.slice(0, largest);
  return encode({ settlement: { kind: 'unclonable', position, cause: serializeThrown(cause) }, outputs: kept, endedNodeStartedMs: undefined } satisfies RemoteEndReport);
}
