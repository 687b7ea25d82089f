/**
 * The BullMQ backend's packages, bullmq and ioredis: optional peer dependencies, so that
 * an install for the embedded pool alone does without them. Loaded when the backend is
 * used, and named in a clear error when they are not installed.
 */
import { MissingPackageError } from '../errors';

const PACKAGES = ['bullmq', 'ioredis'] as const;

export interface Peers {
  readonly bullmq: typeof import('bullmq');
  readonly ioredis: typeof import('ioredis');
}

/** Whether `error` says that package `name` itself (not one of its own dependencies) is missing. */
function isMissing(error: unknown, name: string): boolean {
  const { code, message } = error as { code?: unknown; message?: unknown };
  return code === 'MODULE_NOT_FOUND' && typeof message === 'string' && message.startsWith(`Cannot find module '${name}'`);
}

/**
 * bullmq and ioredis, loaded for `what` (the BullMQ backend, a worker process).
 * @throws {MissingPackageError} naming the packages to install, when either is missing.
 */
export function loadPeers(what: string): Peers {
  const loaded: Partial<Record<(typeof PACKAGES)[number], unknown>> = {};
  const missing: string[] = [];
  let cause: unknown;
  // ioredis first: bullmq requires it, and would fail for want of it too.
  for (const name of [...PACKAGES].reverse()) {
    try {
      loaded[name] = require(name);
    } catch (error) {
      const absent = PACKAGES.find((peer) => isMissing(error, peer));
      if (absent === undefined) throw error;
      if (!missing.includes(absent)) missing.unshift(absent);
      cause ??= error;
    }
  }
  if (missing.length > 0) {
    const names = missing.join(' and ');
    throw new MissingPackageError(
      `${what} needs ${names}, which ${missing.length > 1 ? 'are' : 'is'} not installed: run \`npm install ${missing.join(' ')}\` ` +
        `(optional peer dependencies of lukhas-orchestrator; the embedded pool does without them)`,
      { packages: missing, cause },
    );
  }
  return loaded as unknown as Peers;
}
