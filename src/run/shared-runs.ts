/**
 * Shared runs (`dedupeKey`): while a run with a key is in flight, a call with the same
 * key joins it instead of starting another, and settles as it does.
 *
 * Each caller holds an *attachment*: its own promise and its own cancellation. A caller
 * that cancels (its handle, or its request's `signal`) is detached: its promise rejects
 * with a `CancellationException` at once and the run goes on for the others. The run
 * itself is cancelled only when its last attached caller cancels.
 */
import type { CancellationException } from '../errors';
import { unwatchSignal, watchSignal, type Cancellable } from './signals';

/** What sharing needs of a run. */
export interface Shareable {
  readonly promise: Promise<unknown>;
  /** It has not settled. */
  readonly active: boolean;
  cancel(reason: unknown): void;
  /** The error that cancelling it with `reason` would give, for a caller that leaves it. */
  cancellation(reason: unknown): CancellationException;
}

/** One caller's hold on a run. */
export interface Attachment<R extends Shareable> {
  readonly run: R;
  readonly promise: Promise<unknown>;
  /** Detaches this caller; cancels the run if it was the last one attached. */
  cancel(reason: unknown): void;
}

interface Entry<R> {
  readonly run: R;
  /** Callers attached and not cancelled. */
  attached: number;
}

export class SharedRuns<R extends Shareable> {
  private readonly byKey = new Map<string, Entry<R>>();
  /** Calls that joined a run in flight instead of starting one, in all. */
  joined = 0;

  /** Runs in flight that calls may join. */
  get inFlight(): number {
    return this.byKey.size;
  }

  /** Attaches a call with `key` to the run in flight with it, if any. */
  join(key: string, signal: AbortSignal | undefined): Attachment<R> | undefined {
    const entry = this.byKey.get(key);
    if (entry === undefined || !entry.run.active || entry.attached === 0) return undefined;
    this.joined++;
    return attach(entry, signal);
  }

  /** Shares `run`, just started for `key`, and attaches its first caller. */
  start(key: string, run: R, signal: AbortSignal | undefined): Attachment<R> {
    const entry: Entry<R> = { run, attached: 0 };
    this.byKey.set(key, entry);
    const forget = (): void => {
      if (this.byKey.get(key) === entry) this.byKey.delete(key);
    };
    run.promise.then(forget, forget);
    return attach(entry, signal);
  }
}

function attach<R extends Shareable>(entry: Entry<R>, signal: AbortSignal | undefined): Attachment<R> {
  const { run } = entry;
  let leave!: (error: unknown) => void;
  const promise = new Promise<unknown>((resolve, reject) => {
    leave = reject;
    run.promise.then(resolve, reject);
  });
  let attached = true;
  entry.attached++;
  const caller: Cancellable = {
    cancel(reason: unknown): void {
      if (!attached || !run.active) return;
      attached = false;
      if (signal !== undefined) unwatchSignal(signal, caller);
      if (--entry.attached === 0) {
        // The last caller: the run stops, and everyone still waiting hears it from the run.
        run.cancel(reason);
        return;
      }
      leave(run.cancellation(reason));
    },
  };
  if (signal !== undefined) {
    if (signal.aborted) caller.cancel(signal.reason);
    else {
      watchSignal(signal, caller);
      const unwatch = (): void => unwatchSignal(signal, caller);
      run.promise.then(unwatch, unwatch);
    }
  }
  return { run, promise, cancel: (reason) => caller.cancel(reason) };
}
