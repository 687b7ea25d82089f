/**
 * The BullMQ backend, main-thread side: segments go as jobs of a BullMQ queue in Redis,
 * run by worker processes (`lukhas-orchestrator worker`) on any machine, each on its own
 * local pool (see `worker.ts`). A turn's segments travel together, as a few jobs added
 * in bulk (a job's bookkeeping costs Redis more than a segment's data), and each
 * segment's end and its nodes' outputs come back as soon as it ends, as a progress
 * update of its job; starts and progress likewise; all through the queue's event stream.
 *
 * Node timeouts are enforced by the worker process that runs the node (it watches its
 * own threads, as the embedded executor does); the pipeline timeout and cancellation
 * here, by a stop request on a Redis channel (and a mark the process checks when it
 * takes a job up), which the process turns into the two-phase stop of its pool.
 *
 * bullmq is loaded only when this backend is used: an executor without it needs no Redis.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { timerDelay } from '../shared/delay';
import { receiveSettlement } from '../shared/settlement';
import { BackendUnavailableException } from '../errors';
import { randomUUID } from 'node:crypto';
import type { Dispatcher, DispatcherEvents, DispatcherOptions, DispatcherStats, SegmentJob, SegmentTicket, Settlement, ThreadHealth } from '../pool/dispatcher';
import type { TaskNode } from '../shared/protocol';
import { checkEndReport, checkOutcome, checkUpdate, Refused } from './checks';
import { where, type RedisConnectionOptions } from './connection';
import { loadPeers } from './peers';
import { EventReader, type StreamEvent } from './events';
import { deliver, RemoteTicket } from './remote-ticket';
import { Heartbeat, markTtl } from './liveness';
import { Sweeper, SWEEP_MS } from './sweep';
import { CurrentAttempts } from './current-attempts';
import { quoted, type Signer } from './trust';
import { SendQueue, packJobs } from './send-queue';
import { decode, encode, names, type JobData, type RemoteEndReport, type SegmentPayload, type StopMessage } from './wire';

/** What the backend was given besides its connection and queue. */
export interface BullmqSettings {
  readonly stopTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly signer: Signer;
  /** Jobs sent and outcomes read weigh at most this. */
  readonly maxJobBytes: number;
  /** Segments in Redis (sent and not ended) at most; the rest wait (see `send-queue.ts`). */
  readonly maxSegmentsInFlight: number;
  readonly log: (line: string) => void;
}

/** How long closing waits for Redis to acknowledge before it drops the connections. */
const CLOSE_WAIT_MS = 2_000;
/** The name of every job: signed with its data. */
const JOB_NAME = 'segments';
/** Job states in which no process has taken the job up yet. */
const NOT_TAKEN = new Set(['waiting', 'prioritized', 'delayed', 'waiting-children', 'unknown']);
export class BullmqDispatcher implements Dispatcher {
  readonly enforcesNodeTimeouts = true;
  /** The worker processes load the node modules, wherever they run. */
  readonly modulesAreLocal = false;
  private readonly queue: Queue<JobData>;
  private readonly events: EventReader;
  /** For stop requests: a mark and a message. */
  private readonly redis: Redis;
  /** The connections this dispatcher opened: this one, the queue's, the event reader's (which closes its own). */
  private readonly clients: Redis[];
  /** Segments in flight, and the jobs that carry them. */
  private readonly tickets = new Map<string, RemoteTicket>();
  private readonly jobs = new Map<string, RemoteTicket[]>();
  /** The current attempt at each job in flight: outcomes of earlier ones are ignored. */
  private readonly attempts: CurrentAttempts;
  private readonly encodedNodes = new WeakMap<readonly TaskNode[], string>();
  private readonly names: ReturnType<typeof names>;
  private readonly connected: Promise<void>;
  private readonly sweeper: Sweeper;
  private readonly sweeping: NodeJS.Timeout;
  private readonly heartbeat: Heartbeat;
  private seq = 0;
  private jobSeq = 0;
  private workers = 0;
  /** Segments waiting to be sent (see `send-queue.ts`), and whether a flush is due. */
  private readonly sending: SendQueue<RemoteTicket>;
  private flushDue = false;
  private destroyed = false;
  /** The latest connection error, for the message of a failed `ready()`. */
  private lastError: Error | undefined;
  /** Redis's host and port, for messages (never its password). */
  private readonly where: string;
  /** Unique among every executor on the queue: ids of jobs and segments start with it; its liveness key names it. */
  private readonly idPrefix = randomUUID();

  constructor(
    connection: RedisConnectionOptions,
    queueName: string,
    prefix: string,
    private readonly settings: BullmqSettings,
    _options: DispatcherOptions,
    _events: DispatcherEvents,
  ) {
    const { bullmq, ioredis } = loadPeers('The BullMQ backend');
    const { Queue } = bullmq;
    const { Redis: RedisClient } = ioredis;
    this.names = names(prefix, queueName);
    this.sending = new SendQueue(settings.maxSegmentsInFlight);
    this.attempts = new CurrentAttempts(!settings.signer.signs);
    // Connections of our own, given to BullMQ as shared ones: closing can then drop them
    // even when Redis never answered (BullMQ's own wait for a first connection).
    const client = (): Redis => new RedisClient({ ...(connection as object), maxRetriesPerRequest: null });
    this.redis = client();
    this.clients = [this.redis, client()];
    this.queue = new Queue<JobData>(queueName, {
      connection: this.clients[1]!,
      prefix,
      // Enough events kept for a slow reader; finished jobs kept a minute for the sweep.
      streams: { events: { maxLen: 100_000 } },
      defaultJobOptions: { removeOnComplete: { age: 60 }, removeOnFail: { age: 60 } },
    });
    // Connection trouble is reported on these (without listeners it would crash the process).
    const remember = (error: Error): void => {
      this.lastError = error;
    };
    const reader = client();
    this.queue.on('error', remember);
    for (const redis of [...this.clients, reader]) redis.on('error', remember);
    // Its own reader of the queue's events, which nothing written there can stop (see events.ts).
    const onEvent = (event: StreamEvent): void => {
      try {
        this.onEvent(event);
      } catch (error) {
        this.settings.log(`could not handle an event of job ${quoted(event.jobId)}: ${(error as Error).message}`);
      }
    };
    this.events = new EventReader(reader, `${prefix}:${queueName}:events`, onEvent, remember, settings.maxJobBytes);
    this.where = where(connection);
    this.connected = Promise.all([this.queue.waitUntilReady(), this.events.ready]).then(() => undefined);
    this.connected.catch(() => {});
    this.sweeper = new Sweeper(this.redis, this.queue, this.names.jobKey, () => [...this.jobs], {
      result: (jobId, raw) => this.onOutcome(jobId, 'result', raw),
      failed: (jobId, reason) => this.onFailed(jobId, reason),
      lost: (jobId) => this.lost(jobId),
    });
    this.sweeping = setInterval(() => void this.sweeper.look(), SWEEP_MS);
    this.sweeping.unref();
    // While it lives, worker processes run its segments (see `liveness.ts`).
    this.heartbeat = new Heartbeat(this.redis, this.names.liveKey(this.idPrefix));
  }

  now(): number {
    return performance.now();
  }

  /** Connected to Redis; rejects if it does not answer within `connectTimeoutMs`. */
  ready(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const cause = this.lastError;
        const why = cause === undefined ? '' : `: ${cause.message}`;
        const message = `The BullMQ backend could not reach Redis at ${this.where} within ${this.settings.connectTimeoutMs} ms${why}`;
        reject(new BackendUnavailableException(message, { backend: 'bullmq', cause }));
      }, this.settings.connectTimeoutMs);
      this.connected.then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  submit(job: SegmentJob): SegmentTicket {
    let encoded: string | undefined;
    let unclonable: unknown;
    try {
      const payload: SegmentPayload = {
        runId: job.run.runId,
        pipelineId: job.run.pipelineId,
        nodes: this.encodeNodes(job.nodes),
        first: job.first,
        ...(job.element === undefined ? {} : { element: job.element }),
        attempts: job.attempts,
        input: job.input,
        timeouts: job.timeouts,
        graceMs: job.graceMs,
        reportStarts: job.reportStarts,
        deadline: job.deadline,
        executor: this.idPrefix,
      };
      encoded = encode(payload);
    } catch (cause) {
      unclonable = cause;
    }
    if (encoded !== undefined && encoded.length > this.settings.maxJobBytes) {
      unclonable = new RangeError(`it takes ${encoded.length} bytes encoded, above the BullMQ backend's maxJobBytes (${this.settings.maxJobBytes})`);
      encoded = undefined;
    }
    const ticket = new RemoteTicket((ticket, code, graceMs) => this.stop(ticket, code, graceMs), `${this.idPrefix}-${++this.seq}`, job, encoded);
    this.tickets.set(ticket.id, ticket);
    if (encoded === undefined) {
      queueMicrotask(() => this.settle(ticket, { kind: 'input-unclonable', cause: unclonable }));
      return ticket;
    }
    this.sending.push(ticket);
    this.scheduleFlush();
    return ticket;
  }

  /** The same node list (every run of a plan without params) is encoded once. */
  private encodeNodes(nodes: readonly TaskNode[]): string {
    let encoded = this.encodedNodes.get(nodes);
    if (encoded === undefined) this.encodedNodes.set(nodes, (encoded = encode(nodes)));
    return encoded;
  }

  private scheduleFlush(): void {
    if (this.flushDue) return;
    this.flushDue = true;
    queueMicrotask(() => this.flush());
  }

  /**
   * Sends the segments that may go (see `send-queue.ts`) as a few jobs added in one go,
   * once the event stream is read so that no end goes unheard.
   */
  private flush(): void {
    this.flushDue = false;
    const ready = this.sending.take();
    if (ready.length === 0) return;
    const jobs = packJobs(ready, this.settings.maxJobBytes, (tickets) => {
      const jobId = `${this.idPrefix}-j${++this.jobSeq}`;
      this.jobs.set(jobId, tickets);
      const s = tickets.map((ticket) => [ticket.id, ticket.payload!] as const);
      const m = this.settings.signer.sign('job', jobId, JOB_NAME, JSON.stringify(s));
      return { name: JOB_NAME, data: m === undefined ? { s } : { s, m }, opts: { jobId } };
    });
    this.connected
      .then(() => this.queue.addBulk(jobs))
      .then(() => {
        for (const ticket of ready) ticket.added = true;
      })
      .catch((cause: unknown) => {
        for (const ticket of ready) this.settle(ticket, { kind: 'crashed', position: ticket.job.first, exitCode: undefined, cause });
      });
  }

  stop(ticket: RemoteTicket, code: number, graceMs: number): void {
    if (ticket.settled || ticket.stopCode !== 0) return;
    ticket.stopCode = code;
    // Not sent yet: it never will be. Or the worker process already stopped it (its deadline passed).
    if (ticket.jobId === undefined || ticket.stoppedThere) {
      this.sending.remove(ticket);
      return this.settle(ticket, { kind: 'stopped', position: ticket.job.first });
    }
    const jobId = ticket.jobId;
    const message: StopMessage = { id: ticket.id, code, graceMs };
    // The process that has it may be dead: the run does not wait for ever.
    const wait = timerDelay(graceMs + this.settings.stopTimeoutMs);
    ticket.stopTimer = setTimeout(() => this.settle(ticket, { kind: 'killed', position: ticket.job.first }), wait);
    void (async () => {
      try {
        await this.connected;
        // A mark for the process that takes the job up later, then word to the one that
        // has it. Past the run's deadline, no process starts the segment: the mark lives until then.
        await this.redis.set(this.names.stopKey(ticket.id), String(code), 'PX', markTtl(ticket.job.deadline));
        await this.redis.publish(this.names.stopChannel, JSON.stringify(message));
        // Not taken up yet: whoever takes it up will find the mark and skip the segment.
        if (NOT_TAKEN.has(await this.queue.getJobState(jobId))) this.settle(ticket, { kind: 'stopped', position: ticket.job.first });
      } catch {
        // Redis is gone: the run ends with what it has; the segment, if it runs, is ignored.
        this.settle(ticket, { kind: 'stopped', position: ticket.job.first });
      }
    })();
  }

  stats(): DispatcherStats {
    const tasksQueued = this.sending.waiting;
    return { threads: this.workers, tasksInFlight: this.tickets.size - tasksQueued, tasksQueued, tasksWaiting: 0, terminations: 0, crashes: 0, resends: 0 };
  }

  async ping(timeoutMs: number): Promise<ThreadHealth[]> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    const workers = await Promise.race([this.queue.getWorkers().catch(() => undefined), late]);
    clearTimeout(timer);
    if (workers === undefined) return [];
    this.workers = workers.length;
    return workers.map((_, i) => ({ threadId: i + 1, responsive: true, heldBy: undefined }));
  }

  busyMs = (): number => 0;

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    clearInterval(this.sweeping);
    for (const ticket of [...this.tickets.values()]) {
      this.stop(ticket, 1, 0);
      this.settle(ticket, { kind: 'stopped', position: ticket.job.first });
    }
    // Redis may be unreachable: closing politely would then wait for ever.
    const polite = (async () => {
      await Promise.allSettled([this.events.close(), this.queue.close(), this.heartbeat.stop()]);
      await Promise.allSettled(this.clients.map((redis) => redis.quit()));
    })();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)));
    await Promise.race([polite, late]);
    clearTimeout(timer);
    for (const redis of this.clients) redis.disconnect();
  }

  // -------------------------------------------------------------------------

  private settle(ticket: RemoteTicket, settlement: Settlement, startedAt?: number): void {
    if (ticket.settled) return;
    ticket.settled = true;
    clearTimeout(ticket.stopTimer);
    this.tickets.delete(ticket.id);
    // Its room in Redis goes to the next segment waiting.
    if (ticket.jobId !== undefined && this.sending.ended()) this.scheduleFlush();
    if (ticket.jobId !== undefined && this.jobs.get(ticket.jobId)?.every((other) => other.settled)) {
      this.jobs.delete(ticket.jobId);
      this.attempts.forget(ticket.jobId);
    }
    ticket.job.listener.settled(settlement, startedAt);
  }

  /** A segment ended: its nodes' outputs, then its end. */
  private ended(ticket: RemoteTicket, encoded: unknown): void {
    if (ticket.settled) return;
    let result: RemoteEndReport;
    try {
      result = checkEndReport(encoded, ticket.job.first, ticket.job.nodes.length);
    } catch (error) {
      // Signed, or no secret is in use: it fails its run, and no other.
      this.settings.log(`refused the end of segment ${ticket.id} (job ${ticket.jobId}): ${(error as Error).message}`);
      return this.settle(ticket, { kind: 'crashed', position: ticket.job.first, exitCode: undefined, cause: error });
    }
    // Times since the job was taken up: it cannot have been before it was sent, nor
    // can anything have ended after now.
    const now = this.now();
    const at = (ms: number): number => Math.min(ticket.submittedAt + ms, now);
    for (const [node, output, startedMs, endedMs] of result.outputs) {
      ticket.job.listener.nodeCompleted(node, output, at(startedMs), at(endedMs), false);
    }
    // Stopped by the worker process, unasked: its run's deadline passed there (or its
    // executor looked gone). The run's own timer stops it here, and finds it ended.
    if (result.settlement.kind === 'stopped' && ticket.stopCode === 0) {
      ticket.stoppedThere = true;
      return;
    }
    const { endedNodeStartedMs } = result;
    this.settle(ticket, receiveSettlement(result.settlement), endedNodeStartedMs === undefined ? undefined : at(endedNodeStartedMs));
  }

  /**
   * An event of the queue's stream, as text (a field above the size limit as bytes): only those of this executor's jobs are read
   * further. With a secret, none that is not signed decides a run's fate: a job's
   * attempts are known from its signed outcomes alone, and its `failed` event only has
   * its state in Redis looked at (see `sweep.ts`).
   */
  private onEvent(event: StreamEvent): void {
    const { jobId } = event;
    if (typeof jobId !== 'string' || !this.jobs.has(jobId)) return;
    if (event.event === 'active') this.attempts.activated(jobId);
    else if (event.event === 'progress') this.onOutcome(jobId, 'progress', event.data);
    else if (event.event === 'completed') this.onOutcome(jobId, 'result', event.returnvalue);
    else if (event.event === 'failed' && this.settings.signer.signs) void this.sweeper.confirm(jobId);
    else if (event.event === 'failed') {
      const reason = event.failedReason;
      this.onFailed(jobId, typeof reason === 'string' ? reason : reason === undefined ? 'unknown' : `a reason of ${reason.length} bytes, too large to read`);
    }
  }

  /**
   * A job's progress update or return value: checked for size and signature before
   * anything of it is decoded. One that fails is ignored; one that is authentic (or
   * unsigned, with no secret in use) but malformed fails the job's runs, and no others.
   */
  private onOutcome(jobId: string, domain: 'progress' | 'result', raw: unknown): void {
    const tickets = this.jobs.get(jobId);
    if (tickets === undefined) return;
    let body: unknown[];
    let attempt: number;
    const what = domain === 'progress' ? 'progress update' : 'return value';
    try {
      ({ body, attempt } = checkOutcome(raw, domain, jobId, this.settings.signer, this.settings.maxJobBytes));
    } catch (error) {
      this.settings.log(`ignored a ${what} of job ${quoted(jobId)}: ${(error as Error).message}`);
      return;
    }
    const current = this.attempts.outdated(jobId, attempt);
    if (current !== undefined) return this.settings.log(`ignored a ${what} of job ${quoted(jobId)} from its attempt ${attempt}: attempt ${current} has it now`);
    if (domain === 'result') {
      tickets.forEach((ticket, index) => {
        // null: an end sent as a progress update, left out of a return value that would weigh too much.
        if (!ticket.settled && body[index] !== null) deliver(() => this.ended(ticket, body[index]));
      });
      return;
    }
    for (const item of body) {
      let update;
      try {
        update = checkUpdate(item, tickets.length, (index) => tickets[index]!.job.nodes.length);
      } catch (error) {
        return this.onFailed(jobId, `a progress update of the job was refused: ${(error as Refused).message}`);
      }
      const ticket = tickets[update.i]!;
      if (ticket.settled) continue;
      const { listener } = ticket.job;
      deliver(() => {
        if (update.k === 's') listener.nodeStarted(update.n, this.now());
        else if (update.k === 'p') this.progressed(ticket, update.n, update.b);
        else this.ended(ticket, update.b);
      });
    }
  }

  private progressed(ticket: RemoteTicket, position: number, encoded: string): void {
    let value: unknown;
    try {
      value = decode(encoded);
    } catch (error) {
      this.settings.log(`ignored a progress value of segment ${ticket.id}: ${(error as Error).message}`);
      return;
    }
    ticket.job.listener.progress(position, value);
  }

  /** A job Redis no longer has (see `sweep.ts`): its runs fail now, not at their timeout. */
  private lost(jobId: string): void {
    for (const ticket of this.jobs.get(jobId) ?? []) {
      const why = `Redis at ${this.where} lost the BullMQ job of segment ${ticket.id} of run "${ticket.job.run.runId}" (restarted without persistence, or it lost its last writes)`;
      deliver(() => this.settle(ticket, { kind: 'failed', position: ticket.job.first, error: new BackendUnavailableException(why, { backend: 'bullmq' }) }));
    }
  }

  private onFailed(jobId: string, reason: string): void {
    const tickets = this.jobs.get(jobId);
    if (tickets === undefined) return;
    const cause = new Error(`the BullMQ job of the segment failed: ${reason.length > 1_000 ? `${reason.slice(0, 1_000)}...` : reason}`);
    for (const ticket of tickets) deliver(() => this.settle(ticket, { kind: 'crashed', position: ticket.job.first, exitCode: undefined, cause }));
  }
}
