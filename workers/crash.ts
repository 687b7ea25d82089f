/**
 * Crash attribution: a node that takes its thread down (`process.exit()`, an uncaught
 * exception or rejection from one of its callbacks) is named before the thread dies, in
 * a last word on the control port. The node is found through its async context, so it is
 * named even when its own call had long returned; failing that, the node that holds the
 * thread.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { MessagePort } from 'node:worker_threads';
import type { CrashNote } from '../src/shared/protocol';
import { serializeThrown } from '../src/shared/thrown';
import type { SegmentRun } from './segment';

/** The node whose code runs, including callbacks and continuations it started. */
export interface NodeScope {
  readonly run: SegmentRun;
  readonly position: number;
}

export const scope = new AsyncLocalStorage<NodeScope>();

/**
 * Patches `process.exit` and listens for uncaught errors. `holder` names the node whose
 * synchronous code holds the thread, if any.
 */
export function reportCrashes(control: MessagePort, holder: () => NodeScope | undefined): void {
  const exitThread = process.exit.bind(process);
  const crash = (error: unknown, exitCode: number): never => {
    const node = scope.getStore() ?? holder();
    if (node !== undefined) {
      const note: CrashNote = {
        kind: 'crash',
        runId: node.run.task.run.runId,
        nodeId: node.run.nodes[node.position]?.id ?? '',
        element: node.run.task.element,
        error: error === undefined ? undefined : serializeThrown(error),
      };
      control.postMessage(note);
    }
    return exitThread(exitCode);
  };
  process.exit = ((code?: number | string | null) => crash(undefined, Number(code ?? process.exitCode ?? 0))) as typeof process.exit;
  process.on('uncaughtException', (error) => crash(error, 1));
  process.on('unhandledRejection', (reason) => crash(reason, 1));
}
