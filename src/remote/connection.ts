/** How the backend's processes reach Redis. */
import { show } from '../options';

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
 * ioredis options from a URL (`redis://`, or `rediss://` for TLS) or as given; BullMQ
 * needs `maxRetriesPerRequest: null`.
 */
export function connectionOptions(connection: string | RedisConnectionOptions): RedisConnectionOptions {
  if (typeof connection !== 'string') return connection;
  let url: URL;
  try {
    url = new URL(connection);
  } catch {
    throw new TypeError(`Expected a Redis URL such as redis://127.0.0.1:6379/0, got ${show(connection)}`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new TypeError(`Expected a Redis URL (redis:// or rediss://), got ${show(connection)}`);
  }
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new TypeError(`Expected the database of ${show(connection)} to be a number, got "${url.pathname.slice(1)}"`);
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
