/** Timers, on both sides of the thread boundary. */

/** The longest delay `setTimeout` takes; Node fires a longer one after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The delay to give `setTimeout` for `ms`: whole milliseconds, at least 1, at most
 * {@link MAX_TIMER_MS} (a caller that needs longer re-arms when it fires).
 */
export function timerDelay(ms: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(ms)));
}
