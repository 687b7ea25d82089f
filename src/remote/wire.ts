/**
 * What travels through Redis between an executor with the BullMQ backend and its worker
 * processes. Values cross as V8's serialization (the structured clone format, so the
 * same values cross as between threads), base64 in JSON; errors as `Thrown`.
 */
import { deserialize, serialize } from 'node:v8';
import type { SentSettlement } from '../shared/settlement';

/** A segment to run. */
export interface SegmentPayload {
  readonly runId: string;
  readonly pipelineId: string;
  /**
   * `encode(TaskNode[])`: every run of a plan sends the same, encoded once by the
   * executor and decoded once by each worker process.
   */
  readonly nodes: string;
  readonly first: number;
  /** For an element of a map node: its position (`ctx.index`). */
  readonly element?: number;
  readonly attempts: readonly number[];
  readonly input: unknown;
  readonly timeouts: readonly number[];
  readonly graceMs: number;
  readonly reportStarts: boolean;
  /** The run's deadline, wall clock ms (Infinity: none): no worker process starts the segment past it. */
  readonly deadline: number;
  /** The executor's id: its liveness key is `names().liveKey(executor)`. */
  readonly executor: string;
}

/**
 * A BullMQ job's data: the segments sent in one go, `[segmentId, encode(SegmentPayload)]`.
 * One job per segment would cost Redis a job's bookkeeping for each; a turn's segments
 * travel as a few jobs instead, and end one by one.
 */
export interface JobData {
  readonly s: readonly (readonly [string, string])[];
  /** With a shared secret: the MAC of `JSON.stringify(s)` (see `trust.ts`). */
  readonly m?: string;
}

/**
 * What a worker process says of a job's segments as they run, as BullMQ progress
 * updates `{ u: Update[], a, m? }` (`a`: the attempt at the job they come from, BullMQ's
 * `attemptsStarted`, which it bumps each time it hands the job to a process; `m`, with a
 * shared secret: the MAC of `JSON.stringify(u)` for that attempt), in order, a turn's
 * worth at a time. `i` is the segment's index in the job.
 */
export type Update =
  /** Node `n` started (only when the executor asks for starts). */
  | { readonly k: 's'; readonly i: number; readonly n: number }
  /** Node `n` reported progress `b`. */
  | { readonly k: 'p'; readonly i: number; readonly n: number; readonly b: string }
  /** The segment ended: `encode(RemoteEndReport)`. */
  | { readonly k: 'e'; readonly i: number; readonly b: string };

/**
 * A BullMQ job's return value: every segment's end, `encode(RemoteEndReport)`, by index;
 * `a`, the attempt it comes from; `m`, with a shared secret, the MAC of
 * `JSON.stringify(e)` for that attempt.
 */
export interface JobResult {
  /** null: an end already sent as a progress update, left out to keep the return value within bounds. */
  readonly e: readonly (string | null)[];
  readonly a: number;
  readonly m?: string;
}

/** The name an outcome's MAC covers: the attempt it comes from (see `trust.ts`). */
export function attemptName(attempt: number): string {
  return `attempt ${attempt}`;
}

/**
 * How a segment ended and what its nodes returned. Times are milliseconds since the
 * process took the job up, the only clock both sides can share: the executor adds them
 * to the time it sent the job, which gives a lower bound of each in its own clock.
 */
export interface RemoteEndReport {
  readonly settlement: SentSettlement;
  /**
   * `[node, output, startedMs, endedMs]` of every node that completed, in order; those
   * completed by a process that died before this one took the job over come first, at 0.
   */
  readonly outputs: readonly (readonly [number, unknown, number, number])[];
  /** When the node the segment ended on started, if it did. */
  readonly endedNodeStartedMs: number | undefined;
}

/** A stop request, published on the queue's stop channel. */
export interface StopMessage {
  readonly id: string;
  readonly code: number;
  readonly graceMs: number;
}

export function encode(value: unknown): string {
  return serialize(value).toString('base64');
}

export function decode(text: string): unknown {
  return deserialize(Buffer.from(text, 'base64'));
}

/**
 * Redis names of a queue: its stop channel, its stop marks (one per segment), and what
 * each job's segments have done so far (a hash: `<i>:<node>` -> encoded output,
 * `<i>:end` -> encoded end), from which a job taken over from a dead process resumes.
 */
export function names(prefix: string, queue: string) {
  const base = `${prefix}:${queue}`;
  return {
    /** BullMQ's own keys: a job's lock (its value, the token of the attempt that holds it), the event stream, the queue's meta hash. */
    lockKey: (jobId: string) => `${base}:${jobId}:lock`,
    jobKey: (jobId: string) => `${base}:${jobId}`,
    events: `${base}:events`,
    meta: `${base}:meta`,
    stopChannel: `${base}:lukhas:stop`,
    stopKey: (segmentId: string) => `${base}:lukhas:stop:${segmentId}`,
    /** Set by each executor with a short TTL while it lives (see `liveness.ts`). */
    liveKey: (executor: string) => `${base}:lukhas:live:${executor}`,
    resumeKey: (jobId: string) => `${base}:lukhas:resume:${jobId}`,
  };
}
