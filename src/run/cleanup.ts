/** Cleanup handlers of a cancelled or timed-out run. */
import { timerDelay } from '../shared/delay';

/**
 * Runs when a run is cancelled or times out, after its nodes have stopped.
 * @param failure the `CancellationException` or `TimeoutException` the run rejects with.
 */
export type CleanupHandler = (failure: Error) => void | Promise<void>;

/**
 * Runs handlers one after another. Each has up to `graceMs`; one that throws, rejects
 * or takes longer is handed to `report`, and the next one runs. Never rejects.
 */
export async function runCleanups(
  handlers: readonly CleanupHandler[],
  failure: Error,
  graceMs: number,
  report: (error: unknown) => void,
): Promise<void> {
  for (const handler of handlers) {
    let timer: NodeJS.Timeout | undefined;
    try {
      const done = Promise.resolve().then(() => handler(failure));
      if (graceMs === Infinity) {
        await done;
      } else {
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`A cleanup handler did not finish within ${graceMs} ms`)),
            timerDelay(graceMs),
          );
        });
        await Promise.race([done, late]);
      }
    } catch (error) {
      report(error);
    } finally {
      clearTimeout(timer);
    }
  }
}
