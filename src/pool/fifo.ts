/**
 * A first-in, first-out queue whose `shift()` and `remove()` take constant time, however
 * long it grows: `Array.prototype.shift()` moves every element, and `splice()` every one
 * after the removed one, so a queue of n items drained by them costs n² (100,000 segments
 * waiting for a slot took seconds).
 */
export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  /** Items removed while queued: skipped when their turn comes. */
  private readonly removed = new Set<T>();

  /** Items queued and not removed. */
  get size(): number {
    return this.items.length - this.head - this.removed.size;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The oldest item not removed, taken off the queue; undefined when there is none. */
  shift(): T | undefined {
    while (this.head < this.items.length) {
      const item = this.items[this.head]!;
      this.items[this.head++] = undefined;
      // Drop the consumed front now and then, so the array does not grow for ever.
      if (this.head >= 1024 && this.head * 2 >= this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      if (!this.removed.delete(item)) return item;
    }
    return undefined;
  }

  /** Takes a queued item out (it must be queued, and only once). */
  remove(item: T): void {
    this.removed.add(item);
  }

  /** Every item not removed, oldest first; the queue is left empty. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) out.push(item);
    return out;
  }
}
