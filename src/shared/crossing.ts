/**
 * What cannot cross threads. Structured clone throws on a function, but silently turns
 * an instance of a user-defined class into a plain object, dropping its methods; this
 * catches both, on the value and (for plain objects and arrays) its direct members.
 */

/** Members of a plain object or array looked at, at most. */
const MEMBERS_CHECKED = 64;

/** Why `value` cannot cross threads unchanged, or `undefined` when it can. */
export function uncrossable(value: unknown, depth = 0): string | undefined {
  if (typeof value === 'function') return `a function (${value.name || 'anonymous'})`;
  if (typeof value === 'symbol') return 'a symbol';
  if (value === null || typeof value !== 'object') return undefined;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null || Array.isArray(value)) {
    if (depth > 0) return undefined;
    let checked = 0;
    for (const key in value) {
      if (++checked > MEMBERS_CHECKED) break;
      const inner = uncrossable((value as Record<string, unknown>)[key], depth + 1);
      if (inner !== undefined) return `${inner} at ${Array.isArray(value) ? `[${key}]` : `.${key}`}`;
    }
    return undefined;
  }
  if (hasOwnMethods(proto) && !isNative(proto)) {
    const name = (proto as { constructor?: { name?: string } }).constructor?.name || 'an anonymous class';
    return `an instance of ${name}, whose methods would be lost`;
  }
  return undefined;
}

function hasOwnMethods(proto: unknown): boolean {
  if (proto === null || typeof proto !== 'object') return false;
  return Object.getOwnPropertyNames(proto).some((key) => {
    if (key === 'constructor') return false;
    const descriptor = Object.getOwnPropertyDescriptor(proto, key);
    return typeof descriptor?.value === 'function' || descriptor?.get !== undefined;
  });
}

/** A built-in or Node class (Map, Date, Blob, MessagePort...): structured clone knows it. */
function isNative(proto: unknown): boolean {
  for (let current = proto; current !== null && current !== Object.prototype; current = Object.getPrototypeOf(current)) {
    const ctor = (current as { constructor?: unknown }).constructor;
    if (typeof ctor === 'function' && (NODE_CLONEABLE.has(ctor) || /\{\s*\[native code\]\s*\}$/.test(Function.prototype.toString.call(ctor)))) {
      return true;
    }
  }
  return false;
}

/** Node classes written in JavaScript that structured clone supports. */
const NODE_CLONEABLE = new Set<unknown>([globalThis.Blob, globalThis.DOMException].filter((ctor) => ctor !== undefined));
