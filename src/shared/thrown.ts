/**
 * Errors across a boundary (a thread's, a process's): an Error object is never posted as
 * is; it travels as a {@link SerializedError} and is rebuilt on the other side with its
 * class (for built-in classes), name, message, original stack, own properties and cause.
 */

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly stack: string | undefined;
  /** The nearest built-in class in the error's prototype chain. */
  readonly builtin: BuiltinName;
  /** Own enumerable properties other than the standard ones (`code`, `errno`...). */
  readonly props: Record<string, unknown>;
  readonly cause?: Thrown;
  /** For an AggregateError. */
  readonly errors?: readonly Thrown[];
}

/** A thrown value: an error, or anything else that was thrown. */
export type Thrown = { readonly error: SerializedError } | { readonly value: unknown };

const BUILTINS = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
  AggregateError,
  DOMException,
} as const;
type BuiltinName = keyof typeof BUILTINS;
const BUILTIN_ORDER = Object.keys(BUILTINS).reverse() as BuiltinName[]; // most specific first
const STANDARD_KEYS = new Set(['name', 'message', 'stack', 'cause', 'errors']);
const MAX_DEPTH = 8;

/** Turns a thrown value into something `postMessage` can carry. */
export function serializeThrown(thrown: unknown, depth = 0): Thrown {
  if (!(thrown instanceof Error) && !isDomException(thrown)) {
    return { value: cloneable(thrown) };
  }
  const error = thrown as Error;
  const props: Record<string, unknown> = {};
  for (const key of Object.keys(error)) {
    if (STANDARD_KEYS.has(key)) continue;
    props[key] = cloneable((error as unknown as Record<string, unknown>)[key]);
  }
  const builtin = BUILTIN_ORDER.find((name) => error instanceof BUILTINS[name]) ?? 'Error';
  const serialized: {
    -readonly [K in keyof SerializedError]: SerializedError[K];
  } = {
    name: safeString(error.name, 'Error'),
    message: safeString(error.message, ''),
    stack: typeof error.stack === 'string' ? error.stack : undefined,
    builtin,
    props,
  };
  if (depth < MAX_DEPTH && 'cause' in error && error.cause !== undefined && error.cause !== thrown) {
    serialized.cause = serializeThrown(error.cause, depth + 1);
  }
  if (error instanceof AggregateError && Array.isArray(error.errors) && depth < MAX_DEPTH) {
    serialized.errors = error.errors.map((inner: unknown) => serializeThrown(inner, depth + 1));
  }
  return { error: serialized };
}

/** Rebuilds a thrown value on the main thread. */
export function deserializeThrown(thrown: Thrown): unknown {
  if (!('error' in thrown)) return thrown.value;
  const s = thrown.error;
  let error: Error;
  if (s.builtin === 'DOMException') {
    error = new DOMException(s.message, s.name);
  } else if (s.builtin === 'AggregateError') {
    error = new AggregateError((s.errors ?? []).map(deserializeThrown), s.message);
  } else {
    error = new BUILTINS[s.builtin](s.message);
  }
  if (error.name !== s.name) {
    Object.defineProperty(error, 'name', { value: s.name, writable: true, configurable: true, enumerable: false });
  }
  if (s.stack !== undefined) {
    Object.defineProperty(error, 'stack', { value: s.stack, writable: true, configurable: true, enumerable: false });
  }
  if (s.cause !== undefined) {
    Object.defineProperty(error, 'cause', {
      value: deserializeThrown(s.cause),
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
  Object.assign(error, s.props);
  return error;
}

function isDomException(value: unknown): boolean {
  return typeof DOMException === 'function' && value instanceof DOMException;
}

function safeString(value: unknown, fallback: string): string {
  return typeof value === 'string' ? value : value === undefined ? fallback : String(value);
}

/** The value itself when it can cross threads, its description otherwise. */
function cloneable(value: unknown): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol')) {
    return value;
  }
  try {
    structuredClone(value);
    return value;
  } catch {
    return typeof value === 'function' ? `[Function ${value.name || 'anonymous'}]` : String(value);
  }
}

/** An error as one line of text: its message, or the thrown value itself. */
export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
