/**
 * S6, stopping: how long from `AbortController.abort()` (once the node signalled that
 * it started) to the rejection of the run, for a node that honours `ctx.signal` (S6a)
 * and for one that spins and ignores it (S6b); and from that rejection until the pool
 * has served the next trivial run. The baseline is raw piscina with a per-task signal,
 * which terminates the task's thread.
 */
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { RawPiscina, describeBaseline, poolOptions, type BaselineOptions } from './baseline';
import { Samples, describeError } from './batch';
import { S6_CLEANUP_GRACE_MS, type Size } from './config';
import { interleave } from './harness';
import { CancellationException, Orchestrator, describeExecutor, toNodes, type ExecutorOptions } from './orchestrator';
import type { Progress } from './progress';
import { figuresOf, ratiosOf, type ScenarioResult, type WarmUp } from './report';
import { Rounds, judge, type Target } from './verdict';
import type { NodeName, Step } from './workload';

export interface StopCase {
  readonly id: string;
  readonly title: string;
  readonly fn: Extract<NodeName, 'honourSignal' | 'spin'>;
  /** Abort trials per iteration, and measured iterations per contender. */
  readonly trials: number;
  /** Unmeasured trials of each contender first. */
  readonly warmUp: number;
  readonly iterations: number;
  readonly threads: number;
  /** Its goals: bounds of the orchestrator's times, judged on the median of the rounds. */
  readonly targets: readonly Target[];
}

/**
 * The next run is served without waiting for a new thread (starting one takes about
 * 70 ms here): its p50 within half of that.
 */
const nextRunServed: Target = { metric: 'p50Ms', against: 'ms', atMost: 35, of: 'next run' };

export function stopCases(size: Size, threads: number): StopCase[] {
  const common = { trials: size.count, iterations: size.iterations, warmUp: size.warmUp, threads };
  return [
    {
      id: 'S6a',
      title: 'stopping a node that honours ctx.signal: abort -> rejection',
      fn: 'honourSignal',
      ...common,
      targets: [{ metric: 'p95Ms', against: 'ms', atMost: 5 }, nextRunServed],
    },
    {
      id: 'S6b',
      title: 'stopping a CPU loop that ignores ctx.signal: abort -> rejection',
      fn: 'spin',
      ...common,
      targets: [{ metric: 'p95Ms', against: 'ms', atMost: S6_CLEANUP_GRACE_MS + 25 }, nextRunServed],
    },
  ];
}

/** One task per worker is all piscina gives a task with a signal; the rest are its defaults. */
const BASELINE: BaselineOptions = { concurrentTasksPerWorker: 1, atomics: 'sync', transfer: false };

/** Between trials: lets a terminated thread be replaced, so each trial starts from a full pool. */
const SETTLE_MS = 250;

/** How long a node may take to signal that it started, and a thread to exit. */
const START_TIMEOUT_MS = 10_000;

const TRIVIAL: readonly Step[] = [{ id: 'next', fn: 'identity' }];

/** What one contender must provide for a trial. */
interface Stoppable {
  /** Starts the node that will be stopped, with `started` as its start flag. */
  start(started: SharedArrayBuffer, signal: AbortSignal): Promise<unknown>;
  /** Whether the rejection is the one expected. */
  expected(error: unknown, reason: unknown): boolean;
  /** Runs a trivial 1-node pipeline (identity of 1). */
  trivial(): Promise<unknown>;
  /** The thread exit, when it can be watched (the baseline's threads). */
  exitOf?(threadId: number): Promise<unknown> | undefined;
}

interface Recorders {
  readonly stop: Samples;
  readonly recovery: Samples;
  readonly exit: Samples | undefined;
}

async function untilStarted(cells: Int32Array): Promise<void> {
  const deadline = performance.now() + START_TIMEOUT_MS;
  while (Atomics.load(cells, 0) === 0) {
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`the node did not start within ${START_TIMEOUT_MS} ms`);
    await Atomics.waitAsync(cells, 0, 0, left).value;
  }
}

/** One trial: start, wait for the node, abort, time the rejection and the next run. */
async function trial(target: Stoppable, into: Recorders): Promise<void> {
  const started = new SharedArrayBuffer(8);
  const cells = new Int32Array(started);
  const controller = new AbortController();
  const reason = new Error('benchmark: stop');
  const settled = target.start(started, controller.signal).then(
    (value) => ({ at: performance.now(), error: new Error(`the run resolved with ${String(value)} instead of rejecting`), next: undefined }),
    (error: unknown) => {
      const at = performance.now();
      // The next caller arrives at once.
      const next = target.trivial().then(
        (value) => ({ at: performance.now(), value }),
        (failure: unknown) => ({ at: performance.now(), failure }),
      );
      return { at, error, next };
    },
  );
  try {
    await untilStarted(cells);
  } catch (error) {
    controller.abort(reason);
    await settled;
    into.stop.failed(error);
    return;
  }
  const exit = target.exitOf?.(Atomics.load(cells, 1))?.then(() => performance.now());
  const abortedAt = performance.now();
  controller.abort(reason);
  const outcome = await settled;
  if (outcome.next === undefined || !target.expected(outcome.error, reason)) into.stop.failed(outcome.error);
  else into.stop.succeeded(outcome.at - abortedAt);
  if (outcome.next !== undefined) {
    const next = await outcome.next;
    if ('failure' in next) into.recovery.failed(next.failure);
    else if (next.value !== 1) into.recovery.failed(new Error(`the next run returned ${String(next.value)}`));
    else into.recovery.succeeded(next.at - outcome.at);
  }
  if (exit !== undefined && into.exit !== undefined) {
    const exitedAt = await Promise.race([exit, sleep(START_TIMEOUT_MS, null, { ref: false })]);
    if (exitedAt === null) into.exit.failed(new Error(`the thread did not exit within ${START_TIMEOUT_MS} ms`));
    else into.exit.succeeded(exitedAt - abortedAt);
  }
}

async function trials(target: Stoppable, count: number, into: Recorders): Promise<void> {
  for (let i = 0; i < count; i++) {
    await trial(target, into);
    await sleep(SETTLE_MS);
  }
}

function orchestratorTarget(orchestrator: Orchestrator, fn: StopCase['fn']): Stoppable {
  const trivial = toNodes(TRIVIAL);
  return {
    start: (started, signal) => orchestrator.run(toNodes([{ id: 'stop-me', fn, params: { started } }]), 0, signal),
    expected: (error, reason) => error instanceof CancellationException && error.reason === reason,
    trivial: () => orchestrator.run(trivial, 1),
  };
}

function baselineTarget(raw: RawPiscina, fn: StopCase['fn']): Stoppable {
  return {
    start: (started, signal) => raw.node({ id: 'stop-me', fn, params: { started } }, 0, signal),
    expected: (error) => error instanceof Error && error.name === 'AbortError',
    trivial: () => raw.node(TRIVIAL[0]!, 1),
    exitOf: (threadId) => {
      const worker = raw.workers.find((thread) => thread.threadId === threadId);
      return worker === undefined ? undefined : once(worker, 'exit');
    },
  };
}

export async function runStopCase(c: StopCase, progress: Progress): Promise<ScenarioResult> {
  const executorOptions: ExecutorOptions = { threads: c.threads, timeouts: { cleanupGraceMs: S6_CLEANUP_GRACE_MS } };
  progress.update(`${c.id}  starting`);
  const orchestrator = new Orchestrator(executorOptions, c.id);
  const raw = new RawPiscina(BASELINE, c.threads);
  try {
    await orchestrator.ready();
    const targets = [orchestratorTarget(orchestrator, c.fn), baselineTarget(raw, c.fn)];
    // Warm-up: every thread up, the modules loaded, a few stops of each kind done.
    progress.update(`${c.id}  warming up`);
    const warmUps: WarmUp[] = [];
    for (const target of targets) {
      const scratch: Recorders = { stop: new Samples(), recovery: new Samples(), exit: new Samples() };
      await Promise.all(Array.from({ length: 2 * c.threads }, () => target.trivial()));
      await trials(target, c.warmUp, scratch);
      const { stop, recovery } = scratch;
      warmUps.push({ runs: stop.runs, failures: stop.failures + recovery.failures, firstError: stop.firstError ?? recovery.firstError });
    }

    const recorders: Recorders[] = [
      { stop: new Samples(), recovery: new Samples(), exit: undefined },
      { stop: new Samples(), recovery: new Samples(), exit: new Samples() },
    ];
    const stops = new Rounds(recorders[0]!.stop);
    const recoveries = new Rounds(recorders[0]!.recovery);
    const [orchestratorRun, baselineRun] = await interleave(
      c.id,
      [
        {
          label: 'orchestrator',
          iteration: async () => {
            stops.begin();
            recoveries.begin();
            await trials(targets[0]!, c.trials, recorders[0]!);
            stops.end();
            recoveries.end();
          },
        },
        { label: 'raw piscina', iteration: () => trials(targets[1]!, c.trials, recorders[1]!) },
      ],
      c.iterations,
      (label, iteration, of) => progress.update(`${c.id}  iteration ${iteration}/${of}: ${label}, ${c.trials} aborts`),
    );

    const [orchestratorRec, baselineRec] = recorders as [Recorders, Recorders];
    const orchestratorFigures = figuresOf(orchestratorRec.stop, false);
    const baselineFigures = figuresOf(baselineRec.stop, false);
    const recovery = { orchestrator: figuresOf(orchestratorRec.recovery, false), baseline: figuresOf(baselineRec.recovery, false) };
    const [orchestratorWarmUp, baselineWarmUp] = warmUps as [WarmUp, WarmUp];
    const ok = [orchestratorFigures, baselineFigures, recovery.orchestrator, recovery.baseline, orchestratorWarmUp, baselineWarmUp].every(
      (f) => f.failures === 0,
    );
    return {
      id: c.id,
      title: c.title,
      count: c.trials,
      concurrency: 1,
      iterations: c.iterations,
      orchestrator: {
        ...orchestratorFigures,
        description: `${describeExecutor(executorOptions)}; rejects with CancellationException`,
        options: { ...executorOptions },
        noise: orchestratorRun!.noise,
      },
      baseline: {
        ...baselineFigures,
        description: `${describeBaseline(BASELINE, c.threads)}, a signal per task; rejects with AbortError`,
        options: poolOptions(BASELINE, c.threads),
        noise: baselineRun!.noise,
        criterion: 'one set of options: with a signal, piscina runs one task per worker',
        candidates: [],
      },
      floorMs: null,
      floorNote: null,
      floorBounds: [],
      ratios: ratiosOf(orchestratorFigures, baselineFigures, null),
      warmUp: { orchestrator: orchestratorWarmUp, baseline: baselineWarmUp },
      ok,
      error: null,
      recovery,
      baselineThreadExit: figuresOf(baselineRec.exit!, false),
      verdicts: [
        ...judge(c.targets.filter((target) => target.of === undefined), stops.figures([]), [], null),
        ...judge(c.targets.filter((target) => target.of !== undefined), recoveries.figures([]), [], null),
      ],
    };
  } catch (error) {
    throw new Error(`${c.id}: ${describeError(error)}`, { cause: error });
  } finally {
    progress.update(`${c.id}  closing`);
    await Promise.all([orchestrator.close(), raw.close()]);
  }
}
