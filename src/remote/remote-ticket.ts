/** A segment's record in the BullMQ backend's dispatcher, from submission to its end. */
import type { TaskProgress } from '../shared/board';
import type { SegmentJob, SegmentTicket } from '../pool/dispatcher';

const NOT_STARTED: TaskProgress = Object.freeze({ started: false });

export class RemoteTicket implements SegmentTicket {
  settled = false;
  stopCode = 0;
  /** Ends the segment if its stop goes unanswered. */
  stopTimer: NodeJS.Timeout | undefined;
  /** Its job, once sent, and its place in it. */
  jobId: string | undefined;
  index = 0;
  /** For the sweep: when it was sent, and whether Redis has acknowledged its job. */
  readonly sentAt = Date.now();
  added = false;
  /** Its worker process ended it as stopped, unasked (its run's deadline passed there). */
  stoppedThere = false;
  /** In the scheduler's clock: what the worker process's times are added to. */
  readonly submittedAt = performance.now();

  constructor(
    private readonly onStop: (ticket: RemoteTicket, code: number, graceMs: number) => void,
    readonly id: string,
    readonly job: SegmentJob,
    readonly payload: string | undefined,
  ) {}

  progress(): TaskProgress {
    return NOT_STARTED;
  }

  refresh(): void {}

  stop(code: number, graceMs: number): void {
    this.onStop(this, code, graceMs);
  }
}

/**
 * Runs what ends in user code (the runs' events, their promises' handlers): a throw there
 * is the user's and surfaces as uncaught, as with the embedded pool, instead of stopping
 * the reader of the queue's events, and with it every run.
 */
export function deliver(fn: () => void): void {
  try {
    fn();
  } catch (error) {
    process.nextTick(() => {
      throw error;
    });
  }
}
