/**
 * The watchdog of the embedded pool: finds threads held by code that no live node owns
 * (a callback, timer or promise chain a node left behind when it ended), so that they
 * are terminated and replaced instead of starving every segment sent to them.
 *
 * Every {@link WATCH_MS} the dispatcher reads what each thread has sent and pings it.
 * A thread is *orphaned* when
 * - callbacks of nodes that have ended (the card's holder is `ORPHAN`, see
 *   `workers/orphans.ts`) hold it for over {@link ORPHAN_MS} in a row, or for over
 *   {@link ORPHAN_MS} in all within {@link ORPHAN_WINDOW_MS} (a timer or interval left
 *   behind that lets go of the thread now and then, but holds it most of the time), or
 * - for over {@link ORPHAN_MS}, it has not answered a ping, no node's code holds it, and
 *   no node of its segments is running (so no live node's deadline will ever stop what
 *   holds it).
 * An orphaned thread gets no new work, is terminated and replaced; its segments are
 * sent again elsewhere, and no node is blamed (a segment on three orphaned threads in a
 * row fails with a `WorkerCrashedException` instead: what holds them comes with it). A thread that stops answering while one
 * of its nodes runs is left to that node's own deadline.
 */
import { ORPHAN } from '../shared/board';
import type { Thread } from './threads';

/** How long code that no live node owns may hold a thread before it is terminated. */
export const ORPHAN_MS = 1_000;
/** How often the threads are looked at. */
export const WATCH_MS = 250;
/** The span over which orphans' time on a thread adds up (see the file comment). */
export const ORPHAN_WINDOW_MS = 2 * ORPHAN_MS;

/** What the watchdog knows of a thread's answers. */
export interface Heard {
  /** When the thread last sent anything, on the dispatcher's clock. */
  lastHeard: number;
  /** When the oldest ping it has not answered was sent, if any. */
  pingedAt: number | undefined;
  /** What the watchdog read of the orphans' total time on the thread, as pairs [when, total], oldest first. */
  orphanSeen?: number[];
}

/** Whether `thread` is held by code no live node owns; `nodeRunning` tells whether a node of its segments runs. */
export function isOrphaned(thread: Thread & Heard, now: number, nodeRunning: () => boolean): boolean {
  const card = thread.card;
  if (card === undefined) return false;
  const { holder, holding, total } = card.orphans(now);
  if (holding > ORPHAN_MS) return true;
  // Orphans' time within the last ORPHAN_WINDOW_MS, from the readings of earlier rounds.
  const seen = (thread.orphanSeen ??= []);
  while (seen.length > 0 && now - seen[0]! > ORPHAN_WINDOW_MS) seen.splice(0, 2);
  const inWindow = seen.length === 0 ? 0 : total - seen[1]!;
  seen.push(now, total);
  if (inWindow > ORPHAN_MS) return true;
  if (holder === ORPHAN) return false;
  if (holder !== 0 || !awaitingAnswer(thread)) return false;
  return now - thread.pingedAt! > ORPHAN_MS && !nodeRunning();
}

/** A ping sent to the thread has not been answered. */
export function awaitingAnswer(thread: Heard): boolean {
  return thread.pingedAt !== undefined && thread.lastHeard < thread.pingedAt;
}
