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
 *   bystander of a terminated thread). A job recovered more than `--max-stalled` times
 *   fails instead (`intake.ts`).
 * - A stop request arrives on the queue's stop channel (or as a mark found when the job
 *   is taken up) and becomes the pool's two-phase stop.
 * - Trust: a job is checked (size, shape, signature) before anything of it is decoded, and
 *   a node whose module lies outside the module roots is refused before anything is
 *   loaded (`checks.ts`, `trust.ts`, `plan/module-roots.ts`). A job refused, or whose
 *   fields do not even parse, fails at once and for good (`intake.ts`).
 * - Jobs are fetched one at a time, and not while every thread is held by synchronous
 *   code with `prefetch` segments per thread waiting: the others wait in Redis for
 *   whichever process is free first.
 */
import type { Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { Stop, type StopCode } from '../shared/board';
import { resolveOptions } from '../options';
import { SegmentDeadlines } from '../run/deadlines';
import type { Settlement } from '../pool/dispatcher';
import { PiscinaDispatcher } from '../pool/piscina-dispatcher';
import { sendSettlement, type SentSettlement } from '../shared/settlement';
import { serializeThrown } from '../shared/thrown';
import { checkPayload, fits, Refused } from './checks';
import { Intake, tolerantWorker } from './intake';
import { LIVENESS_CHECK_MS, readStopMessage, SegmentWatch } from './liveness';
import { Backlog, fitted, JobReporter, NodeLists, openSaved, withReportScript, type Running } from './jobs';
import { untilAborted, within } from './connection';
import { Attempts, type Attempt } from './locks';
import { NO_SECRET_WARNING, quoted } from './trust';
import { checkWorkerOptions, type WorkerProcessOptions } from './worker-options';
import { loadPeers } from './peers';
import { decode, encode, names, type JobData } from './wire';

export type { WorkerProcessOptions } from './worker-options';

/** A running worker process's handle. */
export interface RemoteWorker {
  /** Stops taking jobs, lets the running ones finish, and releases the pool and Redis. */
  close(): Promise<void>;
}

/**
 * Starts taking segment jobs from the queue.
 * @throws {MissingPackageError} when bullmq or ioredis is not installed (optional peer
 * dependencies: `npm install bullmq ioredis`).
 */
export async function startWorker(options: WorkerProcessOptions): Promise<RemoteWorker> {
  const settings = checkWorkerOptions(options);
  const { connection, signer, maxJobBytes, log, roots, queue: queueName, prefix } = settings;
  const { bullmq, ioredis } = loadPeers('A worker process of the BullMQ backend');
  const BullWorker = tolerantWorker(bullmq);
  const { Redis: RedisClient } = ioredis;
  const keys = names(prefix, queueName);
  if (!signer.signs) log(`warning: worker process on queue "${queueName}" with ${NO_SECRET_WARNING}`);
  const resolved = resolveOptions({
    threads: options.threads,
    tasksPerThread: options.tasksPerThread,
    resourceLimits: options.resourceLimits,
  });
  const running = new Map<string, Running>();
  const nodeLists = new NodeLists(roots);
  const dispatcher = new PiscinaDispatcher(resolved, {
    // A node took its thread down: its segment ends as crashed, not sent again.
    nodeCrashed: (runId, nodeId, exitCode, cause, element) => {
      for (const entry of running.values()) {
        const { payload, ticket } = entry;
        if (payload.runId !== runId || ticket === undefined || payload.element !== element) continue;
        const progress = ticket.progress();
        const position = progress.started ? progress.position : payload.first;
        if (entry.nodes.list[position]?.id !== nodeId) continue;
        entry.ending = { kind: 'crashed', position, exitCode, cause: serializeThrown(cause) };
        ticket.stop(Stop.Failure, 0);
      }
    },
    // Said, as the embedded pool's `threadExit` event says it: a terminated thread ends its nodes without a word of theirs.
    threadExited: (exit) => {
      const culprit = exit.nodeId === undefined ? '' : ` (node ${quoted(exit.nodeId)} of run ${quoted(exit.runId)})`;
      log(`worker thread ${exit.threadId} ended: ${exit.reason}${culprit}; a new one replaces it`);
    },
    threadReplaced: () => {},
  });
  const redis: Redis = new RedisClient({ ...(connection as object), maxRetriesPerRequest: null });
  withReportScript(redis);
  const intake = new Intake(bullmq, redis, keys.jobKey, keys.resumeKey, signer, maxJobBytes, log);
  const subscriber: Redis = redis.duplicate();
  redis.on('error', () => {});
  subscriber.on('error', () => {});
  // Awaited below with the rest of the start, which a signal may give up.
  const subscribed = subscriber.subscribe(keys.stopChannel);
  // As bytes (`messageBuffer`): ioredis decodes a `message` outside any handler, and one
  // too large to decode into a string would end this process.
  subscriber.on('messageBuffer', (_channel: Buffer, bytes: Buffer) => {
    const message = readStopMessage(bytes, log);
    // Only the stop of a segment running here is taken.
    const entry = message === undefined ? undefined : running.get(message.id);
    if (entry !== undefined) stop(entry, message!.code, message!.graceMs);
  });
  const stop = (entry: Running, code: StopCode, graceMs: number): void => {
    if (entry.stopped) return;
    entry.stopped = true;
    if (entry.ticket === undefined) entry.stopBefore = true;
    else entry.ticket.stop(code, graceMs);
  };
  // Messages on the stop channel are not kept (one published while reconnecting is lost);
  // the marks are, and are looked at now and then, with the runs' deadlines and executors.
  const watch = new SegmentWatch(redis, keys, running, stop, log);

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
      const encoded = fitted(settlement, outputs, endedNodeStartedMs, maxJobBytes);
      reporter.save(`${index}:end`, encoded);
      return encoded;
    };
    // Refused before anything is loaded: a module outside the roots, from the first node to run.
    for (let position = payload.first; position < nodes.list.length; position++) {
      const refusal = nodes.refusals[position];
      if (refusal === undefined) continue;
      const node = nodes.list[position]!;
      log(`refused node ${quoted(node.id)} of run ${quoted(payload.runId)}: its module ${refusal}`);
      const message = `Module of node "${node.id}" (${node.module}) is refused by the worker process: ${refusal}`;
      return end({ kind: 'load-failed', position, message, cause: serializeThrown(new Error(refusal)) });
    }
    // Not started past its run's deadline, nor for an executor that is gone.
    if (marked || entry.stopBefore || Date.now() >= payload.deadline) return end({ kind: 'stopped', position: payload.first });
    if (!(await watch.alive(payload.executor)) || entry.stopBefore) {
      if (!entry.stopBefore) log(`did not start a segment of run ${quoted(payload.runId)}: its executor ${quoted(payload.executor)} is gone (its liveness key has lapsed)`);
      return end({ kind: 'stopped', position: payload.first });
    }
    // Taken over from a process that died: resume after the last node it completed.
    let first = payload.first;
    let input = payload.input;
    for (let node = payload.first; node < nodes.list.length; node++) {
      const output = saved[`${index}:${node}`];
      if (output === undefined) break;
      let value: unknown;
      try {
        value = decode(output);
      } catch {
        break;
      }
      outputs.push([node, value, 0, 0]);
      first = node + 1;
      input = value;
    }
    if (first >= nodes.list.length) return end({ kind: 'done' });

    const last = nodes.list.length - 1;
    let endedNodeStartedAt: number | undefined;
    const settlement = await new Promise<Settlement>((resolve) => {
      const watch = new SegmentDeadlines(payload.timeouts, first, (position) => {
        entry.ending = { kind: 'timed-out', position };
        watch.ticket?.stop(Stop.NodeTimeout, payload.graceMs);
      });
      watch.submittedTo(dispatcher);
      watch.ticket = dispatcher.submit({
        run: { runId: payload.runId, pipelineId: payload.pipelineId },
        nodes: nodes.list,
        segmentId: nodes.segmentId,
        first,
        element: payload.element,
        attempts: payload.attempts,
        input,
        reportStarts: payload.reportStarts,
        timeouts: payload.timeouts,
        graceMs: payload.graceMs,
        deadline: payload.deadline,
        // This process's threads serve the segments it took in the order it took them.
        priority: 0,
        concurrencyKey: undefined,
        listener: {
          nodeStarted: (n) => reporter.update({ k: 's', i: index, n }),
          nodeCompleted: (n, output, startedAt, endedAt) => {
            outputs.push([n, output, startedAt - takenAt, endedAt - takenAt]);
            if (n < last) reporter.save(`${index}:${n}`, encode(output));
          },
          progress: (n, value) => {
            const b = encode(value);
            if (b.length <= maxJobBytes / 2) reporter.update({ k: 'p', i: index, n, b });
            else log(`dropped a progress value of node ${quoted(nodes.list[n]?.id)}: ${b.length} bytes, above half the limit of ${maxJobBytes}`);
          },
          settled: (ended, startedAt) => {
            watch.clearDeadlines();
            endedNodeStartedAt = startedAt;
            resolve(ended);
          },
          sent: () => watch.sent(),
        },
      });
      entry.ticket = watch.ticket;
    });
    return end(entry.ending ?? sendSettlement(settlement), endedNodeStartedAt === undefined ? undefined : endedNodeStartedAt - takenAt);
  };

  /** Runs a job whose data passed `checkJob`; resolves with its return value. */
  const runJob = async (attempt: Attempt, segments: readonly (readonly [string, string])[]): Promise<object> => {
    const { job } = attempt;
    const takenAt = dispatcher.now();
    const resumeKey = keys.resumeKey(job.id!);
    const reportKeys = { lock: keys.lockKey(job.id!), resume: resumeKey, events: keys.events, meta: keys.meta };
    const lost = (): void => attempts.lose(attempt, 'its lock is held by another attempt: the job went to another process');
    const reporter = new JobReporter(job, { token: attempt.token, number: attempt.number, lost }, redis, reportKeys, signer, maxJobBytes);
    attempt.reporter = reporter;
    // Every payload decoded and checked before any segment runs: a malformed one fails the job.
    const decoded = segments.map(([, encoded]) => {
      const payload = checkPayload(encoded);
      const nodes = nodeLists.get(payload.nodes);
      if (!fits(payload, nodes.list)) throw new Refused('a segment payload does not fit its node list');
      return { payload, nodes };
    });
    // In `running` before the marks are read: a stop published meanwhile is not missed.
    const entries = decoded.map(({ payload, nodes }, index) => {
      const entry: Running = { payload, nodes, ticket: undefined, stopBefore: attempt.lost, stopped: attempt.lost, ending: undefined, over: false, lost: attempt.lost };
      running.set(segments[index]![0], entry);
      backlog.add(entry);
      return entry;
    });
    attempt.entries = entries;
    try {
      const executors = [...new Set(entries.map((entry) => entry.payload.executor))];
      // Taken over: the executor hears so, signed, before anything of it runs.
      const [read, raw] = await Promise.all([
        redis.mget([...segments.map(([id]) => keys.stopKey(id)), ...executors.map((executor) => keys.liveKey(executor))]),
        redis.hgetall(resumeKey),
        attempt.number > 1 ? reporter.announce() : undefined,
      ]);
      executors.forEach((executor, index) => watch.seen(executor, read[segments.length + index]));
      const marks = read.slice(0, segments.length);
      const saved = openSaved(raw, job.id!, signer, log);
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
      return reporter.result(ends);
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
  worker.on('failed', (job, error) => intake.failedByBullmq(job, error));
  // A start that fails, or is given up, closes what it opened: the pool and every connection.
  const release = async (): Promise<void> => {
    // BullMQ's own start-up commands, cut short by the forced close below, reject with
    // ioredis's "Connection is closed." where nothing awaits them: not a crash of ours.
    const strays = (reason: unknown): void => {
      if (!(reason instanceof Error && reason.message === 'Connection is closed.')) throw reason;
    };
    process.on('unhandledRejection', strays);
    setTimeout(() => process.off('unhandledRejection', strays), CLOSE_WAIT_MS).unref();
    // Forced: no QUIT, which would wait for a Redis that may be gone.
    await Promise.allSettled([worker.close(true), dispatcher.destroy()]);
    // QUIT only where Redis answers; elsewhere (never, or no longer) it would only wait.
    await within(Promise.allSettled([subscriber, redis].filter((client) => client.status === 'ready').map((client) => client.quit())), CLOSE_WAIT_MS);
    subscriber.disconnect();
    redis.disconnect();
  };
  try {
    await untilAborted(options.signal, Promise.all([subscribed, worker.waitUntilReady(), dispatcher.ready()]));
    await untilAborted(options.signal, worker.startStalledCheckTimer());
  } catch (error) {
    await release();
    throw error;
  }

  const backlog = new Backlog();
  /** Attempts at jobs taken up and not yet finished; one that loses its lock stops its segments at once and reports nothing more. */
  const attempts = new Attempts(worker, lockDuration, (attempt, why) => {
    log(`lost the lock of job ${quoted(attempt.jobId)} (attempt ${attempt.number}): ${why}; its segments are stopped and their outcomes not reported`);
    attempt.reporter?.silence();
    for (const entry of attempt.entries) {
      entry.lost = true;
      stop(entry, Stop.Cancel, entry.payload.graceMs);
    }
  });
  // Locks of jobs fetched by hand are renewed by hand, at half their duration.
  const renewer = setInterval(() => {
    if (attempts.size === 0) return;
    attempts.renew().catch(() => {});
  }, lockDuration / 2);
  renewer.unref();
  // Given up by this process's clock before Redis can let them lapse (see `locks.ts`).
  const expiry = setInterval(() => attempts.expire(), Math.max(10, Math.min(100, lockDuration / 20)));
  expiry.unref();
  const watcher = setInterval(() => void watch.look().catch(() => {}), LIVENESS_CHECK_MS);
  watcher.unref();

  const take = (job: Job<JobData>, token: string, lockedAt: number): void => {
    const attempt: Attempt = { job, jobId: job.id!, token, number: job.attemptsStarted, entries: [], reporter: undefined, lockedAt, lost: false, done: Promise.resolve() };
    attempts.add(attempt);
    const { segments, failing } = intake.admit(job, token);
    if (segments === undefined) {
      attempt.done = failing!.finally(() => attempts.delete(attempt));
      return;
    }
    const done = runJob(attempt, segments)
      .then(
        // Its saved outputs go once it is completed: not before, when another process
        // that took it over (this one's lock having lapsed) may still need them. An
        // attempt that lost its lock reports nothing.
        async (result) => {
          if (attempt.lost) return;
          try {
            await job.moveToCompleted(result, token, false);
          } catch (error) {
            if (/Missing lock|lock/i.test((error as Error).message)) attempts.lose(attempt, `BullMQ refused its completion: ${(error as Error).message}`);
            throw error;
          }
          await redis.del(keys.resumeKey(job.id!));
        },
        (error: unknown) => {
          if (attempt.lost) return;
          if (error instanceof Refused) log(`refused job ${quoted(job.id)}: ${error.message}; nothing of it was run`);
          return intake.fail(job, token, error instanceof Error ? error : String(error));
        },
      )
      // The lock was lost (the job went to another process) or Redis is gone: the job's
      // fate is no longer this process's to report.
      .then(
        () => {},
        () => {},
      )
      .finally(() => attempts.delete(attempt));
    attempt.done = done;
  };

  let stopping = false;
  const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
  const fetching = (async () => {
    let seq = 0;
    while (!stopping) {
      // Full: every thread is held by synchronous code and `prefetch` segments per thread
      // wait. Polled: a thread starting or letting go is not an event this process hears of.
      while (!stopping && (attempts.size >= maxJobs || (dispatcher.allThreadsHeld() && backlog.atLeast(maxWaiting)))) await pause(1);
      if (stopping) break;
      const token = `${worker.id}:${++seq}`;
      try {
        const job = (await worker.getNextJob(token)) as Job<JobData> | undefined;
        // Taken, even while stopping: it runs to its end. Its lock was set after BullMQ
        // read the clock for its `processedOn`: what the lock's lapse is counted from.
        if (job !== undefined) take(job, token, performance.now() - Math.max(0, Date.now() - (job.processedOn ?? 0)));
      } catch {
        // Redis unreachable: try again shortly. (A job whose fields do not parse is handed
        // over all the same, and refused: see `intake.ts`.)
        if (!stopping) await pause(1_000);
      }
    }
  })();

  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= (async () => {
        stopping = true;
        // The fetch under way may still bring a job (it waits for one 1 s at most, while
        // Redis answers); then every segment taken runs to its end, or is stopped.
        await within(fetching, CLOSE_WAIT_MS);
        while (attempts.values().some((attempt) => attempt.entries.some((entry) => !entry.over))) await pause(20);
        // Their ends reported and their jobs completed, while Redis answers.
        await within(Promise.all(attempts.values().map((attempt) => attempt.done)), CLOSE_WAIT_MS);
        clearInterval(renewer);
        clearInterval(expiry);
        clearInterval(watcher);
        await release();
      })();
      return closing;
    },
  };
}

/** How long closing waits for Redis, at each step, before it drops the connections. */
const CLOSE_WAIT_MS = 2_000;
