/**
 * The BullMQ backend, worker-process side: takes jobs of segments from the queue and runs
 * them on this process's own piscina pool, with the same two-phase stop and the same
 * node deadlines as the embedded executor (`deadlines.ts`), here, where the threads are.
 *
 * - Each segment's end goes back as soon as it comes, as a progress update of its job
 *   (a turn's worth in one update), and all of them again as the job's return value;
 *   node starts and progress the same way, in order.
 * - What each segment has done so far is kept in Redis (a hash per job): if this process
 *   dies mid-segment (SIGKILL), BullMQ finds the job stalled once its lock lapses and
 *   hands it to another process, which skips the segments that ended and resumes the
 *   others at the node that was running (at-least-once for that node, as for a
 *   bystander of a terminated thread).
 * - A stop request arrives on the queue's stop channel (or as a mark found when the job
 *   is taken up) and becomes the pool's two-phase stop.
 * - Jobs are fetched one at a time, and not while every thread is held by synchronous
 *   code with `prefetch` segments per thread waiting: the others wait in Redis for
 *   whichever process is free first.
 */
import type { Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { ResourceLimits } from 'node:worker_threads';
import { Stop, type StopCode } from '../shared/board';
import { resolveOptions, show } from '../options';
import { NodeDeadlineWatch } from '../run/deadlines';
import type { Settlement } from '../pool/dispatcher';
import { PiscinaDispatcher } from '../pool/piscina-dispatcher';
import { sendSettlement, type SentSettlement } from '../shared/settlement';
import { serializeThrown } from '../shared/thrown';
import { connectionOptions, type RedisConnectionOptions } from './connection';
import { loadPeers } from './peers';
import { Backlog, JobReporter, NodeLists, type Running } from './jobs';
import {
  decode,
  encode,
  names,
  type JobData,
  type JobResult,
  type RemoteEndReport,
  type SegmentPayload,
  type StopMessage,
} from './wire';

export interface WorkerProcessOptions {
  /** Redis: a URL or ioredis connection options. */
  readonly connection: string | RedisConnectionOptions;
  /** @default 'lukhas' */
  readonly queue?: string;
  /** @default 'bull' */
  readonly prefix?: string;
  /** Threads of this process's pool. @default os.availableParallelism() */
  readonly threads?: number;
  /** @default 1024 */
  readonly tasksPerThread?: number;
  /** Jobs (each of up to 64 segments) this process runs at once, at most. @default threads * 64 */
  readonly concurrency?: number;
  /**
   * Segments per thread this process may hold that have not started yet while every
   * thread is held by synchronous code: it takes no other job then, so that jobs of
   * CPU-bound nodes wait in Redis for whichever process frees a thread first instead of
   * queueing behind a busy one. Nodes that wait (I/O, timers) leave their thread free,
   * and their jobs are taken as they come.
   * @default 32
   */
  readonly prefetch?: number;
  readonly resourceLimits?: ResourceLimits;
  /**
   * How long a job's lock lasts without renewal: a process that dies loses its jobs to
   * the others after at most `lockDurationMs + stalledIntervalMs`.
   * @default 10000
   */
  readonly lockDurationMs?: number;
  /** @default 5000 */
  readonly stalledIntervalMs?: number;
  /** How many times a job may be recovered from a dead process before it fails. @default 3 */
  readonly maxStalledCount?: number;
}

/** A running worker process's handle. */
export interface RemoteWorker {
  /** Stops taking jobs, lets the running ones finish, and releases the pool and Redis. */
  close(): Promise<void>;
}

const WORKER_OPTION_KEYS = [
  'connection',
  'queue',
  'prefix',
  'threads',
  'tasksPerThread',
  'concurrency',
  'prefetch',
  'resourceLimits',
  'lockDurationMs',
  'stalledIntervalMs',
  'maxStalledCount',
];
const COUNTS = ['concurrency', 'prefetch', 'lockDurationMs', 'stalledIntervalMs', 'maxStalledCount'] as const;

/** Bad options fail before anything connects, naming the option. */
function checkWorkerOptions(options: WorkerProcessOptions): void {
  if (options === null || typeof options !== 'object') throw new TypeError(`Expected worker process options, got ${show(options)}`);
  for (const key of Object.keys(options)) {
    if (!WORKER_OPTION_KEYS.includes(key)) {
      throw new TypeError(`Unknown worker process option \`${key}\`; known options are: ${WORKER_OPTION_KEYS.join(', ')}`);
    }
  }
  for (const key of COUNTS) {
    const value = options[key];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) {
      throw new RangeError(`Expected \`${key}\` to be a positive integer, got ${show(value)}`);
    }
  }
  for (const key of ['queue', 'prefix'] as const) {
    const value = options[key];
    if (value !== undefined && (typeof value !== 'string' || value === '')) {
      throw new TypeError(`Expected \`${key}\` to be a non-empty string, got ${show(value)}`);
    }
  }
}

/**
 * Starts taking segment jobs from the queue.
 * @throws {MissingPackageError} when bullmq or ioredis is not installed (optional peer
 * dependencies: `npm install bullmq ioredis`).
 */
export async function startWorker(options: WorkerProcessOptions): Promise<RemoteWorker> {
  checkWorkerOptions(options);
  const { bullmq, ioredis } = loadPeers('A worker process of the BullMQ backend');
  const { Worker: BullWorker } = bullmq;
  const { Redis: RedisClient } = ioredis;
  const connection = connectionOptions(options.connection);
  const queueName = options.queue ?? 'lukhas';
  const prefix = options.prefix ?? 'bull';
  const keys = names(prefix, queueName);
  const resolved = resolveOptions({
    threads: options.threads,
    tasksPerThread: options.tasksPerThread,
    resourceLimits: options.resourceLimits,
  });
  const running = new Map<string, Running>();
  const nodeLists = new NodeLists();
  const dispatcher = new PiscinaDispatcher(resolved, {
    // A node took its thread down: its segment ends as crashed, not sent again.
    nodeCrashed: (runId, nodeId, exitCode, cause) => {
      for (const entry of running.values()) {
        const { payload, ticket } = entry;
        if (payload.runId !== runId || ticket === undefined) continue;
        const progress = ticket.progress();
        const position = progress.started ? progress.position : payload.first;
        if (entry.nodes.list[position]?.id !== nodeId) continue;
        entry.ending = { kind: 'crashed', position, exitCode, cause: serializeThrown(cause) };
        ticket.stop(Stop.Failure, 0);
      }
    },
    threadExited: () => {},
    threadReplaced: () => {},
  });
  const redis: Redis = new RedisClient({ ...(connection as object), maxRetriesPerRequest: null });
  const subscriber: Redis = redis.duplicate();
  redis.on('error', () => {});
  subscriber.on('error', () => {});
  await subscriber.subscribe(keys.stopChannel);
  subscriber.on('message', (_channel: string, text: string) => {
    let message: StopMessage;
    try {
      message = JSON.parse(text) as StopMessage;
    } catch {
      return;
    }
    const entry = running.get(message.id);
    if (entry !== undefined) stop(entry, message.code as StopCode, message.graceMs ?? Infinity);
  });
  const stop = (entry: Running, code: StopCode, graceMs: number): void => {
    if (entry.stopped) return;
    entry.stopped = true;
    if (entry.ticket === undefined) entry.stopBefore = true;
    else entry.ticket.stop(code, graceMs);
  };
  /**
   * Messages on the stop channel are not kept: one published while this process was
   * reconnecting is lost. The marks are, and are read again now and then.
   */
  const readMarks = async (): Promise<void> => {
    const entries = [...running].filter(([, entry]) => !entry.over && !entry.stopped);
    if (entries.length === 0) return;
    const marks = await redis.mget(entries.map(([id]) => keys.stopKey(id)));
    entries.forEach(([, entry], index) => {
      const mark = marks[index];
      if (mark !== null && mark !== undefined) stop(entry, Number(mark) as StopCode, entry.payload.graceMs);
    });
  };

  /** Runs one segment of a job; resolves with its end, encoded. */
  const runSegment = async (
    entry: Running,
    index: number,
    marked: boolean,
    saved: Record<string, string>,
    reporter: JobReporter,
    takenAt: number,
  ): Promise<string> => {
    const { payload, nodes } = entry;
    const done = saved[`${index}:end`];
    if (done !== undefined) return done;
    const outputs: [number, unknown, number, number][] = [];
    const end = (settlement: SentSettlement, endedNodeStartedMs?: number): string => {
      const encoded = encode({ settlement, outputs, endedNodeStartedMs } satisfies RemoteEndReport);
      reporter.save(`${index}:end`, encoded);
      return encoded;
    };
    if (marked || entry.stopBefore) return end({ kind: 'stopped', position: payload.first });
    // Taken over from a process that died: resume after the last node it completed.
    let first = payload.first;
    let input = payload.input;
    for (let node = payload.first; node < nodes.list.length; node++) {
      const output = saved[`${index}:${node}`];
      if (output === undefined) break;
      outputs.push([node, decode(output), 0, 0]);
      first = node + 1;
      input = outputs[outputs.length - 1]![1];
    }
    if (first >= nodes.list.length) return end({ kind: 'done' });

    const last = nodes.list.length - 1;
    let endedNodeStartedAt: number | undefined;
    const settlement = await new Promise<Settlement>((resolve) => {
      const ticket = dispatcher.submit({
        runId: payload.runId,
        pipelineId: payload.pipelineId,
        nodes: nodes.list,
        segmentId: nodes.segmentId,
        first,
        attempts: payload.attempts,
        input,
        reportStarts: payload.reportStarts,
        timeouts: payload.timeouts,
        graceMs: payload.graceMs,
        listener: {
          nodeStarted: (n) => reporter.update({ k: 's', i: index, n }),
          nodeCompleted: (n, output, startedAt, endedAt) => {
            outputs.push([n, output, startedAt - takenAt, endedAt - takenAt]);
            if (n < last) reporter.save(`${index}:${n}`, encode(output));
          },
          progress: (n, value) => reporter.update({ k: 'p', i: index, n, b: encode(value) }),
          settled: (ended, startedAt) => {
            watch.clear();
            endedNodeStartedAt = startedAt;
            resolve(ended);
          },
        },
      });
      entry.ticket = ticket;
      const watch = new NodeDeadlineWatch(ticket, payload.timeouts, first, (position) => {
        entry.ending = { kind: 'timed-out', position };
        ticket.stop(Stop.NodeTimeout, payload.graceMs);
      });
    });
    return end(entry.ending ?? sendSettlement(settlement), endedNodeStartedAt === undefined ? undefined : endedNodeStartedAt - takenAt);
  };

  const runJob = async (job: Job<JobData>): Promise<JobResult> => {
    const takenAt = dispatcher.now();
    const resumeKey = keys.resumeKey(job.id!);
    const reporter = new JobReporter(job, redis, resumeKey);
    const segments = job.data.s;
    // In `running` before the marks are read: a stop published meanwhile is not missed.
    const entries = segments.map(([id, encoded]) => {
      const payload = decode(encoded) as SegmentPayload;
      const entry: Running = { payload, nodes: nodeLists.get(payload.nodes), ticket: undefined, stopBefore: false, stopped: false, ending: undefined, over: false };
      running.set(id, entry);
      backlog.add(entry);
      return entry;
    });
    try {
      const [marks, saved] = await Promise.all([
        redis.mget(segments.map(([id]) => keys.stopKey(id))),
        redis.hgetall(resumeKey),
      ]);
      let left = entries.length;
      const ends = await Promise.all(
        entries.map(async (entry, index) => {
          const encoded = await runSegment(entry, index, marks[index] !== null, saved, reporter, takenAt);
          entry.over = true;
          backlog.delete(entry);
          if (running.get(segments[index]![0]) === entry) running.delete(segments[index]![0]);
          // The last one goes with the job's end alone.
          if (--left > 0) reporter.update({ k: 'e', i: index, b: encoded });
          return encoded;
        }),
      );
      await reporter.drained();
      return { e: ends };
    } finally {
      segments.forEach(([id], index) => {
        const entry = entries[index]!;
        entry.over = true;
        backlog.delete(entry);
        // The same job taken up again here (its lock lapsed) has entries of its own.
        if (running.get(id) === entry) running.delete(id);
      });
    }
  };

  // Jobs are fetched here rather than by BullMQ's own loop, which takes as many as its
  // concurrency allows at once: one process would take a whole burst of jobs of
  // CPU-bound nodes while the others idle. This one takes a job only while its threads
  // keep up (see `prefetch`), and the rest wait in Redis for whoever is free first.
  const threads = resolved.threads;
  const maxJobs = options.concurrency ?? threads * 64;
  const maxWaiting = (options.prefetch ?? 32) * threads;
  const lockDuration = options.lockDurationMs ?? 10_000;
  const worker: Worker = new BullWorker(queueName, null, {
    connection,
    prefix,
    lockDuration,
    stalledInterval: options.stalledIntervalMs ?? 5_000,
    maxStalledCount: options.maxStalledCount ?? 3,
    removeOnComplete: { age: 60 },
    removeOnFail: { age: 60 },
    // An idle fetch waits this many seconds for a job: the most a close waits for it.
    drainDelay: 1,
  });
  worker.on('error', () => {});
  await worker.waitUntilReady();
  await dispatcher.ready();
  await worker.startStalledCheckTimer();

  const backlog = new Backlog();
  /** Jobs taken up and not yet finished, with their lock tokens. */
  const active = new Map<string, { readonly token: string; readonly done: Promise<void> }>();
  // Locks of jobs fetched by hand are renewed by hand, at half their duration.
  const renewer = setInterval(() => {
    if (active.size === 0) return;
    const ids = [...active.keys()];
    worker.extendJobLocks(ids, ids.map((id) => active.get(id)!.token), lockDuration).catch(() => {});
    readMarks().catch(() => {});
  }, lockDuration / 2);
  renewer.unref();

  const take = (job: Job<JobData>, token: string): void => {
    const done = runJob(job)
      .then(
        // Its saved outputs go once it is completed: not before, when another process
        // that took it over (this one's lock having lapsed) may still need them.
        async (result) => {
          await job.moveToCompleted(result, token, false);
          await redis.del(keys.resumeKey(job.id!));
        },
        (error: unknown) => job.moveToFailed(error instanceof Error ? error : new Error(String(error)), token, false),
      )
      // The lock was lost (the job went to another process) or Redis is gone: the job's
      // fate is no longer this process's to report.
      .then(
        () => {},
        () => {},
      )
      .finally(() => {
        if (active.get(job.id!)?.token === token) active.delete(job.id!);
      });
    active.set(job.id!, { token, done });
  };

  let stopping = false;
  const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
  const fetching = (async () => {
    let seq = 0;
    while (!stopping) {
      // Full: every thread is held by synchronous code and `prefetch` segments per thread
      // wait. Polled: a thread starting or letting go is not an event this process hears of.
      while (!stopping && (active.size >= maxJobs || (dispatcher.allThreadsHeld() && backlog.atLeast(maxWaiting)))) await pause(1);
      if (stopping) break;
      const token = `${worker.id}:${++seq}`;
      try {
        const job = (await worker.getNextJob(token)) as Job<JobData> | undefined;
        // Taken, even while stopping: it runs to its end.
        if (job !== undefined) take(job, token);
      } catch {
        // Redis unreachable: try again shortly.
        if (!stopping) await pause(1_000);
      }
    }
  })();

  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= (async () => {
        stopping = true;
        // The fetch under way may still bring a job; then every job taken runs to its end.
        await fetching;
        while (active.size > 0) await Promise.all([...active.values()].map((entry) => entry.done));
        clearInterval(renewer);
        await worker.close();
        await dispatcher.destroy();
        await Promise.allSettled([subscriber.quit(), redis.quit()]);
      })();
      return closing;
    },
  };
}
