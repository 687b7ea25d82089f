/**
 * How the backend's processes reach Redis, and how a connection is shown in messages:
 * never with its password.
 */
import { show } from '../shared/show';
import { readTextFile, REDIS_URL_ENV } from './trust';

/**
 * ioredis connection options (ioredis's `RedisOptions`), passed on as given. Typed here
 * rather than imported from ioredis, so that the package's types need neither bullmq
 * nor ioredis installed.
 */
export interface RedisConnectionOptions {
  readonly host?: string;
  readonly port?: number;
  readonly db?: number;
  readonly username?: string;
  readonly password?: string;
  readonly tls?: object;
  /** Any other option of ioredis. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an ioredis RedisOptions (an interface) must fit
  readonly [option: string]: any;
}

/**
 * ioredis options from a URL (`redis://`, or `rediss://` for TLS; `user:password@` for
 * an ACL user) or as given; BullMQ needs `maxRetriesPerRequest: null`.
 * @throws {TypeError} showing the URL without its password.
 */
export function connectionOptions(connection: string | RedisConnectionOptions): RedisConnectionOptions {
  if (typeof connection !== 'string') return connection;
  let url: URL;
  try {
    url = new URL(connection);
  } catch {
    throw new TypeError(`Expected a Redis URL such as redis://127.0.0.1:6379/0, got ${show(redactUrl(connection))}`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new TypeError(`Expected a Redis URL (redis:// or rediss://), got ${show(redactUrl(connection))}`);
  }
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new TypeError(`Expected the database of ${show(redactUrl(connection))} to be a number, got "${url.pathname.slice(1)}"`);
  return {
    host: url.hostname || '127.0.0.1',
    port: url.port === '' ? 6379 : Number(url.port),
    db,
    ...(url.password === '' ? {} : { password: decodeURIComponent(url.password) }),
    ...(url.username === '' ? {} : { username: decodeURIComponent(url.username) }),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
  };
}

/** A Redis URL with its password (if any) replaced by `***`, even when it does not parse. */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password === '') return text;
    url.password = '***';
    return url.href;
  } catch {
    // Whatever stands between `//` and the last `@` of the authority may hold a password.
    return text.replace(/\/\/[^/]*@/, '//***@');
  }
}

/** Where a connection leads, for messages: user, host, port and TLS, never the password. */
export function where(connection: RedisConnectionOptions): string {
  const { host = 'localhost', port = 6379, username, tls } = connection as { host?: string; port?: number; username?: string; tls?: unknown };
  return `${username === undefined ? '' : `${username}@`}${host}:${port}${tls === undefined ? '' : ' (TLS)'}`;
}

/**
 * The connection given, else the URL in `file`, else the one in the environment variable
 * LUKHAS_REDIS_URL: a password in a file or the environment stays out of `ps`.
 * @throws {TypeError} when none is given, or more than one.
 */
export function pickConnection(given: string | RedisConnectionOptions | undefined, file: string | undefined, fileOption: string): string | RedisConnectionOptions {
  if (given !== undefined && file !== undefined) throw new TypeError(`Give either a connection or \`${fileOption}\`, not both`);
  if (given !== undefined) return given;
  if (file !== undefined) return readTextFile(file, 'Redis URL').trim();
  const env = process.env[REDIS_URL_ENV];
  if (env !== undefined && env !== '') return env;
  throw new TypeError(`Expected \`connection\` (a Redis URL or connection options), \`${fileOption}\`, or the environment variable ${REDIS_URL_ENV}`);
}

/** Resolves when `promise` settles or `ms` have passed, whichever comes first. */
export async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise.then(() => {}, () => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** `promise`, or a rejection with the signal's reason as soon as it aborts. */
export function untilAborted<T>(signal: AbortSignal | undefined, promise: Promise<T>): Promise<T> {
  if (signal === undefined) return promise;
  promise.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => reject(signal.reason instanceof Error ? signal.reason : new Error('the start was given up'));
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}
