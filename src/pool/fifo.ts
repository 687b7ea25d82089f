/**
 * A first-in, first-out queue of distinct items whose `shift()`, `peek()` and `remove()`
 * take constant time (amortised), however long it grows: `Array.prototype.shift()` moves
 * every element, and `splice()` every one after the removed one, so a queue of n items
 * drained by them costs n² (100,000 segments waiting for a slot took seconds).
 */
export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  /** Items queued and not removed. */
  private count = 0;
  /**
   * The items queued and not removed, as a set: made by the first `remove()` (from the
   * entries), kept while the queue holds anything. A queue nothing is removed from, the
   * usual one, does not pay for a set's hashing per item.
   */
  private members: Set<T> | undefined;
  /** Entries of items removed while queued (an item may be queued again since), by item: skipped when their turn comes. */
  private readonly removed = new Map<T, number>();

  /** Items queued and not removed. */
  get size(): number {
    return this.count;
  }

  /** Queues `item`, which must not be queued already. */
  push(item: T): void {
    this.items.push(item);
    this.count++;
    this.members?.add(item);
  }

  /** The oldest item not removed, left on the queue; undefined when there is none. */
  peek(): T | undefined {
    this.skipRemoved();
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  /** The oldest item not removed, taken off the queue; undefined when there is none. */
  shift(): T | undefined {
    this.skipRemoved();
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.items[this.head++] = undefined;
    this.count--;
    this.members?.delete(item);
    this.compact();
    return item;
  }

  /** Takes a queued item out; false when it is not queued. */
  remove(item: T): boolean {
    this.members ??= new Set(this);
    if (!this.members.delete(item)) return false;
    this.count--;
    this.removed.set(item, (this.removed.get(item) ?? 0) + 1);
    return true;
  }

  /** Every item not removed, oldest first; the queue is left empty. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) out.push(item);
    return out;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    const stale = new Map(this.removed);
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i]!;
      const left = stale.get(item) ?? 0;
      if (left === 0) yield item;
      else stale.set(item, left - 1);
    }
  }

  /** Whether the entry at the head is one of a removed item, which it then forgets. */
  private headRemoved(): boolean {
    if (this.removed.size === 0) return false;
    const item = this.items[this.head]!;
    const left = this.removed.get(item);
    if (left === undefined) return false;
    if (left === 1) this.removed.delete(item);
    else this.removed.set(item, left - 1);
    return true;
  }

  private skipRemoved(): void {
    while (this.head < this.items.length && this.headRemoved()) {
      this.items[this.head++] = undefined;
      this.compact();
    }
  }

  /** Drops the consumed front now and then, so the array does not grow for ever. */
  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
      // Empty: nothing left to remove.
      this.members = undefined;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
