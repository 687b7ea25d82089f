/**
 * What a thread sends the main thread on its control port: node reports (starts,
 * outputs, progress) and segment ends, in order, in one message per flush.
 *
 * Progress is throttled here: a node's latest `ctx.progress()` value leaves at most once
 * per `progressIntervalMs`, and before the node's own output.
 */
import type { MessagePort, Transferable } from 'node:worker_threads';
import type { ControlEntry, EndReport, Hungry, Pong } from '../src/shared/protocol';
import { serializeThrown } from '../src/shared/thrown';
import type { BatchState, SegmentRun } from './segment';
import { scope } from './crash';
import { runtimeTimers } from './node-timers';

type Entry = Exclude<ControlEntry, Pong | Hungry>;

export class Outbox {
  /** Reports and ends waiting to be sent, the segment each one is about, and what each moves. */
  private entries: Entry[] = [];
  private runs: SegmentRun[] = [];
  private moves: (readonly Transferable[] | undefined)[] = [];
  private moving = false;
  /** Piscina tasks to settle once the ends of their segments have left. */
  private finished: BatchState[] = [];
  /** Segments with a progress value to send, and the timer that sends them. */
  private progressRuns: SegmentRun[] = [];
  private progressTimer: NodeJS.Timeout | undefined;

  /**
   * @param markSettled ends a segment here (false if it had ended), when its report
   *   cannot be sent: the segment then ends as `unclonable`.
   */
  constructor(
    private readonly control: MessagePort,
    private readonly progressIntervalMs: number,
    private readonly markSettled: (run: SegmentRun) => boolean,
  ) {}

  /** Queues a report about `run`; `moves` are moved with it rather than copied. */
  push(entry: Entry, run: SegmentRun, moves?: readonly Transferable[]): void {
    this.entries.push(entry);
    this.runs.push(run);
    this.moves.push(moves);
    if (moves !== undefined) this.moving = true;
  }

  batchFinished(batch: BatchState): void {
    this.finished.push(batch);
  }

  /** A value waits in `run.progressValue`: send it within the interval. */
  progressPending(run: SegmentRun): void {
    this.progressRuns.push(run);
    // Set outside the node's async context: the runtime's own flush is nobody's orphan.
    this.progressTimer ??= scope.exit(() => runtimeTimers.setTimeout(this.sendProgress, this.progressIntervalMs).unref());
  }

  /** Puts a segment's latest progress value in the outbox. */
  takeProgress(run: SegmentRun): void {
    if (!run.progressPending) return;
    run.progressPending = false;
    const value = run.progressValue;
    run.progressValue = undefined;
    if (run.settled) return;
    this.push({ s: run.task.slot, g: run.task.gen, n: run.position, p: value }, run);
  }

  /** Sends what waits, in order, in one message; then settles the finished piscina tasks. */
  flush(): void {
    if (this.entries.length > 0) this.send();
    if (this.finished.length > 0) {
      const finished = this.finished;
      this.finished = [];
      for (const batch of finished) batch.resolve();
    }
  }

  private sendProgress = (): void => {
    this.progressTimer = undefined;
    const runs = this.progressRuns;
    this.progressRuns = [];
    for (const run of runs) this.takeProgress(run);
    this.flush();
  };

  private send(): void {
    const { entries, runs, moves } = this;
    this.entries = [];
    this.runs = [];
    this.moves = [];
    try {
      if (!this.moving) {
        this.control.postMessage(entries);
        return;
      }
      this.moving = false;
      const transferList = new Set<Transferable>();
      for (const list of moves) if (list !== undefined) for (const item of list) transferList.add(item);
      this.control.postMessage(entries, [...transferList]);
      return;
    } catch {
      // Something cannot be cloned (or moved): send one by one, and end the segments at fault.
    }
    const failed = new Set<SegmentRun>();
    entries.forEach((entry, i) => {
      const run = runs[i]!;
      if (failed.has(run)) return;
      try {
        this.control.postMessage([entry], moves[i] === undefined ? undefined : [...moves[i]!]);
      } catch (error) {
        if ('p' in entry) {
          process.emitWarning(`Progress of node "${run.nodes[entry.n]?.id}" cannot be sent between threads and was dropped`);
          return;
        }
        failed.add(run);
        this.markSettled(run);
        const position = 'n' in entry ? entry.n : run.position;
        const end: EndReport = { s: entry.s, g: entry.g, end: { kind: 'unclonable', position, cause: serializeThrown(error) } };
        this.control.postMessage([end]);
      }
    });
  }
}
