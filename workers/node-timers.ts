/**
 * Callbacks a node leaves behind. A timer or immediate that a node's code schedules runs
 * in that node's name: while the node is running, its synchronous code holds the thread
 * as the node's own (blame and deadlines count it so); once the node has ended, it holds
 * the thread as an *orphan* (holder -1 on the card), which the main thread's watchdog
 * terminates if it lasts (see `src/pool/watchdog.ts`).
 *
 * The runtime's own timers are taken before the globals are wrapped: `runtimeTimers`.
 */
import { promisify } from 'node:util';
import type { ThreadBoard } from '../src/shared/board';
import { scope, type NodeScope } from './crash';

/** The timers as they were before any wrapping, for the runtime's own use. */
export const runtimeTimers = { setTimeout, setImmediate } as const;

/** The slot a node's callback holds the thread in, or -2 (holder -1: an orphan) once it ended. */
function slotOf(owner: NodeScope): number {
  const { run, position } = owner;
  // Live from its clock's start (its module's loading included) until it settles.
  return !run.settled && run.position === position && run.clockFor === position ? run.task.slot : -2;
}

/** Wraps the global timers so that node callbacks hold the thread in their node's name. */
export function attributeTimers(board: ThreadBoard, now: () => number): void {
  const wrap = <F extends object>(original: F): F => {
    const wrapped = function (this: unknown, callback: unknown, ...rest: unknown[]): unknown {
      const owner = scope.getStore();
      if (owner === undefined || typeof callback !== 'function') return Reflect.apply(original as (...args: unknown[]) => unknown, this, [callback, ...rest]);
      const attributed = function (this: unknown, ...args: unknown[]): unknown {
        const slot = slotOf(owner);
        const since = now();
        board.hold(slot, since);
        try {
          return Reflect.apply(callback, this, args);
        } finally {
          board.release(slot, since, now());
        }
      };
      return Reflect.apply(original as (...args: unknown[]) => unknown, this, [attributed, ...rest]);
    };
    const custom = (original as unknown as Record<symbol, unknown>)[promisify.custom];
    if (custom !== undefined) Object.defineProperty(wrapped, promisify.custom, { value: custom });
    return wrapped as unknown as F;
  };
  globalThis.setTimeout = wrap(setTimeout);
  globalThis.setInterval = wrap(setInterval);
  globalThis.setImmediate = wrap(setImmediate);
}
