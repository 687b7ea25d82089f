/**
 * What the BullMQ backend reads from Redis is checked before it is used: its size first,
 * then its signature (`trust.ts`), and only then is it decoded (`v8.deserialize`) and
 * its shape checked. Each check says what is wrong, for a log line; none throws past
 * its caller.
 */
import type { TaskNode } from '../shared/protocol';
import { MAX_SEGMENTS_PER_JOB, type Signer } from './trust';
import { attemptName, decode, type RemoteEndReport, type SegmentPayload, type Update } from './wire';

/** A job, an outcome or a payload that is refused, and why. */
export class Refused extends Error {
  override get name(): string {
    return 'Refused';
  }
}

const SETTLEMENT_KINDS = new Set(['done', 'failed', 'stopped', 'killed', 'crashed', 'load-failed', 'unclonable', 'input-unclonable', 'timed-out']);

const isIndex = (value: unknown, below = Number.MAX_SAFE_INTEGER): value is number => Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) < below;
const isRecord = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

/**
 * A job's segments `[segmentId, payload]`, once its data is found well formed, within
 * `maxBytes` and signed; nothing of it is decoded.
 * @throws {Refused} saying why not.
 */
export function checkJob(jobId: string, name: string, data: unknown, signer: Signer, maxBytes: number): readonly (readonly [string, string])[] {
  if (!isRecord(data) || !Array.isArray(data.s)) throw new Refused('its data is not an object with a list of segments');
  const segments = data.s as unknown[];
  if (segments.length === 0 || segments.length > MAX_SEGMENTS_PER_JOB) {
    throw new Refused(`it names ${segments.length} segments; an executor sends 1 to ${MAX_SEGMENTS_PER_JOB}`);
  }
  for (const entry of segments) {
    if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== 'string' || entry[0].length > 200 || typeof entry[1] !== 'string') {
      throw new Refused('a segment is not a pair of an id and a payload');
    }
  }
  const text = JSON.stringify(segments);
  const bytes = Buffer.byteLength(text);
  if (bytes > maxBytes) throw new Refused(`it is ${bytes} bytes, above the limit of ${maxBytes}`);
  if (!signer.verify('job', jobId, name, text, data.m)) throw new Refused(data.m === undefined ? 'it is not signed' : 'its signature does not match');
  return segments as [string, string][];
}

/**
 * A segment's payload, decoded and checked; its node list, decoded and checked.
 * @throws {Refused} saying what is malformed.
 */
export function checkPayload(encoded: string): SegmentPayload {
  const value = decoded(encoded, 'its payload');
  if (!isRecord(value)) throw new Refused('a segment payload is not an object');
  const { runId, pipelineId, nodes, first, element, attempts, timeouts, graceMs, reportStarts, deadline, executor } = value;
  if (typeof runId !== 'string' || typeof pipelineId !== 'string' || typeof nodes !== 'string') throw new Refused('a segment payload lacks its run, pipeline or nodes');
  if (!isIndex(first) || (element !== undefined && !isIndex(element)) || typeof reportStarts !== 'boolean' || typeof graceMs !== 'number' || !(graceMs >= 0)) {
    throw new Refused('a segment payload has a bad first node, grace period or start flag');
  }
  if (!Array.isArray(attempts) || !attempts.every((n) => isIndex(n)) || !Array.isArray(timeouts) || !timeouts.every((n) => typeof n === 'number' && n >= 0)) {
    throw new Refused('a segment payload has bad attempts or timeouts');
  }
  if (typeof deadline !== 'number' || Number.isNaN(deadline) || typeof executor !== 'string' || executor === '' || executor.length > 100) {
    throw new Refused('a segment payload lacks its deadline or its executor');
  }
  return value as unknown as SegmentPayload;
}

/** A segment's node list, decoded and checked against its payload. @throws {Refused} */
export function checkNodeList(encoded: string): TaskNode[] {
  const list = decoded(encoded, 'its node list');
  if (!Array.isArray(list) || list.length === 0) throw new Refused('a node list is not a non-empty list');
  for (const node of list) {
    if (!isRecord(node) || typeof node.id !== 'string' || typeof node.module !== 'string') throw new Refused('a node lacks its id or module');
    if ((node.export !== undefined && typeof node.export !== 'string') || (node.trace !== undefined && typeof node.trace !== 'string')) {
      throw new Refused(`node ${JSON.stringify(node.id)} has a bad export or trace`);
    }
  }
  return list as TaskNode[];
}

/** Whether the payload's indexes fit its node list. */
export function fits(payload: SegmentPayload, nodes: readonly TaskNode[]): boolean {
  return payload.first < nodes.length && payload.attempts.length === nodes.length && payload.timeouts.length === nodes.length;
}

/**
 * An outcome's body (`u` of a progress update, `e` of a return value) and the attempt at
 * the job it comes from, once its raw JSON is within `maxBytes`, parses, names an
 * attempt, and is signed for that attempt at job `jobId`.
 * @throws {Refused} saying why not.
 */
export function checkOutcome(raw: unknown, domain: 'progress' | 'result', jobId: string, signer: Signer, maxBytes: number): { readonly body: unknown[]; readonly attempt: number } {
  // Bytes: a field the event reader left undecoded, being too large.
  const bytes = Buffer.isBuffer(raw) ? raw.length : typeof raw === 'string' ? Buffer.byteLength(raw) : 0;
  if (bytes > maxBytes) throw new Refused(`it is ${bytes} bytes, above the limit of ${maxBytes}`);
  if (typeof raw !== 'string') throw new Refused('it is not JSON text');
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new Refused('it is not JSON');
  }
  if (!isRecord(value)) throw new Refused('it is not an object');
  const body = domain === 'progress' ? value.u : value.e;
  if (!Array.isArray(body)) throw new Refused(`it has no list of ${domain === 'progress' ? 'updates' : 'ends'}`);
  // Attempts count from 1: with a secret, one that names none matches no MAC.
  const attempt = isIndex(value.a) && value.a >= 1 ? value.a : undefined;
  if (!signer.verify(domain, jobId, attemptName(attempt ?? 0), JSON.stringify(body), value.m)) throw new Refused(value.m === undefined ? 'it is not signed' : 'its signature does not match');
  if (attempt === undefined) throw new Refused('it names no attempt at the job');
  return { body, attempt };
}

/** A progress update of a job of `count` segments whose node lists have `nodes(i)` nodes. @throws {Refused} */
export function checkUpdate(update: unknown, count: number, nodes: (index: number) => number): Update {
  if (!isRecord(update) || !isIndex(update.i, count)) throw new Refused('an update names no segment of the job');
  const { k, n, b } = update;
  if (k === 'e' && typeof b === 'string') return update as unknown as Update;
  if ((k === 's' || k === 'p') && isIndex(n, nodes(update.i)) && (k === 's' || typeof b === 'string')) return update as unknown as Update;
  throw new Refused('an update is malformed');
}

/** A segment's end, decoded and checked against its nodes `first` to `count - 1`. @throws {Refused} */
export function checkEndReport(encoded: unknown, first: number, count: number): RemoteEndReport {
  if (typeof encoded !== 'string') throw new Refused("a segment's end is not encoded");
  const value = decoded(encoded, "a segment's end");
  if (!isRecord(value) || !isRecord(value.settlement) || !SETTLEMENT_KINDS.has(value.settlement.kind as string)) {
    throw new Refused("a segment's end has no settlement");
  }
  const { settlement, outputs, endedNodeStartedMs } = value;
  const isNode = (node: unknown): boolean => isIndex(node, count) && (node as number) >= first;
  if ('position' in settlement && !isNode(settlement.position)) throw new Refused("a segment's end names no node of it");
  const isTime = (ms: unknown): boolean => typeof ms === 'number' && Number.isFinite(ms);
  if (!Array.isArray(outputs) || !outputs.every((entry) => Array.isArray(entry) && entry.length === 4 && isNode(entry[0]) && isTime(entry[2]) && isTime(entry[3]))) {
    throw new Refused("a segment's end has malformed outputs");
  }
  if (endedNodeStartedMs !== undefined && !isTime(endedNodeStartedMs)) throw new Refused("a segment's end has a bad start time");
  return value as unknown as RemoteEndReport;
}

function decoded(encoded: string, what: string): unknown {
  try {
    return decode(encoded);
  } catch (error) {
    throw new Refused(`${what} does not decode: ${(error as Error).message}`);
  }
}
