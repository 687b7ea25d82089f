/**
 * Loading node modules in a worker thread: CommonJS through `require`, ESM through
 * `import()`, TypeScript through ts-node when the main process runs under it. Each
 * module and export is loaded once per thread; the first node to need it waits for it.
 *
 * A CommonJS module's top-level code runs synchronously inside `loadNode()`: the
 * runtime counts it as the loading node's own time (see `runtime.ts`).
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { NodeFunction } from '../src/shared/node';
import type { TaskNode } from '../src/shared/protocol';
import { describe } from '../src/shared/thrown';

/** `require()` entry of ts-node's transpile-only hook, when the main process runs under ts-node. */
let tsNodeRegister: string | undefined;
export function useTsNode(register: string | undefined): void {
  tsNodeRegister = register;
}

/** The function of `node`, if its module is loaded on this thread. */
export function loadedFunction(node: TaskNode): NodeFunction | undefined {
  return loaded.get(moduleKey(node));
}

/** Functions loaded, by module and export, at most about this many. */
const MAX_LOADED = 4096;
/** Functions loaded, by module and export. */
const loaded = new Map<string, NodeFunction>();
const loading = new Map<string, Promise<NodeFunction>>();

/** A module that loaded but has no such function: the message says what it has. */
export class LoadError extends Error {}

export function moduleKey(node: TaskNode): string {
  return `${node.module}#${node.export ?? ''}`;
}

export function loadNode(node: TaskNode): Promise<NodeFunction> {
  const key = moduleKey(node);
  let promise = loading.get(key);
  if (promise === undefined) {
    promise = importNode(node).then(
      (fn) => {
        // Bounded: definitions built at run time may name ever new modules (Node's own
        // module cache keeps them loaded; this map only saves looking them up).
        if (loaded.size >= MAX_LOADED) loaded.clear();
        loaded.set(key, fn);
        loading.delete(key);
        return fn;
      },
      (error: unknown) => {
        loading.delete(key);
        throw error;
      },
    );
    loading.set(key, promise);
  }
  return promise;
}

let tsNodeRegistered = false;

async function importNode(node: TaskNode): Promise<NodeFunction> {
  const path = node.module.startsWith('file:') ? fileURLToPath(node.module) : node.module;
  if (!tsNodeRegistered && tsNodeRegister !== undefined && /\.c?ts$/.test(path)) {
    tsNodeRegistered = true;
    require(tsNodeRegister);
  }
  let namespace: unknown;
  if (path.endsWith('.mjs') || path.endsWith('.mts')) {
    namespace = await import(pathToFileURL(path).href);
  } else {
    try {
      namespace = require(path);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code !== 'ERR_REQUIRE_ESM' && code !== 'ERR_REQUIRE_ASYNC_MODULE') throw error;
      namespace = await import(pathToFileURL(path).href);
    }
  }
  const fn = pickExport(namespace, node.export);
  if (typeof fn !== 'function') {
    const name = node.export === undefined ? 'a default export' : `an export "${node.export}"`;
    const keys = namespace !== null && typeof namespace === 'object' ? Object.keys(namespace) : [];
    const got =
      fn !== undefined ? `it is ${fn === null ? 'null' : typeof fn}` : `it exports ${keys.length === 0 ? 'nothing' : keys.join(', ')}`;
    throw new LoadError(`Module of node "${node.id}" (${path}) does not have ${name} that is a function: ${got}`);
  }
  return fn as NodeFunction;
}

function pickExport(namespace: unknown, name: string | undefined): unknown {
  if (namespace === null || namespace === undefined) return undefined;
  const exports = namespace as Record<string, unknown>;
  if (name !== undefined) return exports[name];
  if (typeof namespace === 'function') return namespace;
  const fallback = exports.default;
  // A CommonJS module compiled from `export default` (exports.default) seen through import().
  if (fallback !== null && typeof fallback === 'object' && typeof (fallback as Record<string, unknown>).default === 'function') {
    return (fallback as Record<string, unknown>).default;
  }
  return fallback;
}

export function loadMessage(node: TaskNode, error: unknown): string {
  return `Module of node "${node.id}" (${node.module}) failed to load: ${describe(error)}`;
}
