/**
 * Runs one case of the property tests against an executor and lists every way the
 * executor broke its promises: a run that did not settle, settled twice or with an
 * outcome the model rules out; a node with a side effect after its run settled or
 * run twice unasked; a pool that no longer serves or that leaks.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeDefinition, PipelineExecutor } from '../../src/index';
import { HANG_WORK_MS, depsOf, judge, predict, type CaseSpec, type Outcome, type RunSpec } from './model';

export interface CaseReport {
  readonly violations: string[];
  readonly runs: number;
  readonly terminations: number;
}

const ABORT_REASON = 'property abort';

export async function runCase(executor: PipelineExecutor, spec: CaseSpec, nodeModule: string, trivialModule: string): Promise<CaseReport> {
  const violations: string[] = [];
  const before = executor.stats();
  const predictions = spec.runs.map(predict);
  // Nodes whose thread may be blocked, or terminated under them (and sent again), start
  // late: a run's own spinning node, and any other run's node that takes a thread down.
  const disruptive = predictions.map((prediction, r) =>
    [...prediction.started].filter((i) => ['spin', 'exit', 'wait'].includes(spec.runs[r]!.nodes[i]!.behaviour)),
  );
  const disrupted = spec.runs.map(
    (run, r) =>
      disruptive[r]!.some((i) => run.nodes[i]!.behaviour === 'spin') || disruptive.some((nodes, other) => other !== r && nodes.length > 0),
  );
  const caseStart = performance.now();
  const runs = spec.runs.map((run, r) => startRun(executor, run, r, nodeModule));

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
      if (effects > 0 && (times[i] ?? 0) > run.settledAt) violations.push(`run ${r}: n${i} left a side effect after the run settled`);
      // A node on a thread terminated under it runs again (documented): one more run per thread lost.
      if (ran > 1 + kills) violations.push(`run ${r}: n${i} ran ${ran} times with ${kills} thread(s) lost`);
    });
  });

  // The pool still serves, and nothing is left over.
  try {
    const value = await executor.executePipeline({ nodes: [{ id: 'trivial', module: trivialModule }], initialInput: 1 });
    if (value !== 2) violations.push(`the trivial pipeline returned ${String(value)}`);
  } catch (error) {
    violations.push(`the trivial pipeline failed: ${String(error)}`);
  }
  const stats = executor.stats();
  if (stats.runsInFlight !== 0 || stats.runsQueued !== 0) violations.push(`runs left: ${stats.runsInFlight} in flight, ${stats.runsQueued} queued`);
  if (stats.tasksInFlight !== 0 || stats.tasksWaiting !== 0) violations.push(`tasks left: ${stats.tasksInFlight} in flight, ${stats.tasksWaiting} waiting`);
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

function startRun(executor: PipelineExecutor, run: RunSpec, r: number, nodeModule: string): StartedRun {
  const cells = new SharedArrayBuffer(8 * run.nodes.length);
  const times = new SharedArrayBuffer(8 * run.nodes.length);
  const nodes: NodeDefinition[] = run.nodes.map((node, i) => ({
    id: `n${i}`,
    module: nodeModule,
    params: { b: node.behaviour, i, k: node.k, waitMs: HANG_WORK_MS, cells, times },
    ...(node.timeoutMs === undefined ? {} : { timeoutMs: node.timeoutMs }),
    ...(run.chain ? {} : { dependsOn: depsOf(run, i).map((dep) => `n${dep}`) }),
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
