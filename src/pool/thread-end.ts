/**
 * A thread that ended under its segments, in the embedded pool: which node is to blame,
 * and what becomes of each segment it held. Also which node holds a live thread.
 *
 * - A thread terminated on request (a node past its grace period, or a thread orphaned
 *   by the watchdog) took its other segments down with it: they did nothing wrong and
 *   are sent again, resuming at the node that was running (at-least-once for that node).
 * - A thread that died by itself (`process.exit()`, an uncaught error, out of memory)
 *   fails the run of the node at fault, known from the thread's last word (a crash note)
 *   or from the card's holder. Its other segments are sent again; when nobody knows
 *   whose fault it was, each is sent again at most {@link MAX_RESENDS} times.
 */
import type { Board } from '../shared/board';
import type { Settlement } from '../shared/settlement';
import { deserializeThrown } from '../shared/thrown';
import type { ThreadHealth } from './dispatcher';
import type { Thread } from './threads';
import type { Slots, Ticket } from './ticket';

/** How many times a task is sent again after threads died under it with no known culprit. */
export const MAX_RESENDS = 2;

/** How a thread ended, as far as its segments are concerned. */
export interface ThreadEnd {
  /** Terminated on purpose (on request, by the watchdog, or retired by recycling). */
  readonly killed: boolean;
  /** The node at fault is known (and is failed on its own account). */
  readonly culpritKnown: boolean;
  /** Terminated by the watchdog: code no live node owns held it. */
  readonly orphaned?: boolean;
}

/** The node that took a dying thread down. */
export interface Culprit {
  readonly runId: string;
  readonly nodeId: string;
  readonly error: unknown;
  readonly element?: number | undefined;
}

/**
 * How `ticket`, whose thread ended under it at `position`, settles; undefined when it is
 * a bystander to send again (its resend counts are updated).
 */
export function fateOf(ticket: Ticket, end: ThreadEnd, cause: unknown, position: number, destroyed: boolean): Settlement | undefined {
  if (destroyed) return { kind: 'stopped', position };
  if (ticket.first >= ticket.job.nodes.length) return { kind: 'done' };
  if (ticket.stopCode !== 0) return { kind: 'killed', position };
  if (ticket.inputMoved) {
    const lost = new Error('its input was moved to the thread (transfer()) and is gone with it, so it cannot be sent again');
    return { kind: 'crashed', position, exitCode: undefined, cause: lost };
  }
  if (!end.killed && !end.culpritKnown) {
    // The thread died and nobody knows whose fault it was: perhaps this segment's.
    if (ticket.blindResends >= MAX_RESENDS) return { kind: 'crashed', position, exitCode: undefined, cause };
    ticket.blindResends++;
  }
  if (end.orphaned === true) {
    // Held by code no live node owns: not this segment's doing, unless it keeps
    // happening wherever it goes (what holds the thread may come with it, say an input
    // so large that receiving it takes longer than ORPHAN_MS).
    if (ticket.orphanResends >= MAX_RESENDS) {
      const held = new Error(`its threads were held by code that no running node owned, ${MAX_RESENDS + 1} times in a row`);
      return { kind: 'crashed', position, exitCode: undefined, cause: held };
    }
    ticket.orphanResends++;
  }
  return undefined;
}

/** The node whose synchronous code holds `thread` now, and for how long, if one does. */
export function holderOf(thread: Thread<Ticket>, slots: Slots, board: Board, now: number): ThreadHealth['heldBy'] {
  if (thread.card === undefined) return undefined;
  const ticket = slots.at(thread.card.holder() - 1);
  if (ticket === undefined) return undefined;
  const node = ticket.job.nodes[board.nodeOf(ticket.slot)];
  if (node === undefined) return undefined;
  return { runId: ticket.job.run.runId, nodeId: node.id, forMs: thread.card.heldForMs(now) };
}

/** The node that took a dying thread down: from its last word, or the node holding the thread. */
export function culpritOf(thread: Thread<Ticket>, slots: Slots, board: Board): Culprit | undefined {
  if (thread.crash !== undefined) {
    const { runId, nodeId, error, element } = thread.crash;
    return { runId, nodeId, error: error === undefined ? undefined : deserializeThrown(error), element };
  }
  if (thread.card === undefined) return undefined;
  const holder = slots.at(thread.card.holder() - 1);
  if (holder === undefined) return undefined;
  const node = holder.job.nodes[Math.max(board.nodeOf(holder.slot), holder.first)];
  return node === undefined ? undefined : { runId: holder.job.run.runId, nodeId: node.id, error: undefined, element: holder.job.element };
}
