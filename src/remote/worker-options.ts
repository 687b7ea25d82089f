/** Options of a worker process of the BullMQ backend (`startWorker()`, the command line), and their checks. */
import type { RedisConnectionOptions } from './connection';
import type { ResourceLimits } from 'node:worker_threads';
import { MAX_TIMER_MS } from '../shared/delay';
import { show } from '../shared/show';
import { ModuleRoots } from '../plan/module-roots';
import { connectionOptions, pickConnection } from './connection';
import { logToStderr, maxBytesOf, secretOf, SECRET_ENV, Signer } from './trust';

export interface WorkerProcessOptions {
  /**
   * Redis: a URL or ioredis connection options; without it, the URL in the environment
   * variable `LUKHAS_REDIS_URL`. Messages show it without its password.
   */
  readonly connection?: string | RedisConnectionOptions;
  /**
   * The directories whose modules this process may run (required): a node whose module
   * is not a file inside one of them, after resolving `..` and symbolic links, is refused
   * before anything is loaded, and its run fails with a `PipelineDefinitionError` naming
   * the node and the module. Package names, `node:` built-ins and relative paths are
   * refused.
   */
  readonly moduleRoots: readonly string[];
  /**
   * The secret shared with the executors (a string or bytes, at least 16): a job that is
   * not signed with it is dropped, with a log line, before anything of it is decoded;
   * what this process reports is signed with it. Without it, the environment variable
   * `LUKHAS_SECRET`; without either, every job is taken, with a warning at start.
   */
  readonly secret?: string | Uint8Array;
  /**
   * A job larger than this (its JSON, in bytes) is refused; so is a node's output or
   * progress value that would make a report larger. Give executors the same.
   * @default 67108864 (64 MiB)
   */
  readonly maxJobBytes?: number;
  /** Where warnings and refusals go, a line at a time. @default a line on stderr */
  readonly log?: (line: string) => void;
  /** @default 'lukhas' */
  readonly queue?: string;
  /** @default 'bull' */
  readonly prefix?: string;
  /** Threads of this process's pool. @default os.availableParallelism() */
  readonly threads?: number;
  /** @default 1024 */
  readonly tasksPerThread?: number;
  /** Jobs (each of up to 64 segments) this process runs at once, at most. @default threads * 64 */
  readonly concurrency?: number;
  /**
   * Segments per thread this process may hold that have not started yet while every
   * thread is held by synchronous code: it takes no other job then, so that jobs of
   * CPU-bound nodes wait in Redis for whichever process frees a thread first instead of
   * queueing behind a busy one. Nodes that wait (I/O, timers) leave their thread free,
   * and their jobs are taken as they come.
   * @default 32
   */
  readonly prefetch?: number;
  readonly resourceLimits?: ResourceLimits;
  /**
   * How long a job's lock lasts without renewal: a process that dies loses its jobs to
   * the others after at most `lockDurationMs + stalledIntervalMs`.
   * @default 10000
   */
  readonly lockDurationMs?: number;
  /** @default 5000 */
  readonly stalledIntervalMs?: number;
  /** How many times a job may be recovered from a dead process before it fails. @default 3 */
  readonly maxStalledCount?: number;
  /**
   * Gives up a start under way (Redis not answering yet, say): `startWorker()` then
   * closes what it opened and rejects with the signal's reason.
   */
  readonly signal?: AbortSignal;
}

const WORKER_OPTION_KEYS = [
  'connection',
  'moduleRoots',
  'secret',
  'maxJobBytes',
  'log',
  'queue',
  'prefix',
  'threads',
  'tasksPerThread',
  'concurrency',
  'prefetch',
  'resourceLimits',
  'lockDurationMs',
  'stalledIntervalMs',
  'maxStalledCount',
  'signal',
];
const COUNTS = ['concurrency', 'prefetch', 'lockDurationMs', 'stalledIntervalMs', 'maxStalledCount'] as const;

/** What a worker process runs with, once its options are checked. */
export interface WorkerSettings {
  readonly connection: RedisConnectionOptions;
  readonly roots: ModuleRoots;
  readonly signer: Signer;
  readonly maxJobBytes: number;
  readonly log: (line: string) => void;
  readonly queue: string;
  readonly prefix: string;
}

/** Checks the options before anything connects, naming what is wrong; reads the environment for what is not given. */
export function checkWorkerOptions(options: WorkerProcessOptions): WorkerSettings {
  if (options === null || typeof options !== 'object') throw new TypeError(`Expected worker process options, got ${show(options)}`);
  for (const key of Object.keys(options)) {
    if (!WORKER_OPTION_KEYS.includes(key)) {
      throw new TypeError(`Unknown worker process option \`${key}\`; known options are: ${WORKER_OPTION_KEYS.join(', ')}`);
    }
  }
  for (const key of COUNTS) {
    const value = options[key];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) {
      throw new RangeError(`Expected \`${key}\` to be a positive integer, got ${show(value)}`);
    }
  }
  // Longer timers fire after 1 ms: refused rather than cut short (locks are renewed at half their duration).
  for (const [key, max] of [['lockDurationMs', 2 * MAX_TIMER_MS], ['stalledIntervalMs', MAX_TIMER_MS]] as const) {
    const value = options[key];
    if (value !== undefined && value > max) throw new RangeError(`Expected \`${key}\` to be a number of milliseconds from 1 to ${max}, got ${show(value)}`);
  }
  for (const key of ['queue', 'prefix'] as const) {
    const value = options[key];
    if (value !== undefined && (typeof value !== 'string' || value === '')) {
      throw new TypeError(`Expected \`${key}\` to be a non-empty string, got ${show(value)}`);
    }
  }
  if (options.moduleRoots === undefined || (Array.isArray(options.moduleRoots) && options.moduleRoots.length === 0)) {
    throw new TypeError(
      'A worker process runs only the modules inside the directories it is given: give `moduleRoots` (on the command line, --module-root <dir>), the directories of the node modules it may run',
    );
  }
  const roots = ModuleRoots.of(options.moduleRoots, 'moduleRoots');
  const log = options.log ?? logToStderr;
  if (typeof log !== 'function') throw new TypeError(`Expected \`log\` to be a function, got ${show(log)}`);
  const envSecret = process.env[SECRET_ENV];
  const secret = secretOf(options.secret ?? (envSecret === '' ? undefined : envSecret), options.secret === undefined ? SECRET_ENV : 'secret');
  const queue = options.queue ?? 'lukhas';
  const prefix = options.prefix ?? 'bull';
  return {
    connection: connectionOptions(pickConnection(options.connection, undefined, '--redis-file')),
    roots,
    signer: new Signer(secret, prefix, queue),
    maxJobBytes: maxBytesOf(options.maxJobBytes, 'maxJobBytes'),
    log,
    queue,
    prefix,
  };
}
