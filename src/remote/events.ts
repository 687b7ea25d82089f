/**
 * The executor's reader of a BullMQ queue's event stream (`<prefix>:<queue>:events`),
 * in place of BullMQ's `QueueEvents`, whose reader parses every event's JSON itself and
 * stops for good at the first that does not parse: anyone able to add one entry to the
 * stream would stop every run's results. This one hands each event's fields on as text
 * (as bytes, a field above the size limit), unparsed, and goes on whatever they hold or whatever its handler throws; when Redis is
 * unreachable it tries again from the last event read, so none is missed (the stream
 * keeps its latest 100,000).
 */
import { constants } from 'node:buffer';
import type { Redis } from 'ioredis';

/** Bytes that always decode into a string (UTF-8 takes at least a byte a character). */
const MAX_STRING_BYTES = constants.MAX_STRING_LENGTH;

/**
 * An event's fields as they are in the stream: `event`, `jobId`, then its own; each as
 * text, or as bytes (not decoded) when it is larger than the reader's bound.
 */
export type StreamEvent = Readonly<Record<string, string | Buffer>>;

/** No field of BullMQ's events has a longer name: a field named longer is left out. */
const MAX_NAME_BYTES = 64;

/** How long one read blocks for new events. */
const BLOCK_MS = 5_000;
/** Events read at most at once. */
const COUNT = 1_000;

export class EventReader {
  /** Resolves once the reader knows where the stream ends: events from then on are read. */
  readonly ready: Promise<void>;
  private closing = false;
  private lastId = '$';
  private readonly reading: Promise<void>;

  constructor(
    private readonly client: Redis,
    private readonly key: string,
    private readonly onEvent: (event: StreamEvent) => void,
    private readonly onError: (error: Error) => void,
    /** A field larger than this is handed on as bytes, never decoded into a string (one past Node's limit would fail every read). */
    private readonly maxFieldBytes = Infinity,
  ) {
    let started!: () => void;
    this.ready = new Promise<void>((resolve) => (started = resolve));
    this.reading = this.run(started);
  }

  private async run(started: () => void): Promise<void> {
    // The latest id now, rather than `$` at each read: nothing added meanwhile is missed.
    while (!this.closing && this.lastId === '$') {
      try {
        // As bytes: the last entry may be one too large to decode.
        const last = await this.client.xrevrangeBuffer(this.key, '+', '-', 'COUNT', 1);
        this.lastId = last[0]?.[0].toString() ?? '0-0';
      } catch (error) {
        if (!this.closing) await this.failed(error);
      }
    }
    started();
    while (!this.closing) {
      let read: [Buffer, [Buffer, Buffer[]][]][] | null;
      try {
        // As bytes: a field too large to decode fails only itself, not the read (and every read after it).
        read = (await this.client.xreadBuffer('COUNT', COUNT, 'BLOCK', BLOCK_MS, 'STREAMS', this.key, this.lastId)) as typeof read;
      } catch (error) {
        if (!this.closing) await this.failed(error);
        continue;
      }
      for (const [, entries] of read ?? []) {
        for (const [id, fields] of entries) {
          this.lastId = id.toString();
          const event: Record<string, string | Buffer> = Object.create(null);
          for (let i = 0; i + 1 < fields.length; i += 2) {
            const [name, value] = [fields[i]!, fields[i + 1]!];
            // Past Node's longest string a field stays bytes whatever the limit: decoding it would throw.
            if (name.length <= MAX_NAME_BYTES) event[name.toString()] = value.length > this.maxFieldBytes || value.length > MAX_STRING_BYTES ? value : value.toString();
          }
          try {
            this.onEvent(event);
          } catch (error) {
            this.onError(error instanceof Error ? error : new Error(String(error)));
          }
        }
      }
    }
  }

  private async failed(error: unknown): Promise<void> {
    this.onError(error instanceof Error ? error : new Error(String(error)));
    await new Promise((resolve) => setTimeout(resolve, 500));
  }

  /** Stops reading; the client is the caller's to close (closing it ends a read under way). */
  async close(): Promise<void> {
    this.closing = true;
    this.client.disconnect();
    await this.reading;
  }
}
