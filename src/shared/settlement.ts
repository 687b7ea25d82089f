/**
 * How a segment ended: its *settlement*. It has two forms, one per side of a boundary:
 *
 * - {@link Settlement}, the live form the scheduler reads, with errors as objects;
 * - {@link SentSettlement}, the form that crosses a thread or a process boundary, with
 *   every error as a {@link Thrown} (see `thrown.ts`).
 *
 * `position` is the place, within its segment, of the node the segment ended on.
 */
import { deserializeThrown, serializeThrown, type Thrown } from './thrown';

/** How a segment ended, as the scheduler learns it. */
export type Settlement =
  /** Every node completed; each output was reported before this. */
  | { readonly kind: 'done' }
  /** The node threw or rejected: `error` is what it threw, rebuilt. */
  | { readonly kind: 'failed'; readonly position: number; readonly error: unknown }
  /** Stopped on request: the node settled after its signal aborted, or never started. */
  | { readonly kind: 'stopped'; readonly position: number }
  /** Stopped on request by terminating the thread, after the grace period. */
  | { readonly kind: 'killed'; readonly position: number }
  /** The node's thread died under it. */
  | { readonly kind: 'crashed'; readonly position: number; readonly exitCode: number | undefined; readonly cause: unknown }
  /** The node's module did not load, or has no such function export. */
  | { readonly kind: 'load-failed'; readonly position: number; readonly message: string; readonly cause: unknown }
  /** The node's output cannot cross to the main thread. */
  | { readonly kind: 'unclonable'; readonly position: number; readonly cause: unknown }
  /** The segment's input could not be sent to a worker. */
  | { readonly kind: 'input-unclonable'; readonly cause: unknown }
  /** The node ran past its timeout and was stopped (by a dispatcher that enforces timeouts). */
  | { readonly kind: 'timed-out'; readonly position: number };

type Sent<S> = S extends { readonly error: unknown }
  ? Omit<S, 'error'> & { readonly error: Thrown }
  : S extends { readonly cause: unknown }
    ? Omit<S, 'cause'> & { readonly cause: Thrown }
    : S;

/** A {@link Settlement} ready to cross a boundary: errors travel as {@link Thrown}. */
export type SentSettlement = Sent<Settlement>;

/** The form of `settlement` that can be posted or encoded. */
export function sendSettlement(settlement: Settlement): SentSettlement {
  if ('error' in settlement) return { ...settlement, error: serializeThrown(settlement.error) };
  if ('cause' in settlement) return { ...settlement, cause: serializeThrown(settlement.cause) };
  return settlement;
}

/** Rebuilds a settlement that crossed a boundary. */
export function receiveSettlement(sent: SentSettlement): Settlement {
  if ('error' in sent) return { ...sent, error: deserializeThrown(sent.error) };
  if ('cause' in sent) return { ...sent, cause: deserializeThrown(sent.cause) } as Settlement;
  return sent;
}
