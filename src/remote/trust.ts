/**
 * The BullMQ backend's trust boundary with Redis: what an executor and its worker
 * processes write there is authenticated with a shared secret (HMAC-SHA256), and what
 * they read from it is bounded in size before it is decoded.
 *
 * Each MAC covers a domain (a job, a progress update, a return value, a saved output),
 * the queue's prefix and name, the job's id and name (or a saved field's name), and the
 * text itself: a job signed for one queue, or one job, is refused in another, and an
 * outcome cannot be passed off as a job nor moved from one job to another. A MAC does
 * not cover when or how often: whoever can write to Redis can add a signed job again
 * once BullMQ has removed it (its segments run again; their outcome, for a job the
 * executor no longer waits for, is ignored), repeat a job's progress updates, or delay,
 * drop and fail jobs. The secret protects what runs and what results are believed, not
 * the queue's availability.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { show } from '../shared/show';

/** What a job or an outcome may weigh, at most, by default: 64 MiB. */
export const DEFAULT_MAX_JOB_BYTES = 64 * 1024 * 1024;
/** The most segments an executor puts in one job: a job naming more is refused. */
export const MAX_SEGMENTS_PER_JOB = 64;
/** The environment variables the worker process and the backend read. */
export const SECRET_ENV = 'LUKHAS_SECRET';
export const REDIS_URL_ENV = 'LUKHAS_REDIS_URL';
/** A secret shorter than this is refused. */
const MIN_SECRET_BYTES = 16;

/** What a MAC authenticates. */
export type Domain = 'job' | 'progress' | 'result' | 'saved';

export class Signer {
  constructor(
    private readonly key: Buffer | undefined,
    private readonly prefix: string,
    private readonly queue: string,
  ) {}

  /** Whether there is a secret: without one, nothing is signed and everything passes. */
  get signs(): boolean {
    return this.key !== undefined;
  }

  /** The MAC of `text` in `domain`, for job `jobId` and `name` (a job's name, a saved field's); undefined without a secret. */
  sign(domain: Domain, jobId: string, name: string, text: string): string | undefined {
    if (this.key === undefined) return undefined;
    return this.mac(this.key, domain, jobId, name, text).toString('base64');
  }

  /** Whether `mac` authenticates `text` (always, without a secret). In constant time. */
  verify(domain: Domain, jobId: string, name: string, text: string, mac: unknown): boolean {
    if (this.key === undefined) return true;
    if (typeof mac !== 'string') return false;
    const given = Buffer.from(mac, 'base64');
    const expected = this.mac(this.key, domain, jobId, name, text);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private mac(key: Buffer, domain: Domain, jobId: string, name: string, text: string): Buffer {
    // The header is JSON, whose strings cannot hold a raw newline: where it ends is unambiguous.
    const header = JSON.stringify(['lukhas/1', domain, this.prefix, this.queue, jobId, name]);
    return createHmac('sha256', key).update(`${header}\n`).update(text).digest();
  }
}

/**
 * A secret given as an option (`name`): a string (its UTF-8 bytes) or bytes, at least 16.
 * @throws {TypeError|RangeError} naming the option, never showing the secret.
 */
export function secretOf(value: unknown, name: string): Buffer | undefined {
  if (value === undefined) return undefined;
  let bytes: Buffer;
  if (typeof value === 'string') bytes = Buffer.from(value, 'utf8');
  else if (Buffer.isBuffer(value) || value instanceof Uint8Array) bytes = Buffer.from(value);
  else throw new TypeError(`Expected \`${name}\` to be a string or bytes, got a value of type ${value === null ? 'null' : typeof value}`);
  if (bytes.length < MIN_SECRET_BYTES) {
    throw new RangeError(`Expected \`${name}\` to be at least ${MIN_SECRET_BYTES} bytes long (for instance \`openssl rand -hex 32\`), got ${bytes.length}`);
  }
  return bytes;
}

/**
 * The text of a file holding a secret or a Redis URL, without its trailing newline.
 * @throws {Error} naming the file (never its content).
 */
export function readTextFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (cause) {
    throw new Error(`Cannot read the ${what} file ${JSON.stringify(path)}: ${(cause as Error).message}`, { cause });
  }
}

/** `maxJobBytes` given as option `name`: a positive integer. */
export function maxBytesOf(value: unknown, name: string): number {
  if (value === undefined) return DEFAULT_MAX_JOB_BYTES;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1024) {
    throw new RangeError(`Expected \`${name}\` to be an integer number of bytes of at least 1024, got ${show(value)}`);
  }
  return value;
}

/** Something read from Redis, safe to put in a log line: quoted, and cut short. */
export function quoted(value: unknown): string {
  const text = typeof value === 'string' ? value : Buffer.isBuffer(value) ? `(${value.length} bytes)` : String(value);
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}

/** The default log of the backend's processes: a line on stderr. */
export function logToStderr(line: string): void {
  process.stderr.write(`lukhas-orchestrator: ${line}\n`);
}

export const NO_SECRET_WARNING =
  'no shared secret: any client of Redis can make the worker processes run their modules and send results to the executors (give a secret: LUKHAS_SECRET, --secret-file, or the `secret` option)';
