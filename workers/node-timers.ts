/**
 * Timers of a running node. A timer or immediate that a node's code schedules runs in
 * that node's name: while the node is running, its callback holds the thread as the
 * node's own synchronous code (blame and deadlines count it so). Once the node has
 * ended, its callbacks are orphans (`orphans.ts`).
 *
 * The runtime's own timers are taken before the globals are wrapped: `runtimeTimers`.
 */
import { promisify } from 'node:util';
import type { ThreadBoard } from '../src/shared/board';
import { scope } from './crash';
import { ORPHAN_SLOT, slotOf, type Orphans } from './orphans';

/** The timers as they were before any wrapping, for the runtime's own use. */
export const runtimeTimers = { setTimeout, setImmediate } as const;

/** Wraps the global timers so that a running node's callbacks hold the thread in its name. */
export function attributeTimers(board: ThreadBoard, now: () => number, orphans: Orphans): void {
  const wrap = <F extends object>(original: F): F => {
    const wrapped = function (this: unknown, callback: unknown, ...rest: unknown[]): unknown {
      const owner = scope.getStore();
      if (owner === undefined || typeof callback !== 'function') return Reflect.apply(original as (...args: unknown[]) => unknown, this, [callback, ...rest]);
      const attributed = function (this: unknown, ...args: unknown[]): unknown {
        const slot = slotOf(owner);
        if (slot === ORPHAN_SLOT) {
          // The node has ended (where an async hook marks every callback, it has done so).
          orphans.hold();
          return Reflect.apply(callback, this, args);
        }
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
