/**
 * Runs one case of the property tests against an executor and lists every way the
 * executor broke its promises: a run that did not settle, settled twice or with an
 * outcome the model rules out; a node with a side effect after its run settled or
 * run twice unasked; a pool that no longer serves, or not within its usual time, that
 * leaks, or whose health does not come back after the faults.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeDefinition, PipelineExecutor } from '../../src/index';
import { ORPHAN_MS, WATCH_MS } from '../../src/pool/watchdog';
import { HANG_WORK_MS, depsOf, idOf, judge, predict, type Behaviour, type CaseSpec, type Outcome, type RunSpec } from './model';

/** The node modules of a case: the random node, the trivial one, and those whose load goes wrong. */
export interface CaseModules {
  readonly random: string;
  readonly trivial: string;
  readonly hangOnLoad: string;
  readonly throwOnLoad: string;
  readonly exitOnLoad: string;
}

/**
 * How long the pool may take to serve normally again after a case, its faults included:
 * code left behind is terminated within ORPHAN_MS and a watchdog round, and a thread
 * replaced, with room for a machine whose cores other processes share (a bound that
 * tells a pool that recovers from one that does not, not a latency).
 */
export const RECOVERY_MS = ORPHAN_MS + 2 * WATCH_MS + 5_000;

function moduleOf(behaviour: Behaviour, modules: CaseModules): string {
  switch (behaviour) {
    case 'loadHang':
      return modules.hangOnLoad;
    case 'loadThrow':
      return modules.throwOnLoad;
    case 'loadExit':
      return modules.exitOnLoad;
    default:
      return modules.random;
  }
}

/** Behaviours that hold or take down a thread, delaying other nodes on it. */
const DISRUPTIVE: readonly Behaviour[] = ['spin', 'exit', 'wait', 'leave', 'loadHang', 'loadExit'];
/** Behaviours that hold their own thread, delaying their own run's other nodes. */
const HOLDS_OWN_THREAD: readonly Behaviour[] = ['spin', 'leave', 'loadHang'];

export interface CaseReport {
  readonly violations: string[];
  readonly runs: number;
  readonly terminations: number;
}

const ABORT_REASON = 'property abort';

export async function runCase(executor: PipelineExecutor, spec: CaseSpec, modules: CaseModules): Promise<CaseReport> {
  const violations: string[] = [];
  const before = executor.stats();
  const predictions = spec.runs.map(predict);
  // Nodes whose thread may be blocked, or terminated under them (and sent again), start
  // late: a run's own spinning node, and any other run's node that takes a thread down.
  const disruptive = predictions.map((prediction, r) =>
    [...prediction.started].filter((i) => DISRUPTIVE.includes(spec.runs[r]!.nodes[i]!.behaviour)),
  );
  const disrupted = spec.runs.map(
    (run, r) =>
      disruptive[r]!.some((i) => HOLDS_OWN_THREAD.includes(run.nodes[i]!.behaviour)) || disruptive.some((nodes, other) => other !== r && nodes.length > 0),
  );
  const caseStart = performance.now();
  const runs = spec.runs.map((run, r) => startRun(executor, run, r, modules));

  const outcomes = await Promise.all(runs.map((run) => run.settled));
  outcomes.forEach((outcome, r) => {
    const run = spec.runs[r]!;
    const { settleCount } = runs[r]!;
    if (outcome === undefined) return violations.push(`run ${r} did not settle within its bound`);
    if (settleCount() !== 1) violations.push(`run ${r} settled ${settleCount()} times`);
    const verdict = judge(run, predictions[r]!, outcome, disrupted[r]!, ABORT_REASON);
    if (verdict !== undefined) violations.push(`run ${r}: ${verdict}`);
    return undefined;
  });

  // No node may leave a side effect after its run settled: give stray work the time it
  // would need, then look.
  const elapsed = performance.now() - caseStart;
  if (elapsed < HANG_WORK_MS + 100) await sleep(HANG_WORK_MS + 100 - elapsed);
  const after = executor.stats();
  const kills = after.terminations + after.crashes - (before.terminations + before.crashes);
  runs.forEach((run, r) => {
    const times = new Float64Array(run.times);
    const cells = new Int32Array(run.cells);
    spec.runs[r]!.nodes.forEach((_, i) => {
      const ran = Atomics.load(cells, 2 * i);
      const effects = Atomics.load(cells, 2 * i + 1);
      const id = idOf(spec.runs[r]!, i);
      if (effects > 0 && (times[i] ?? 0) > run.settledAt) violations.push(`run ${r}: ${id} left a side effect after the run settled`);
      // A node on a thread terminated under it runs again (documented): one more run per thread lost.
      if (ran > 1 + kills) violations.push(`run ${r}: ${id} ran ${ran} times with ${kills} thread(s) lost`);
    });
  });

  // After any fault, the pool serves within its usual time (code left behind included),
  // its health comes back, and nothing is left over.
  const recoveryStart = performance.now();
  try {
    const value = await executor.executePipeline({ nodes: [{ id: 'trivial', module: modules.trivial }], initialInput: 1 });
    if (value !== 2) violations.push(`the trivial pipeline returned ${String(value)}`);
  } catch (error) {
    violations.push(`the trivial pipeline failed: ${String(error)}`);
  }
  const served = performance.now() - recoveryStart;
  if (served > RECOVERY_MS) violations.push(`the trivial pipeline took ${served.toFixed(0)} ms after the case (bound ${RECOVERY_MS} ms)`);
  const unhealthy = await healthAfter(executor, recoveryStart);
  if (unhealthy !== undefined) violations.push(unhealthy);
  const stats = executor.stats();
  if (stats.runsInFlight !== 0 || stats.runsQueued !== 0) violations.push(`runs left: ${stats.runsInFlight} in flight, ${stats.runsQueued} queued`);
  if (stats.tasksInFlight !== 0 || stats.tasksQueued !== 0) violations.push(`tasks left: ${stats.tasksInFlight} in flight, ${stats.tasksQueued} queued`);
  return { violations, runs: spec.runs.length, terminations: kills };
}

interface StartedRun {
  readonly cells: SharedArrayBuffer;
  readonly times: SharedArrayBuffer;
  /** Resolves with the outcome, or undefined if the run did not settle in time. */
  readonly settled: Promise<Outcome | undefined>;
  settledAt: number;
  settleCount(): number;
}

/**
 * Waits, up to {@link RECOVERY_MS} from `since`, for the pool to be healthy: every thread
 * alive, answering and free. Threads replaced in the last minute keep the executor
 * `degraded` (or in `error`, past 30) for that minute by design, whatever the cause:
 * that reason alone does not count; every other one does. Returns why not.
 */
async function healthAfter(executor: PipelineExecutor, since: number): Promise<string | undefined> {
  for (;;) {
    const report = await executor.health();
    const reasons = report.reasons.filter((reason) => !/replaced in the last minute/.test(reason));
    const healthy = reasons.length === 0 && report.threads.length === 2 && report.threads.every((thread) => thread.responsive && thread.heldBy === undefined);
    if (healthy) return undefined;
    if (performance.now() - since > RECOVERY_MS) return `health not back ${RECOVERY_MS} ms after the case: ${report.status} (${report.reasons.join('; ')}), ${report.threads.length} threads`;
    await sleep(WATCH_MS);
  }
}

function startRun(executor: PipelineExecutor, run: RunSpec, r: number, modules: CaseModules): StartedRun {
  const cells = new SharedArrayBuffer(8 * run.nodes.length);
  const times = new SharedArrayBuffer(8 * run.nodes.length);
  const nodes: NodeDefinition[] = run.nodes.map((node, i) => ({
    id: idOf(run, i),
    module: moduleOf(node.behaviour, modules),
    params: { b: node.behaviour, i, k: node.k, waitMs: HANG_WORK_MS, cells, times },
    ...(node.timeoutMs === undefined ? {} : { timeoutMs: node.timeoutMs }),
    ...(run.chain ? {} : { dependsOn: depsOf(run, i).map((dep) => idOf(run, dep)) }),
  }));
  const controller = new AbortController();
  let abortTimer: NodeJS.Timeout | undefined;
  if (run.abortAtMs !== undefined) abortTimer = setTimeout(() => controller.abort(ABORT_REASON), run.abortAtMs);
  let count = 0;
  const started: StartedRun = {
    cells,
    times,
    settledAt: Infinity,
    settleCount: () => count,
    settled: Promise.resolve(),
  } as StartedRun;
  const result = executor.executePipeline({
    pipelineId: `case-run-${r}`,
    nodes,
    initialInput: 1,
    signal: controller.signal,
    timeouts: { pipelineTimeoutMs: run.pipelineTimeoutMs },
  });
  const outcome = result.then(
    (value): Outcome => ({ ok: true, value }),
    (error: unknown): Outcome => ({ ok: false, error }),
  );
  void outcome.then(() => {
    count++;
    started.settledAt = performance.timeOrigin + performance.now();
    clearTimeout(abortTimer);
  });
  // The latest a run may settle: its deadlines, the grace period, and room for a loaded machine.
  const bound = Math.min(run.pipelineTimeoutMs, run.abortAtMs ?? Infinity, 400) + 5_000;
  let boundTimer: NodeJS.Timeout | undefined;
  (started as { settled: Promise<Outcome | undefined> }).settled = Promise.race([
    outcome,
    new Promise<undefined>((resolve) => {
      boundTimer = setTimeout(() => resolve(undefined), bound);
    }),
  ]).finally(() => clearTimeout(boundTimer));
  return started;
}
