/**
 * Code a node leaves behind. A callback runs in the name of the node whose code set it
 * up (its async context, `scope`): a promise continuation (a `then` callback, the rest
 * of an async function after an `await`), a timer, an immediate, a `nextTick`, a
 * microtask, an I/O callback. Once that node has ended, the callback is an *orphan*: it
 * holds the thread as `ORPHAN` on the card, so that its time is no live node's, and the
 * main thread's watchdog terminates the thread if it lasts (`src/pool/watchdog.ts`).
 * A callback of a node still running is left alone here (a timer's holds the thread in
 * the node's name, `node-timers.ts`; a continuation's is the node's time as it runs).
 *
 * A hook that runs as each callback starts, once its async context is in place, marks
 * orphans; there is no hook at callbacks' ends (it would cost as much again): an orphan
 * lets go of the thread when the next callback starts, or once the microtasks queued
 * before it started have run, whichever comes first. Where `AsyncLocalStorage` runs on
 * async hooks (Node 20 and 22), the hook is an async hook's `before`, which sees every
 * kind of callback and rides on the promise hooks that storage installs anyway: an
 * `await` costs some 15 to 25 ns more (V8's own promise hooks cost more there: Node
 * calls a second one through a slower path). Where it runs on `AsyncContextFrame`
 * (Node 24), which needs no promise hook, async hooks would add their work to every
 * `await` (some 45 ns); V8's `before` promise hook costs some 25 ns, and sees promise
 * continuations alone, timers being marked by their wrappers (see README, *Code left
 * behind*).
 */
import { createHook } from 'node:async_hooks';
import { promiseHooks } from 'node:v8';
import { ORPHAN, type ThreadBoard } from '../src/shared/board';
import { scope, type NodeScope } from './crash';

/** The slot that holds the thread as an orphan (holder `ORPHAN` on the card). */
export const ORPHAN_SLOT = ORPHAN - 1;

/** The slot a node's callback holds the thread in, or {@link ORPHAN_SLOT} once the node ended. */
export function slotOf(owner: NodeScope): number {
  const { run, position } = owner;
  // Live from its clock's start (its module's loading included) until it settles.
  return !run.settled && run.position === position && run.clockFor === position ? run.task.slot : ORPHAN_SLOT;
}

/** Marks the callbacks of nodes that have ended as orphans while they run. */
export class Orphans {
  /** When the orphan running now took the thread, or -1. */
  private since = -1;

  constructor(
    private readonly board: ThreadBoard,
    private readonly now: () => number,
  ) {
    const before = (): void => {
      const owner = scope.getStore();
      if (this.since >= 0) this.release();
      // A callback started from within live code (a synchronous async scope, say) runs as
      // part of it: that code keeps the thread in its node's name.
      if (owner !== undefined && slotOf(owner) === ORPHAN_SLOT && !this.board.heldByLiveCode()) this.hold();
    };
    // This storage (undocumented) keeps its stores on the async hooks' resources.
    if (typeof (scope as unknown as { kResourceStore?: unknown }).kResourceStore === 'symbol') createHook({ before }).enable();
    else promiseHooks.onBefore(before);
  }

  /** The callback starting now is an orphan: it holds the thread until it lets go (see the file comment). */
  hold(): void {
    if (this.since >= 0) return;
    this.since = this.now();
    this.board.hold(ORPHAN_SLOT, this.since);
    // Queued outside any node's context: it must not start as an orphan itself.
    scope.exit(this.releaseLater);
  }

  private readonly releaseLater = (): void => queueMicrotask(this.release);

  private readonly release = (): void => {
    if (this.since < 0) return;
    this.board.release(ORPHAN_SLOT, this.since, this.now());
    this.since = -1;
  };
}
