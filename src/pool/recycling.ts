/**
 * Thread recycling: a thread is replaced, between its tasks, once it has run
 * `afterNodes` nodes or once its heap in use after a node passes `heapUsedMb`, to
 * contain code that leaks (native or user code).
 *
 * With recycling on, the pool keeps one thread more than `threads`: a *spare*, started
 * and idle. A thread that is due hands its place to the spare at once, so no run waits
 * for a thread to start; it takes no new segment, gives back those it has not started
 * (they go to the other threads), finishes the ones it runs and is then terminated
 * (*retired*), not counted as a termination or a crash. Piscina starts a new spare in
 * its place. One thread is replaced at a time; one that is due while there is no spare
 * ready goes on until there is.
 */
import type { Thread } from './threads';

/** `recycleThreads`, checked. */
export interface RecycleLimits {
  /** Nodes a thread runs (to their end) before it is replaced; Infinity for no limit. */
  readonly afterNodes: number;
  /** Heap in use after a node, in bytes, past which its thread is replaced; Infinity for no limit. */
  readonly heapUsedBytes: number;
}

/** Threads the pool keeps for `threads` active ones. */
export function poolSize(threads: number, limits: RecycleLimits | undefined): number {
  return limits === undefined ? threads : threads + 1;
}

/** Whether `thread` has reached a limit, by what its card says after its latest node. */
export function isDue(thread: Thread, limits: RecycleLimits | undefined): boolean {
  if (limits === undefined || thread.role !== 'active' || thread.ended || thread.killing || thread.card === undefined) return false;
  const { card } = thread;
  return card.nodesRun() >= limits.afterNodes || card.heapUsed() >= limits.heapUsedBytes;
}

/**
 * The role of a thread the pool has just started: active while fewer than `active`
 * threads are, a spare otherwise.
 */
export function roleOfNew(threads: Iterable<Thread>, active: number): Thread['role'] {
  let count = 0;
  for (const thread of threads) if (thread.role === 'active' && !thread.ended && !thread.killing) count++;
  return count < active ? 'active' : 'spare';
}

/**
 * Hands `due`'s place to a spare that has introduced itself: returns the spare, now
 * active, with `due` draining; undefined (nothing changed) when no spare is ready.
 */
export function handOver<T>(due: Thread<T>, threads: Iterable<Thread<T>>): Thread<T> | undefined {
  for (const thread of threads) {
    if (thread.role !== 'spare' || thread.port === undefined || thread.ended) continue;
    thread.role = 'active';
    due.role = 'draining';
    return thread;
  }
  return undefined;
}

/** A thread whose place was taken: once it holds nothing, it is to be terminated. */
export function drained(thread: Thread): boolean {
  return thread.role === 'draining' && thread.tickets.size === 0 && !thread.ended;
}

/** Terminates a thread that handed its place over and holds nothing now. */
export function retire(thread: Thread): void {
  thread.role = 'retired';
  void thread.worker.terminate();
}
