/**
 * Nothing runs for a caller that is gone. Each executor keeps a liveness key in Redis
 * with a short TTL, refreshed often (`Heartbeat`); the worker processes watch the keys of
 * the executors whose segments they hold, and the runs' deadlines (`SegmentWatch`):
 *
 * - a segment whose run's deadline has passed is not started, and one running is
 *   stopped (two-phase) at the deadline;
 * - once an executor's key has been missing for `LIVENESS_MISSING_MS` (its process died,
 *   and its key lapsed `LIVENESS_TTL_MS` after its last refresh), its segments are
 *   stopped and none of them started. Missing for a moment only (Redis restarted without
 *   the key, which the executor sets again within `LIVENESS_REFRESH_MS`) stops nothing.
 *
 * A worker process thus stops an executor's segments at most
 * `LIVENESS_TTL_MS + LIVENESS_MISSING_MS + LIVENESS_CHECK_MS` (9.5 s) after that executor
 * died, plus the run's grace period for the node to end before its thread is terminated.
 *
 * Stops an executor asks for arrive as messages on the stop channel (`readStopMessage`)
 * and as marks, which `SegmentWatch` reads too: a message lost while reconnecting is not.
 */
import type { Redis } from 'ioredis';
import { Stop, type StopCode } from '../shared/board';
import type { Running } from './jobs';
import { quoted } from './trust';
import type { StopMessage } from './wire';

/** How long an executor's liveness key lives without a refresh. */
export const LIVENESS_TTL_MS = 5_000;
/** How often an executor refreshes it. */
export const LIVENESS_REFRESH_MS = 1_000;
/** How long a worker process sees it missing before it takes the executor for gone. */
export const LIVENESS_MISSING_MS = 3_000;
/** How often a worker process looks at the keys, the deadlines and the stop marks. */
export const LIVENESS_CHECK_MS = 1_000;

/** An executor's side: sets its key now and every `LIVENESS_REFRESH_MS`, deletes it on `stop()`. */
export class Heartbeat {
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
  ) {
    const beat = (): void => void this.redis.set(this.key, '1', 'PX', LIVENESS_TTL_MS).catch(() => {});
    beat();
    this.timer = setInterval(beat, LIVENESS_REFRESH_MS);
    this.timer.unref();
  }

  /** Stops refreshing; the worker processes stop this executor's segments at their next look. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.redis.del(this.key);
  }
}

/** A worker process's side: looks at its segments' executors, deadlines and stop marks. */
export class SegmentWatch {
  /** Since when each executor's key has been seen missing (`Date.now()`). */
  private readonly missingSince = new Map<string, number>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: { liveKey(executor: string): string; stopKey(segmentId: string): string },
    private readonly running: ReadonlyMap<string, Running>,
    private readonly stop: (entry: Running, code: StopCode, graceMs: number) => void,
    private readonly log: (line: string) => void,
  ) {}

  /** Whether the executor has been missing long enough to be taken for gone. */
  gone(executor: string): boolean {
    const since = this.missingSince.get(executor);
    return since !== undefined && Date.now() - since >= LIVENESS_MISSING_MS;
  }

  /** Notes whether an executor's key was found (`mark` the value read, null when missing). */
  seen(executor: string, value: string | null | undefined): void {
    if (value !== null && value !== undefined) this.missingSince.delete(executor);
    else if (!this.missingSince.has(executor)) this.missingSince.set(executor, Date.now());
  }

  /**
   * Resolves once the executor is known alive (true) or gone (false): at once when its
   * key is there, else after looking again until it is, or has been missing long enough.
   */
  async alive(executor: string): Promise<boolean> {
    for (;;) {
      if (this.gone(executor)) return false;
      if (!this.missingSince.has(executor)) return true;
      await new Promise((resolve) => setTimeout(resolve, 250));
      try {
        this.seen(executor, await this.redis.get(this.keys.liveKey(executor)));
      } catch {
        // Redis unreachable: nothing is known; try again.
      }
    }
  }

  /**
   * One look: stops the segments whose deadline has passed, whose stop mark is set (a
   * message on the stop channel may have been lost while reconnecting) or whose
   * executor is gone.
   */
  async look(): Promise<void> {
    const entries = [...this.running].filter(([, entry]) => !entry.over && !entry.stopped);
    if (entries.length === 0) return;
    const now = Date.now();
    for (const [, entry] of entries) {
      if (now >= entry.payload.deadline) this.stop(entry, Stop.PipelineTimeout, entry.payload.graceMs);
    }
    const executors = [...new Set(entries.map(([, entry]) => entry.payload.executor))];
    const read = await this.redis.mget([...entries.map(([id]) => this.keys.stopKey(id)), ...executors.map((executor) => this.keys.liveKey(executor))]);
    executors.forEach((executor, index) => this.seen(executor, read[entries.length + index]));
    for (const executor of executors.filter((executor) => this.gone(executor))) {
      this.log(`executor ${quoted(executor)} is gone (its liveness key has lapsed): its segments here are stopped`);
    }
    entries.forEach(([, entry], index) => {
      const mark = read[index];
      if (mark !== null && mark !== undefined) this.stop(entry, isStopCode(Number(mark)) ? (Number(mark) as StopCode) : Stop.Cancel, entry.payload.graceMs);
      else if (this.gone(entry.payload.executor)) this.stop(entry, Stop.Cancel, entry.payload.graceMs);
    });
    // Forget executors no segment here names any more.
    const named = new Set([...this.running.values()].map((entry) => entry.payload.executor));
    for (const executor of this.missingSince.keys()) if (!named.has(executor)) this.missingSince.delete(executor);
  }
}

/** How long a stop mark lives: until the run's deadline, past which no process starts the segment, and a minute more; a day without a deadline. */
export function markTtl(deadline: number): number {
  return Number.isFinite(deadline) ? Math.ceil(Math.max(0, deadline - Date.now())) + 60_000 : 86_400_000;
}

/** A stop message (`{ id, code, graceMs }`) weighs far less than this. */
const MAX_STOP_MESSAGE_BYTES = 64 * 1024;

/**
 * A message from the stop channel, read as bytes (ioredis decodes a `message` outside any
 * handler, and one too large to decode into a string would end the process): the stop it
 * asks for, or undefined for anything else (a message too large is logged).
 */
export function readStopMessage(bytes: Buffer, log: (line: string) => void): (StopMessage & { readonly code: StopCode }) | undefined {
  if (bytes.length > MAX_STOP_MESSAGE_BYTES) {
    log(`ignored a message of ${bytes.length} bytes on the stop channel: a stop message is at most ${MAX_STOP_MESSAGE_BYTES}`);
    return undefined;
  }
  let message: Partial<StopMessage> | null;
  try {
    message = JSON.parse(bytes.toString()) as Partial<StopMessage> | null;
  } catch {
    return undefined;
  }
  if (message === null || typeof message !== 'object' || typeof message.id !== 'string' || !isStopCode(message.code)) return undefined;
  const graceMs = message.graceMs ?? Infinity;
  return typeof graceMs === 'number' && graceMs >= 0 ? { id: message.id, code: message.code, graceMs } : undefined;
}

export function isStopCode(code: unknown): code is StopCode {
  return code === Stop.Cancel || code === Stop.NodeTimeout || code === Stop.PipelineTimeout || code === Stop.Failure;
}
