/**
 * The pool's threads as the dispatcher sees them, which one gets the next segments, and
 * work stealing between them.
 *
 * A thread's *card* (shared memory, see `shared/board.ts`) tells whose synchronous code
 * holds it and how many segments it has taken up; the dispatcher counts what it sent.
 */
import { Piscina } from 'piscina';
import type { MessagePort, Worker } from 'node:worker_threads';
import type { ThreadCard } from '../shared/board';
import type { CrashNote, Ping } from '../shared/protocol';

/** A thread whose node code has held it this long is not given new work while others are free. */
export const BLOCKED_MS = 20;

/** A worker thread as the dispatcher sees it; `T` is the dispatcher's ticket. */
export interface Thread<T = unknown> {
  readonly threadId: number;
  readonly worker: Worker;
  /** Its control port and card, once it has introduced itself. */
  port: MessagePort | undefined;
  card: ThreadCard | undefined;
  /** Segments sent to it and not ended. */
  readonly tickets: Set<T>;
  /** Its last word, when a node is taking it down. */
  crash: CrashNote | undefined;
  killing: boolean;
  ended: boolean;
  /** Tasks sent to it and not withdrawn, to compare with those it has started. */
  sent: number;
  /** Segments of cached plans whose nodes it has. */
  readonly knows: Set<number>;
  /** When it last sent anything, and the ping it has not answered (see `watchdog.ts`). */
  lastHeard: number;
  pingedAt: number | undefined;
  /** Terminated by the watchdog: code no live node owns held it. */
  orphaned: boolean;
  /** Segments it may hold ahead at most (see {@link withRoom}, {@link adjustWindow}), and when it last changed. */
  window: number;
  windowAt: number;
  /** The flush that last sent it segments (see {@link withRoom}). */
  filledIn: number;
  /**
   * Its part in thread recycling (see `recycling.ts`): `'spare'` started and kept idle to
   * replace one; `'draining'` replaced, it finishes what it holds and takes nothing new;
   * `'retired'` terminated once drained.
   */
  role: 'active' | 'spare' | 'draining' | 'retired';
}

/** Whether every active thread is held by a node's synchronous code at this moment. */
export function allHeld(threads: Iterable<Thread>): boolean {
  let held = 0;
  for (const thread of threads) {
    if (thread.ended || thread.role === 'spare') continue;
    if (thread.card === undefined || thread.card.holder() === 0) return false;
    held++;
  }
  return held > 0;
}

export function newThread<T>(worker: Worker): Thread<T> {
  return {
    threadId: worker.threadId,
    worker,
    port: undefined,
    card: undefined,
    tickets: new Set(),
    crash: undefined,
    killing: false,
    ended: false,
    sent: 0,
    knows: new Set(),
    lastHeard: 0,
    pingedAt: undefined,
    orphaned: false,
    window: AHEAD_MIN,
    windowAt: 0,
    filledIn: 0,
    role: 'active',
  };
}

/**
 * Segments a thread may hold ahead: at least {@link AHEAD_MIN}, so that its CPU-bound
 * work waits here in a fair order rather than there in arrival order; up to
 * {@link AHEAD_MAX} while it runs out before the main thread refills it (asynchronous
 * nodes leave the count as soon as they start; a busy main thread answers late), so
 * that feeding it costs few round trips and never starves it for long.
 */
export const AHEAD_MIN = 8;
export const AHEAD_MAX = 1024;
/** Segments a thread is refilled with at least, while one key's work waits (see {@link withRoom}). */
export const REFILL_MIN = 4;
/** A window that has not had to grow for this long halves (down to {@link AHEAD_MIN}). */
export const WINDOW_DECAY_MS = 100;

/**
 * A thread that ran out of segments to start (`hungry`) may hold eight times as many
 * ahead; one that has not run out for {@link WINDOW_DECAY_MS} half as many. So a thread
 * fed fast enough keeps the least, and one that is not gets what it takes to keep busy.
 */
export function adjustWindow(thread: Thread, hungry: boolean, now: number): void {
  if (hungry) {
    thread.window = Math.min(AHEAD_MAX, thread.window * 8);
    thread.windowAt = now;
  } else if (thread.window > AHEAD_MIN && now - thread.windowAt > WINDOW_DECAY_MS) {
    thread.window = Math.max(AHEAD_MIN, thread.window / 2);
    thread.windowAt = now;
  }
}

/** Not ended, not being terminated, neither a spare nor replaced: it may take work. */
export function usable(thread: Thread): boolean {
  return !thread.ended && !thread.killing && thread.role === 'active';
}

/**
 * Thread choice: the usable thread with the fewest segments in flight, preferring
 * started threads not held by a long node; undefined when every thread is ending.
 */
export function leastLoaded<T>(threads: Iterable<Thread<T>>, now: number): Thread<T> | undefined {
  let best: Thread<T> | undefined;
  let bestScore = Infinity;
  for (const thread of threads) {
    if (!usable(thread)) continue;
    let score = thread.tickets.size;
    if (thread.port === undefined) score += 1e9;
    else if (isBlocked(thread.card, now)) score += 1e6;
    if (score < bestScore) {
      best = thread;
      bestScore = score;
    }
  }
  return best;
}

/**
 * Segments `thread` holds ahead: sent and not taken up, plus those waiting there to start
 * their next node (a segment may count in both for a moment, so this may overstate).
 */
export function ahead(thread: Thread): number {
  return thread.card === undefined ? thread.sent : waitingOn(thread) + thread.card.ready();
}

/**
 * The thread to send a pending segment to: of the usable threads that hold fewer
 * segments ahead than their window, the one with the fewest (then with the fewest in flight).
 * With `flush` (the sender's count of flushes; given when the waiting work is all of
 * one key and priority), a thread is refilled once it has room for {@link REFILL_MIN}
 * segments, and then up to its window in that flush: a thread that runs segments one
 * after another is sent them a few at a time, not one message per segment it ended
 * (a fuller refill, at half the window, let threads run dry and their windows grow,
 * and work of a key arriving later waited longer). Without it,
 * any room is filled at once (keys and priorities take their turns promptly). A thread held by a long node gets
 * none while another thread is free of one (it will have room soon, and work stealing
 * moves what waits on the held one). A thread still starting gets none: piscina queues
 * the tasks of every thread in one list, and a task for a thread that is not ready would
 * hold back those behind it for the others.
 */
export function withRoom<T>(threads: Iterable<Thread<T>>, now: number, flush: number | undefined): Thread<T> | undefined {
  let best: Thread<T> | undefined;
  let bestScore = Infinity;
  let unblocked = false;
  for (const thread of threads) {
    if (!usable(thread) || thread.port === undefined) continue;
    const blocked = isBlocked(thread.card, now);
    if (!blocked) unblocked = true;
    const held = ahead(thread);
    if (held >= thread.window || (flush !== undefined && held > thread.window - REFILL_MIN && thread.filledIn !== flush)) continue;
    // Then the fewest segments in flight (asynchronous nodes running there count too).
    const score = held + (blocked ? 1e6 : 0) + thread.tickets.size / 1e6;
    if (score < bestScore) {
      best = thread;
      bestScore = score;
    }
  }
  if (best !== undefined && unblocked && bestScore >= 1e6) return undefined;
  return best;
}

/** Segments sent to `thread` that it has not taken up yet. */
export function waitingOn(thread: Thread): number {
  return thread.card === undefined ? 0 : thread.sent - thread.card.claimed();
}

/**
 * Work stealing: `hungry` has nothing left to start, so half the segments that wait to
 * start on the thread with the most of them should move to it, latest sent first (the
 * ones it would start last). The caller withdraws them from their thread with the same
 * compare-and-swap as a stop (see `Board.withdraw`), so the old thread skips them.
 */
export function stealPlan<T>(hungry: Thread<T>, threads: Iterable<Thread<T>>): { candidates: T[]; wanted: number } | undefined {
  let victim: Thread<T> | undefined;
  let most = 1;
  for (const thread of threads) {
    if (thread === hungry || !usable(thread)) continue;
    const waiting = waitingOn(thread);
    if (waiting > most) {
      victim = thread;
      most = waiting;
    }
  }
  if (victim === undefined) return undefined;
  return { candidates: [...victim.tickets].reverse(), wanted: Math.floor(most / 2) };
}

/** Whether a node's synchronous code has held the thread of `card` for over {@link BLOCKED_MS}. */
export function isBlocked(card: ThreadCard | undefined, now: number): boolean {
  return card !== undefined && card.holder() !== 0 && card.heldForMs(now) > BLOCKED_MS;
}

/** The thread a piscina task (a batch) is meant for, from its queue options. */
export function routeOf(task: object): number | undefined {
  const options = (task as Record<symbol, unknown>)[Piscina.queueOptionsSymbol] as { threadId?: number } | null | undefined;
  return options?.threadId;
}

/** Health checks of threads: each asks every thread at once on its control port. */
export class Pings {
  private seq = 0;
  /** Checks waiting for answers, by id. */
  private readonly waiting = new Map<number, (threadId: number) => void>();

  /** Resolves with the ids of the threads that answered, once all did or `timeoutMs` passed. */
  async ask(threads: readonly Thread[], timeoutMs: number): Promise<Set<number>> {
    const answered = new Set<number>();
    const id = ++this.seq;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.waiting.set(id, (threadId) => {
        answered.add(threadId);
        if (answered.size === threads.length) done();
      });
      if (threads.length === 0) done();
      for (const thread of threads) thread.port!.postMessage({ ping: id } satisfies Ping);
    });
    this.waiting.delete(id);
    return answered;
  }

  /** Thread `threadId` answered check `id`. */
  answer(id: number, threadId: number): void {
    this.waiting.get(id)?.(threadId);
  }
}
