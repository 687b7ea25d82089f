/**
 * Zero-copy data between threads: `transfer(value)` marks a value to be moved, not
 * copied, the next time it crosses a thread boundary (a node's output, a run's input).
 *
 * The marks live in one WeakMap per thread, shared by every copy of this library a
 * thread loads (a node module may import the package from its own `node_modules`).
 * Importing this module starts nothing.
 */
import { MessagePort, type Transferable } from 'node:worker_threads';

const REGISTRY = Symbol.for('lukhas-orchestrator.transfer');
type Registry = WeakMap<object, readonly Transferable[]>;
const holder = globalThis as typeof globalThis & { [REGISTRY]?: Registry };
const registry: Registry = (holder[REGISTRY] ??= new WeakMap());

/**
 * Marks `value` to be moved rather than copied when it crosses threads: an
 * `ArrayBuffer`, a typed array or `DataView` (its buffer moves), a `MessagePort`, or an
 * object or array holding such values (one level deep), or anything with an explicit
 * `transferList`. After it moved, the sender's buffers are detached (empty).
 *
 * Use it in node code (`return transfer(pixels)`) and for a run's input
 * (`initialInput: transfer(buffer)`). Returns `value` itself.
 *
 * @throws {TypeError} when `value` holds nothing that can be moved.
 * @example
 * ```js
 * const { transfer } = require('lukhas-orchestrator');
 * module.exports = (image) => transfer(blur(image)); // a Uint8Array, moved to the next thread
 * ```
 */
export function transfer<T>(value: T, transferList?: readonly Transferable[]): T {
  const list = transferList ?? movablesOf(value);
  if (value === null || typeof value !== 'object' || list.length === 0) {
    throw new TypeError(
      'transfer() takes an ArrayBuffer, a typed array, a MessagePort, or an object or array holding them ' +
        '(or an explicit transferList)',
    );
  }
  registry.set(value as object, list);
  return value;
}

/** What moves with `value`, if it was marked by {@link transfer}. */
export function transferListOf(value: unknown): readonly Transferable[] | undefined {
  return value !== null && typeof value === 'object' ? registry.get(value) : undefined;
}

/** Removes the mark of {@link transfer}: `value` will be copied. */
export function untransfer(value: unknown): void {
  if (value !== null && typeof value === 'object') registry.delete(value);
}

function movablesOf(value: unknown): Transferable[] {
  const found = new Set<Transferable>();
  const take = (item: unknown): void => {
    if (item instanceof ArrayBuffer) found.add(item);
    else if (ArrayBuffer.isView(item) && item.buffer instanceof ArrayBuffer) found.add(item.buffer);
    else if (item instanceof MessagePort) found.add(item);
  };
  take(value);
  if (found.size === 0 && value !== null && typeof value === 'object') {
    for (const item of Array.isArray(value) ? value : Object.values(value)) take(item);
  }
  return [...found];
}
