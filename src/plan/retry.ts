/**
 * Retries of a failed node: which failures a node gets another attempt for, and how
 * long it waits first.
 */
/** The retry policy of a node, with defaults filled in. */
export interface RetryPolicy {
  readonly retries: number;
  readonly baseMs: number;
  readonly maxMs: number;
  readonly retryOn: ((error: unknown, attempt: number) => boolean) | undefined;
  readonly retryTimeouts: boolean;
}

export const NO_RETRY: RetryPolicy = Object.freeze({ retries: 0, baseMs: 100, maxMs: 10_000, retryOn: undefined, retryTimeouts: false });

/** What ended an attempt, as far as retrying goes. */
export type FailureKind =
  /** The node threw or rejected. */
  | 'error'
  /** Its thread died under it. */
  | 'crash'
  /** It ran past its timeout. */
  | 'timeout'
  /** Anything else (a module that does not load, an output that cannot cross threads): never retried. */
  | 'fatal';

/** Whether attempt `attempt` (1 for the first) of a node gets a successor after failing with `error`. */
export function shouldRetry(policy: RetryPolicy, kind: FailureKind, error: unknown, attempt: number): boolean {
  if (attempt > policy.retries) return false;
  if (kind === 'fatal' || (kind === 'timeout' && !policy.retryTimeouts)) return false;
  return policy.retryOn === undefined || policy.retryOn(error, attempt) === true;
}

/** Exponential backoff with full jitter: a random wait up to `min(maxMs, baseMs * 2 ** (attempt - 1))`. */
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** (attempt - 1));
  return Math.random() * ceiling;
}
