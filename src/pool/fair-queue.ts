/**
 * The order in which waiting work is served: the highest priority first; within a
 * priority, round-robin across keys (work without a key shares one); within a key,
 * arrival order.
 *
 * The embedded pool keeps the node tasks that wait for room on a thread here (see
 * `sender.ts`), and so does the BullMQ backend's executor side for the
 * segments it has not sent to Redis yet: a key with a burst of work gets its turn and
 * no more while other keys wait.
 */

import { Fifo } from './fifo';

/** The key of work submitted without one (a `concurrencyKey` is never empty). */
export const NO_KEY = '';

/** The work of one priority: a list per key, and the keys' turns. */
interface Level<T> {
  readonly byKey: Map<string, Fifo<T>>;
  /** Keys with work, in the order of their next turns. */
  readonly turns: Fifo<string>;
}

/** Where an item waits, to take it out again. */
export interface Placement {
  readonly priority: number;
  readonly key: string;
}

/** Where a segment of a run waits: its run's priority and key. */
export function placementOf(job: { readonly priority: number; readonly concurrencyKey: string | undefined }): Placement {
  return { priority: job.priority, key: job.concurrencyKey ?? NO_KEY };
}

/** Waiting work in serving order; see the file comment. */
export class FairQueue<T> {
  private readonly levels = new Map<number, Level<T>>();
  /** Priorities with work, highest first. */
  private priorities: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  push(item: T, { priority, key }: Placement): void {
    let level = this.levels.get(priority);
    if (level === undefined) {
      level = { byKey: new Map(), turns: new Fifo() };
      this.levels.set(priority, level);
      let at = 0;
      while (at < this.priorities.length && this.priorities[at]! > priority) at++;
      this.priorities.splice(at, 0, priority);
    }
    let list = level.byKey.get(key);
    if (list === undefined) {
      level.byKey.set(key, (list = new Fifo()));
      level.turns.push(key);
    }
    list.push(item);
    this.count++;
  }

  /** Whether work of more than one priority or key waits: serving order then matters. */
  get contended(): boolean {
    if (this.priorities.length !== 1) return this.priorities.length > 1;
    return this.levels.get(this.priorities[0]!)!.byKey.size > 1;
  }

  /** The next item to serve, without taking it. */
  peek(): T | undefined {
    const priority = this.priorities[0];
    if (priority === undefined) return undefined;
    const level = this.levels.get(priority)!;
    return level.byKey.get(level.turns.peek()!)!.peek();
  }

  /** Takes the next item to serve. */
  shift(): T | undefined {
    const priority = this.priorities[0];
    if (priority === undefined) return undefined;
    const level = this.levels.get(priority)!;
    const key = level.turns.shift()!;
    const list = level.byKey.get(key)!;
    const item = list.shift()!;
    // Its key's next item waits for the other keys' turns.
    if (list.size > 0) level.turns.push(key);
    else level.byKey.delete(key);
    this.count--;
    if (level.byKey.size === 0) this.dropLevel(priority);
    return item;
  }

  /** Takes `item` out from where it waits; false when it is not there. */
  remove(item: T, { priority, key }: Placement): boolean {
    const level = this.levels.get(priority);
    const list = level?.byKey.get(key);
    if (level === undefined || list === undefined || !list.remove(item)) return false;
    this.count--;
    if (list.size === 0) {
      level.byKey.delete(key);
      level.turns.remove(key);
      if (level.byKey.size === 0) this.dropLevel(priority);
    }
    return true;
  }

  /** Takes every item out, in serving order. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) out.push(item);
    return out;
  }

  private dropLevel(priority: number): void {
    this.levels.delete(priority);
    this.priorities.splice(this.priorities.indexOf(priority), 1);
  }
}
