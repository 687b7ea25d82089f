/**
 * The BullMQ backend: `bullmqBackend({ connection })` runs an executor's nodes on worker
 * processes through a BullMQ queue in Redis. The executor's side is
 * `bullmq-dispatcher.ts`; the worker processes' is `worker.ts`.
 */
import { show } from '../shared/show';
import type { Backend, DispatcherEvents, DispatcherOptions } from '../pool/dispatcher';
import { MAX_TIMER_MS } from '../shared/delay';
import { BullmqDispatcher } from './bullmq-dispatcher';
import { connectionOptions, pickConnection, type RedisConnectionOptions } from './connection';
import { loadPeers } from './peers';
import { logToStderr, maxBytesOf, NO_SECRET_WARNING, secretOf, SECRET_ENV, Signer } from './trust';

/** Options of {@link bullmqBackend}. */
export interface BullmqBackendOptions {
  /**
   * Redis: a URL (`redis://[user:password@]host:6379/0`, `rediss://` for TLS) or ioredis
   * connection options. Without it, the URL is read from `connectionFile`, else from the
   * environment variable `LUKHAS_REDIS_URL`. Messages show it without its password.
   */
  readonly connection?: string | RedisConnectionOptions;
  /** A file holding the Redis URL (instead of `connection`). */
  readonly connectionFile?: string;
  /**
   * The secret shared with the worker processes (a string or bytes, at least 16; the
   * same as their `--secret-file` or `LUKHAS_SECRET`): every job is signed with it
   * (HMAC-SHA256), and a progress update or return value that is not signed with it is
   * ignored. Without it, the environment variable `LUKHAS_SECRET` is read; without
   * either, nothing is signed and a warning is logged.
   */
  readonly secret?: string | Uint8Array;
  /**
   * The most a job or an outcome read back may weigh, in bytes (their JSON); larger
   * outcomes are ignored, and a segment whose payload alone is larger fails its run
   * with a `PipelineDefinitionError`. Give the worker processes the same
   * (`--max-job-bytes`).
   * @default 67108864 (64 MiB)
   */
  readonly maxJobBytes?: number;
  /**
   * Where the backend's warnings and refusals go, a line at a time.
   * @default a line on stderr
   */
  readonly log?: (line: string) => void;
  /**
   * The queue's name; the worker processes must use the same.
   * @default 'lukhas'
   */
  readonly queue?: string;
  /**
   * BullMQ's key prefix.
   * @default 'bull'
   */
  readonly prefix?: string;
  /**
   * How long, past its grace period, a stopped segment may go without word from the
   * worker process that has it before its run ends anyway: that process may have died
   * (one that still runs it has its outcome ignored). Keep it above the worker
   * processes' `--lock-ms` + `--stalled-ms`, so that a dead process's job is first
   * handed to a live one, which reports the stop at once.
   * @default 20000
   */
  readonly stopTimeoutMs?: number;
  /**
   * How long `executor.ready()` waits for Redis before it rejects with a
   * `BackendUnavailableException`. The backend keeps trying to connect afterwards.
   * @default 10000
   */
  readonly connectTimeoutMs?: number;
  /**
   * Segments in Redis (sent and not ended) at most. The rest wait in the executor, where
   * they are served by `priority`, then round-robin across `concurrencyKey`s: worker
   * processes take jobs from Redis in the order they were added, so without a bound a
   * burst sent first is run first, whatever the keys and priorities of what follows.
   * About what the worker processes run at once (their threads times their
   * `--tasks-per-thread`, or a few per CPU-bound thread) keeps them busy.
   * @default Infinity
   */
  readonly maxSegmentsInFlight?: number;
}

const OPTION_KEYS = ['connection', 'connectionFile', 'queue', 'prefix', 'stopTimeoutMs', 'connectTimeoutMs', 'secret', 'maxJobBytes', 'log', 'maxSegmentsInFlight'];

/**
 * Runs the executor's nodes on BullMQ worker processes.
 * @throws {MissingPackageError} when bullmq or ioredis is not installed (optional peer
 * dependencies: `npm install bullmq ioredis`).
 * @throws {TypeError} for an unknown option or a value of the wrong type.
 * @throws {RangeError} for a value out of range.
 * @example
 * ```js
 * const executor = new PipelineExecutor({ backend: bullmqBackend({ connection: 'redis://127.0.0.1:6379' }) });
 * ```
 */
export function bullmqBackend(options: BullmqBackendOptions): Backend {
  if (options === null || typeof options !== 'object') throw new TypeError(`Expected BullMQ backend options, got ${show(options)}`);
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) throw new TypeError(`Unknown BullMQ backend option \`${key}\`; known options are: ${OPTION_KEYS.join(', ')}`);
  }
  const { queue = 'lukhas', prefix = 'bull', stopTimeoutMs = 20_000, connectTimeoutMs = 10_000, log = logToStderr } = options;
  if (options.connectionFile !== undefined && typeof options.connectionFile !== 'string') {
    throw new TypeError(`Expected \`connectionFile\` to be a path, got ${show(options.connectionFile)}`);
  }
  const connection = pickConnection(options.connection, options.connectionFile, 'connectionFile');
  if (typeof connection !== 'string' && (connection === null || typeof connection !== 'object')) {
    throw new TypeError(`Expected \`connection\` to be a Redis URL or connection options, got ${show(connection)}`);
  }
  const resolvedConnection = connectionOptions(connection);
  if (typeof log !== 'function') throw new TypeError(`Expected \`log\` to be a function, got ${show(log)}`);
  const maxJobBytes = maxBytesOf(options.maxJobBytes, 'maxJobBytes');
  const envSecret = process.env[SECRET_ENV];
  const secret = secretOf(options.secret ?? (envSecret === '' ? undefined : envSecret), options.secret === undefined ? SECRET_ENV : 'secret');
  // At once, rather than when the executor starts.
  loadPeers('The BullMQ backend');
  if (typeof queue !== 'string' || queue === '') throw new TypeError(`Expected \`queue\` to be a non-empty string, got ${show(queue)}`);
  if (typeof prefix !== 'string' || prefix === '') throw new TypeError(`Expected \`prefix\` to be a non-empty string, got ${show(prefix)}`);
  for (const [name, value] of [['stopTimeoutMs', stopTimeoutMs], ['connectTimeoutMs', connectTimeoutMs]] as const) {
    if (typeof value !== 'number' || !(value >= 0) || value > MAX_TIMER_MS) {
      throw new RangeError(`Expected \`${name}\` to be a number of milliseconds from 0 to ${MAX_TIMER_MS}, got ${show(value)}`);
    }
  }
  const { maxSegmentsInFlight = Infinity } = options;
  if (typeof maxSegmentsInFlight !== 'number' || !(Number.isInteger(maxSegmentsInFlight) || maxSegmentsInFlight === Infinity) || maxSegmentsInFlight < 1) {
    throw new RangeError(`Expected \`maxSegmentsInFlight\` to be an integer of at least 1, or Infinity, got ${show(maxSegmentsInFlight)}`);
  }
  const signer = new Signer(secret, prefix, queue);
  return {
    name: 'bullmq',
    createDispatcher: (resolved: DispatcherOptions, events: DispatcherEvents) => {
      if (!signer.signs) log(`warning: BullMQ backend on queue "${queue}" with ${NO_SECRET_WARNING}`);
      return new BullmqDispatcher(resolvedConnection, queue, prefix, { stopTimeoutMs, connectTimeoutMs, signer, maxJobBytes, maxSegmentsInFlight, log }, resolved, events);
    },
  };
}
