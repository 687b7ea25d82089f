/** Where the worker runtime is, and what a thread needs to load it and TypeScript nodes. */
import { extname, resolve } from 'node:path';

/** The worker runtime file, and what its threads need to load it and TypeScript nodes. */
export function workerRuntime(): { filename: string; execArgv: string[] | undefined; tsNodeRegister: string | undefined } {
  const fromSource = extname(__filename) === '.ts';
  const filename = resolve(__dirname, '..', '..', 'workers', fromSource ? 'runtime.ts' : 'runtime.js');
  // Threads inherit no loader hooks. Under ts-node, register it in them too, without
  // type checks: at start when the runtime itself is TypeScript (our own sources),
  // else on a thread's first TypeScript node (a user's process running under ts-node).
  const underTsNode = fromSource || Symbol.for('ts-node.register.instance') in process;
  let register: string | undefined;
  try {
    register = underTsNode ? require.resolve('ts-node/register/transpile-only') : undefined;
  } catch {
    register = undefined;
  }
  if (fromSource && register !== undefined) {
    // Explicit execArgv must hold only flags a worker accepts (not V8 flags such as
    // --expose-gc, which it would inherit by default): keep the loader flags only.
    return { filename, execArgv: ['-r', register], tsNodeRegister: undefined };
  }
  return { filename, execArgv: undefined, tsNodeRegister: register };
}
