/**
 * Admission: which runs may start their nodes, and which wait.
 *
 * At most `maxConcurrentPipelines` runs are in flight, and at most `maxConcurrentPerKey`
 * of those with the same `concurrencyKey` (runs without a key are bounded by the first
 * limit only). A run that cannot start waits; when one ends, the waiting run admitted
 * next is the one of highest priority, the earliest of those, among the runs whose key
 * has room: a key at its limit holds back its own runs, never another key's.
 */
import { NO_KEY } from '../pool/fair-queue';

/** Busiest keys that `stats()` lists, at most. */
export const KEYS_SHOWN = 10;

/** Runs in flight and waiting with one `concurrencyKey`, as `stats()` lists them. */
export interface KeyStats {
  readonly key: string;
  /** Admitted and not settled. */
  readonly inFlight: number;
  /** Waiting for admission. */
  readonly waiting: number;
}

/** What admission needs of a run. */
export interface Admittable {
  readonly priority: number;
  /** Its `concurrencyKey`, or {@link NO_KEY}. */
  readonly key: string;
}

interface Waiting<R> {
  readonly run: R;
  readonly seq: number;
}

interface KeyState<R> {
  inFlight: number;
  /** Highest priority first, then arrival order. */
  readonly waiting: Waiting<R>[];
}

export interface AdmissionLimits {
  readonly maxConcurrentPipelines: number;
  readonly maxConcurrentPerKey: number;
}

export class Admission<R extends Admittable> {
  private readonly keys = new Map<string, KeyState<R>>();
  /** Keys with runs waiting. */
  private readonly withWaiting = new Set<string>();
  private seq = 0;
  private admitted = 0;
  private queued = 0;

  constructor(private readonly limits: AdmissionLimits) {}

  /** Runs admitted and not settled. */
  get inFlight(): number {
    return this.admitted;
  }

  /** Runs waiting for admission. */
  get waiting(): number {
    return this.queued;
  }

  /** Whether `run` would start at once. */
  hasRoomFor(run: R): boolean {
    return this.admitted < this.limits.maxConcurrentPipelines && this.keyHasRoom(run.key, this.keys.get(run.key));
  }

  /** Counts `run` in: admitted (true), or waiting (false). */
  add(run: R): boolean {
    const state = this.stateOf(run.key);
    if (this.hasRoomFor(run)) {
      this.admitted++;
      state.inFlight++;
      return true;
    }
    const entry = { run, seq: this.seq++ };
    const list = state.waiting;
    let at = list.length;
    while (at > 0 && list[at - 1]!.run.priority < run.priority) at--;
    list.splice(at, 0, entry);
    this.withWaiting.add(run.key);
    this.queued++;
    return false;
  }

  /**
   * `run` ended, in flight or while waiting: returns the runs to admit now, in order
   * (already counted as in flight).
   */
  remove(run: R): R[] {
    const state = this.keys.get(run.key);
    if (state === undefined) return [];
    const at = state.waiting.findIndex((entry) => entry.run === run);
    if (at >= 0) {
      state.waiting.splice(at, 1);
      this.queued--;
      if (state.waiting.length === 0) this.withWaiting.delete(run.key);
      this.forget(run.key, state);
      return [];
    }
    this.admitted--;
    state.inFlight--;
    this.forget(run.key, state);
    return this.admitNext();
  }

  /** The busiest keys (runs in flight and waiting), at most {@link KEYS_SHOWN}; runs without a key are not listed. */
  busiestKeys(): KeyStats[] {
    const all: KeyStats[] = [];
    for (const [key, state] of this.keys) {
      if (key !== NO_KEY) all.push({ key, inFlight: state.inFlight, waiting: state.waiting.length });
    }
    all.sort((a, b) => b.inFlight + b.waiting - (a.inFlight + a.waiting) || (a.key < b.key ? -1 : 1));
    return all.slice(0, KEYS_SHOWN);
  }

  private admitNext(): R[] {
    const out: R[] = [];
    while (this.admitted < this.limits.maxConcurrentPipelines && this.withWaiting.size > 0) {
      let best: Waiting<R> | undefined;
      let bestState: KeyState<R> | undefined;
      for (const key of this.withWaiting) {
        const state = this.keys.get(key)!;
        if (!this.keyHasRoom(key, state)) continue;
        const head = state.waiting[0]!;
        if (best === undefined || head.run.priority > best.run.priority || (head.run.priority === best.run.priority && head.seq < best.seq)) {
          best = head;
          bestState = state;
        }
      }
      if (best === undefined || bestState === undefined) break;
      bestState.waiting.shift();
      if (bestState.waiting.length === 0) this.withWaiting.delete(best.run.key);
      this.queued--;
      this.admitted++;
      bestState.inFlight++;
      out.push(best.run);
    }
    return out;
  }

  private keyHasRoom(key: string, state: KeyState<R> | undefined): boolean {
    return key === NO_KEY || (state?.inFlight ?? 0) < this.limits.maxConcurrentPerKey;
  }

  private stateOf(key: string): KeyState<R> {
    let state = this.keys.get(key);
    if (state === undefined) this.keys.set(key, (state = { inFlight: 0, waiting: [] }));
    return state;
  }

  private forget(key: string, state: KeyState<R>): void {
    if (state.inFlight === 0 && state.waiting.length === 0) this.keys.delete(key);
  }
}
