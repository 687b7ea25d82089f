/**
 * The chaos run: `npm run chaos -- --minutes N [--workers 3] [--seed S]`.
 *
 * A redis-server with an append-only file (`appendfsync everysec`), an executor (this
 * process, the built library in dist/) and worker processes (the built command line),
 * all on this machine, under a steady mixed load: the seed's chains of sleeping nodes,
 * CPU-bound nodes, node timeouts, cancellations and failing nodes, each run with a result
 * known in advance. At random intervals one fault: a worker process SIGKILLed (and
 * another started), one SIGSTOPped past its lock and resumed, every client's connections
 * killed (`CLIENT KILL`), or redis-server restarted (SIGTERM, AOF kept).
 *
 * It prints, and exits with 1 unless every column but started and settled is zero:
 * runs started, settled, lost (not settled within their deadline plus the grace period
 * and the documented bounds), settled twice ('runEnd' events), settled wrong (not the
 * result or error expected; a run whose nodes the faults kept from ending before its
 * pipeline timeout is counted apart, as timed out), stale outcomes accepted, and
 * overlapping executions of the same node while both ran.
 *
 * A *stale outcome accepted*: a node's output in a result whose execution had been
 * superseded before the executor accepted it (its `nodeEnd` event): another execution of
 * the node started after it and before that, which only a new attempt at the job does.
 * Excepted are executions a paused process starts in the 500 ms after it resumes, before
 * the stop of its lost attempt arrives (a frozen process cannot be stopped): those of an
 * attempt no longer current, which never report. The same time, and the time a process
 * spent paused, are not counted as overlap either. An execution with no end of its own
 * ended when its worker process said its thread ended (each runs one thread), or when
 * the process was killed.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import type * as Library from '../src/index';
import { readFileSync } from 'node:fs';
import { FIXTURES, RedisServer, SECRET, WorkerProcess } from './remote-env';

// The executor is the built library, as the worker processes are the built command line.
const lib = require('../dist/src/index') as typeof Library;

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '1' }, workers: { type: 'string', default: '3' }, seed: { type: 'string' } } });
const MINUTES = Number(values.minutes);
const WORKERS = Number(values.workers);
let seed = Number(values.seed ?? Date.now() % 1_000_000);
const SEED = seed;
/** A small deterministic generator, so that a run can be repeated with `--seed`. */
function random(): number {
  seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
  return seed / 2_147_483_648;
}
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

const LOCK_MS = 2_000;
const STALLED_MS = 1_000;
const PIPELINE_TIMEOUT_MS = 20_000;
const GRACE_MS = 200;
const STOP_TIMEOUT_MS = 5_000;
/** A run must settle within its deadline plus this: the grace period, the stop timeout and a look or two. */
const SETTLE_BOUND_MS = PIPELINE_TIMEOUT_MS + GRACE_MS + STOP_TIMEOUT_MS + 5_000;
/** Runs kept in flight. */
const IN_FLIGHT = 24;
/** How long a resumed process's node may run on before its stop arrives. */
const RESUME_TOLERANCE_MS = 500;

type Expectation = { readonly value: number } | { readonly error: string };

interface Run {
  readonly index: number;
  readonly kind: string;
  readonly expected: Expectation;
  readonly startedAt: number;
  settledAt: number | undefined;
  wrong: string | undefined;
  timedOut: boolean;
  stale: number;
  /** For a stale outcome: which execution of each node made the result. */
  by: string[] | undefined;
}

/** One execution of a node, as its probe file tells it. */
interface Execution {
  readonly id: string;
  readonly pid: number;
  readonly start: number;
  end: number | undefined;
  how: string | undefined;
}

/** The executions a chaos node's probe file records, in the order they started. */
function executionsOf(path: string): Execution[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const byId = new Map<string, Execution>();
  for (const line of text.split('\n')) {
    const [kind, pid, at, a, b] = line.split(' ');
    if (kind === 'start') byId.set(a!, { id: a!, pid: Number(pid), start: Number(at), end: undefined, how: undefined });
    else if (kind === 'end' && byId.has(b!)) Object.assign(byId.get(b!)!, { end: Number(at), how: a });
  }
  return [...byId.values()].sort((x, y) => x.start - y.start);
}

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'lukhas-chaos-'));
  const redis = await RedisServer.start(undefined, true);
  const admin = new Redis(redis.url, { maxRetriesPerRequest: null });
  admin.on('error', () => {});
  const args = ['--threads', '1', '--lock-ms', String(LOCK_MS), '--stalled-ms', String(STALLED_MS), '--max-stalled', '10', '--module-root', FIXTURES];
  const env = { LUKHAS_SECRET: SECRET };
  /** What happened when, to explain a bad column: faults, the executor's log, stale outcomes. */
  const timeline: string[] = [];
  const note = (line: string): number => timeline.push(`${Date.now()} ${line}`);
  const everyWorker: WorkerProcess[] = [];
  const startWorker = async (): Promise<WorkerProcess> => {
    const worker = await WorkerProcess.start(redis.url, args, env);
    everyWorker.push(worker);
    note(`worker ${worker.pid} started`);
    return worker;
  };
  const workers = await Promise.all(Array.from({ length: WORKERS }, startWorker));
  /** Per worker pid: when it was paused and resumed, or killed. */
  const paused = new Map<number, [number, number][]>();
  const killed = new Map<number, number>();
  const staleLines: string[] = [];
  const executor = new lib.PipelineExecutor({
    timeouts: { pipelineTimeoutMs: PIPELINE_TIMEOUT_MS, cleanupGraceMs: GRACE_MS },
    backend: lib.bullmqBackend({ connection: redis.url, secret: SECRET, stopTimeoutMs: STOP_TIMEOUT_MS, log: (line) => staleLines.push(line) && note(`executor: ${line}`) }),
  });
  await executor.ready();
  const ends = new Map<string, number>();
  executor.on('runEnd', ({ runId }) => ends.set(runId, (ends.get(runId) ?? 0) + 1));
  /** When the executor accepted each node's output, by `runId nodeId`. */
  const accepted = new Map<string, number>();
  executor.on('nodeEnd', ({ runId, nodeId, status }) => {
    if (status === 'success') accepted.set(`${runId} ${nodeId}`, Date.now());
  });
  /** Whether `pid` was resumed from a pause at most RESUME_TOLERANCE_MS before `at`. */
  const justResumed = (pid: number, at: number): boolean => (paused.get(pid) ?? []).some(([, to]) => at >= to && at <= to + RESUME_TOLERANCE_MS);

  const chaos = join(FIXTURES, 'chaos-node.js');
  const runs: Run[] = [];
  const runIds: string[] = [];
  let index = 0;
  let stopping = false;
  const pending = new Set<Promise<void>>();

  const startRun = (): void => {
    const i = index++;
    const probe = (id: string): string => join(dir, `${i}-${id}`);
    const kind = pick(['chain', 'chain', 'chain', 'long', 'cpu', 'timeout', 'cancel', 'error']);
    const n = (id: string, params: object, extra: object = {}): Library.NodeDefinition => ({ id, module: chaos, params: { probe: probe(id), ...params }, ...extra });
    let request: Library.PipelineRequest;
    let expected: Expectation;
    const controller = new AbortController();
    if (kind === 'chain') {
      request = { nodes: [n('a', { ms: 10 + Math.floor(random() * 300) }), n('b', { ms: 10 }), n('c', { ms: 10 + Math.floor(random() * 300) })] };
      expected = { value: 3 };
    } else if (kind === 'long') {
      // Long enough that a paused process's node, resumed, would run on well past its stop.
      request = { nodes: [n('a', { ms: 3_000 + Math.floor(random() * 3_000), steps: true }), n('b', { ms: 10 })] };
      expected = { value: 2 };
    } else if (kind === 'cpu') {
      request = { nodes: [n('a', { ms: 5 + Math.floor(random() * 40), cpu: true }), n('b', { ms: 5, cpu: true })] };
      expected = { value: 2 };
    } else if (kind === 'timeout') {
      request = { nodes: [n('a', { ms: 10 }), n('slow', { ms: 5_000 }, { timeoutMs: 300 })] };
      expected = { error: 'NodeTimeoutException' };
    } else if (kind === 'cancel') {
      request = { nodes: [n('a', { ms: 5_000 })], signal: controller.signal };
      expected = { error: 'CancellationException' };
      setTimeout(() => controller.abort(), 200 + Math.floor(random() * 500));
    } else {
      request = { nodes: [n('a', { ms: 10 }), n('bad', { ms: 10, fail: true })] };
      expected = { error: 'Error' };
    }
    const run: Run = { index: i, kind, expected, startedAt: Date.now(), settledAt: undefined, wrong: undefined, timedOut: false, stale: 0, by: undefined };
    runs.push(run);
    const handle = executor.startPipeline({ ...request, initialInput: { v: 0, by: [] } });
    runIds.push(handle.runId);
    const settled = handle.result.then(
      (result) => {
        const { v, by } = result as { v: number; by: string[] };
        if (!('value' in expected) || v !== expected.value) run.wrong = `resolved with ${v}`;
        // Each node's output must come from an execution that completed and that no new
        // attempt at its job had superseded by the time the executor accepted it.
        by.forEach((execution, position) => {
          const node = request.nodes[position]!.id;
          const all = executionsOf(probe(node));
          const made = all.find((e) => e.id === execution);
          const acceptedAt = accepted.get(`${handle.runId} ${node}`) ?? Date.now();
          const superseded = made !== undefined && all.some((e) => e !== made && e.start > made.start && e.start < acceptedAt && !justResumed(e.pid, e.start));
          if (made === undefined || made.how !== 'completed' || superseded) run.stale++;
        });
        if (run.stale > 0) {
          run.by = by;
          note(`stale: run ${i} (${kind}, ${handle.runId}) resolved with executions ${by.join(', ')}`);
        }
      },
      (error: unknown) => {
        const name = (error as Error).name;
        // A run whose nodes the faults kept from ending in time times out: not wrong, counted apart.
        if (name === 'PipelineTimeoutException' && 'value' in expected) run.timedOut = true;
        else if (!('error' in expected) || name !== expected.error) run.wrong = `rejected with ${name}: ${(error as Error).message}`;
      },
    );
    const tracked = settled.then(() => {
      run.settledAt = Date.now();
      pending.delete(tracked);
      if (!stopping) startRun();
    });
    pending.add(tracked);
  };

  const faults: Record<string, number> = { SIGKILL: 0, 'SIGSTOP+SIGCONT': 0, 'CLIENT KILL': 0, 'redis restart': 0 };
  const inject = async (): Promise<void> => {
    const fault = pick(Object.keys(faults));
    faults[fault]!++;
    if (fault === 'SIGKILL') {
      const victim = workers.splice(Math.floor(random() * workers.length), 1)[0]!;
      victim.kill('SIGKILL');
      killed.set(victim.pid, Date.now());
      note(`fault: SIGKILL ${victim.pid}`);
      await victim.exited;
      workers.push(await startWorker());
    } else if (fault === 'SIGSTOP+SIGCONT') {
      const victim = pick(workers);
      const from = Date.now();
      victim.kill('SIGSTOP');
      note(`fault: SIGSTOP ${victim.pid}`);
      await new Promise((r) => setTimeout(r, LOCK_MS + STALLED_MS + Math.floor(random() * 1_000)));
      victim.kill('SIGCONT');
      note(`fault: SIGCONT ${victim.pid}`);
      paused.set(victim.pid, [...(paused.get(victim.pid) ?? []), [from, Date.now()]]);
    } else if (fault === 'CLIENT KILL') {
      note('fault: CLIENT KILL');
      await admin.client('KILL', 'TYPE', 'normal').catch(() => {});
      await admin.client('KILL', 'TYPE', 'pubsub').catch(() => {});
    } else {
      note('fault: redis-server restart');
      await redis.restart('SIGTERM');
      note('fault: redis-server answers again');
    }
  };

  const endAt = Date.now() + MINUTES * 60_000;
  for (let i = 0; i < IN_FLIGHT; i++) startRun();
  while (Date.now() < endAt) {
    await new Promise((r) => setTimeout(r, 2_000 + Math.floor(random() * 3_000)));
    if (Date.now() < endAt) await inject();
  }
  stopping = true;
  // Every run settles within its bound, or is lost.
  const deadline = Date.now() + SETTLE_BOUND_MS;
  while (pending.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));

  const lost = runs.filter((run) => run.settledAt === undefined || run.settledAt - run.startedAt > SETTLE_BOUND_MS).length;
  const settledTwice = runIds.filter((id) => (ends.get(id) ?? 0) > 1).length;
  const wrong = runs.filter((run) => run.wrong !== undefined);
  const staleAccepted = runs.reduce((sum, run) => sum + run.stale, 0);
  const threadEnds = new Map(everyWorker.map((worker) => [worker.pid, worker.lines.filter((line) => / worker thread \d+ ended: /.test(line)).map((line) => Number(line.slice(0, line.indexOf(' '))))]));
  const overlapping = countOverlaps(dir, paused, (pid, start) => threadEnds.get(pid)?.find((at) => at >= start) ?? killed.get(pid) ?? Date.now());
  const ignored = staleLines.filter((line) => /from its attempt \d+: attempt \d+ has it now/.test(line)).length;

  console.log(`chaos: ${MINUTES} min, ${WORKERS} worker processes, seed ${SEED}; faults: ${Object.entries(faults).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const table: [string, number, boolean][] = [
    ['runs started', runs.length, false],
    ['settled', runs.filter((run) => run.settledAt !== undefined).length, false],
    ['lost', lost, true],
    ['settled twice', settledTwice, true],
    ['settled wrong', wrong.length, true],
    ['stale-attempt outcomes accepted', staleAccepted, true],
    ['overlapping executions', overlapping, true],
    ['(stale-attempt outcomes ignored)', ignored, false],
    ['(timed out under the faults)', runs.filter((run) => run.timedOut).length, false],
  ];
  for (const [name, count] of table) console.log(`  ${name.padEnd(34)} ${count}`);
  for (const run of wrong.slice(0, 10)) console.log(`  wrong: run ${run.index} (${run.kind}): ${run.wrong}`);
  for (const run of runs.filter((r) => r.stale > 0).slice(0, 10)) console.log(`  stale: run ${run.index} (${run.kind}): made by executions ${run.by!.join(', ')}`);

  await executor.close();
  await Promise.all(workers.map((worker) => worker.stop()));
  admin.disconnect();
  await redis.stop();
  const bad = table.some(([, count, isBad]) => isBad && count > 0);
  // Kept when something went wrong, to look at.
  if (bad) {
    // What happened, to read beside the probe files: the timeline, and each worker process's output.
    writeFileSync(join(dir, '_timeline.log'), `${timeline.join('\n')}\n`);
    for (const worker of everyWorker) writeFileSync(join(dir, `_worker-${worker.pid}.log`), `${worker.lines.join('\n')}\n`);
    console.log(`  probe files kept in ${dir}, with _timeline.log and each worker process's output (_worker-<pid>.log)`);
  }
  else rmSync(dir, { recursive: true, force: true });
  return bad ? 1 : 0;
}

/**
 * Executions of the same node that ran at the same time, but for a paused process's
 * frozen time and its stop after; `endOf` tells when an execution with no end of its own ended.
 */
function countOverlaps(dir: string, paused: Map<number, [number, number][]>, endOf: (pid: number, start: number) => number): number {
  const live = (pid: number, start: number, end: number): [number, number][] => {
    let spans: [number, number][] = [[start, end]];
    for (const [from, to] of paused.get(pid) ?? []) {
      spans = spans.flatMap(([a, b]): [number, number][] => {
        const cutTo = to + RESUME_TOLERANCE_MS;
        if (b <= from || a >= cutTo) return [[a, b]];
        return ([[a, from], [cutTo, b]] as [number, number][]).filter(([x, y]) => y > x);
      });
    }
    return spans;
  };
  let count = 0;
  for (const file of readdirSync(dir)) {
    const all = executionsOf(resolve(dir, file)).map((e) => live(e.pid, e.start, e.end ?? endOf(e.pid, e.start)));
    for (let i = 0; i < all.length; i++) {
      for (let j = i + 1; j < all.length; j++) {
        if (all[i]!.some(([a, b]) => all[j]!.some(([c, d]) => Math.min(b, d) - Math.max(a, c) > 0))) count++;
      }
    }
  }
  return count;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
