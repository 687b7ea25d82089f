/**
 * One `'abort'` listener per caller signal, however many runs share it: a signal
 * shared by thousands of runs gets no listener pile-up (and no MaxListeners warning),
 * and the listener goes away with the last run that watched it.
 */
export interface Cancellable {
  cancel(reason: unknown): void;
}

const watchers = new WeakMap<AbortSignal, Set<Cancellable>>();

function onAbort(this: AbortSignal): void {
  const runs = watchers.get(this);
  watchers.delete(this);
  if (runs === undefined) return;
  for (const run of runs) run.cancel(this.reason);
}

/** Cancels `run` with `signal.reason` when `signal` aborts. */
export function watchSignal(signal: AbortSignal, run: Cancellable): void {
  let runs = watchers.get(signal);
  if (runs === undefined) {
    runs = new Set();
    watchers.set(signal, runs);
    signal.addEventListener('abort', onAbort, { once: true });
  }
  runs.add(run);
}

/** Stops watching; removes the listener when no run watches the signal any more. */
export function unwatchSignal(signal: AbortSignal, run: Cancellable): void {
  const runs = watchers.get(signal);
  if (runs === undefined || !runs.delete(run) || runs.size > 0) return;
  watchers.delete(signal);
  signal.removeEventListener('abort', onAbort);
}
