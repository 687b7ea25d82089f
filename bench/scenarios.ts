/** S1-S5: what each scenario runs, with which options, against which floor. */
import type { BaselineOptions } from './baseline';
import type { Calibration } from './calibrate';
import { S5_BYTES, type Sizes } from './config';
import type { ExecutorOptions } from './orchestrator';
import type { Floor } from './report';
import type { Target } from './verdict';
import { chain, criticalPathLength, fanOutIn, type Step, type Workload } from './workload';

/** The backend's scenarios against plain BullMQ on the same runs: a lead on the tail and the wall time. */
const BACKEND_TARGETS: readonly Target[] = [
  { metric: 'p95Ms', against: 'plainBullmq', atMost: 1, strictly: true },
  { metric: 'wallMs', against: 'plainBullmq', atMost: 1, strictly: true },
];

export interface BatchScenario {
  readonly id: string;
  readonly title: string;
  readonly workload: Workload;
  readonly count: number;
  /** Runs in flight at once. */
  readonly concurrency: number;
  readonly iterations: number;
  readonly threads: number;
  readonly executor: ExecutorOptions;
  /** Raw piscina option sets to try; the one with the lowest p95 in its trial batches is measured. */
  readonly candidates: readonly BaselineOptions[];
  readonly trialCount: number;
  readonly trialBatches: number;
  /** Runs per warm-up batch, and the least time spent warming up each pool. */
  readonly warmUpCount: number;
  readonly warmUpMs: number;
  /**
   * The floor, given what a CPU node takes on the main thread around the measurements
   * (`undefined` for scenarios without CPU nodes).
   */
  floor(nodeMs: number | undefined): Floor | null;
  /** Rounds of work of its CPU nodes, to time around the measurements; 0 for none. */
  readonly cpuRounds: number;
  /** The orchestrator moves each run's input to its thread (`transfer()`) instead of copying it. */
  readonly transferInput: boolean;
  /** The orchestrator runs its nodes on worker processes through the BullMQ backend (see remote.ts). */
  readonly remote: boolean;
  /** Its goals, judged on the median of the rounds (see verdict.ts). */
  readonly targets?: readonly Target[];
}

/** The seed's deadlines (LUKHAS stress suite): node 500 ms, pipeline 1500 ms, grace 50 ms. */
const SEED_TIMEOUTS = { nodeTimeoutMs: 500, pipelineTimeoutMs: 1500, cleanupGraceMs: 50 };

const SLEEP_MS = 10;

/** Many asynchronous nodes per thread: piscina needs many tasks per worker, and atomics off or async. */
const ASYNC_CANDIDATES: readonly BaselineOptions[] = [
  { concurrentTasksPerWorker: 1024, atomics: 'disabled', transfer: false },
  { concurrentTasksPerWorker: 256, atomics: 'disabled', transfer: false },
  { concurrentTasksPerWorker: 1024, atomics: 'async', transfer: false },
  { concurrentTasksPerWorker: 1024, atomics: 'sync', transfer: false },
];

/** Synchronous CPU nodes: one task per worker (piscina's default) or many. */
const CPU_CANDIDATES: readonly BaselineOptions[] = [
  { concurrentTasksPerWorker: 1, atomics: 'sync', transfer: false },
  { concurrentTasksPerWorker: 1, atomics: 'disabled', transfer: false },
  { concurrentTasksPerWorker: 1024, atomics: 'disabled', transfer: false },
];

/** A big buffer copied by structured clone, one run at a time. */
const COPY_CANDIDATES: readonly BaselineOptions[] = [
  { concurrentTasksPerWorker: 1, atomics: 'sync', transfer: false },
  { concurrentTasksPerWorker: 1, atomics: 'disabled', transfer: false },
];

/** A big buffer moved between threads (transferList, Piscina.move), one run at a time. */
const MOVE_CANDIDATES: readonly BaselineOptions[] = COPY_CANDIDATES.map((options) => ({ ...options, transfer: true }));

function numbers(steps: readonly Step[], expected: number): Workload {
  return { steps, input: () => 0, check: (result) => result === expected };
}

/** Floor of CPU work: the critical path, or all the work spread over every core. */
function cpuFloor(steps: readonly Step[], count: number, nodeMs: number, cores: number): Floor {
  const path = criticalPathLength(steps) * nodeMs;
  const spread = (count * steps.length * nodeMs) / cores;
  const note =
    spread >= path
      ? `${count} x ${steps.length} nodes x ${nodeMs.toFixed(2)} ms of CPU over ${cores} cores (a node timed with every core running one, around the measurements)`
      : `critical path of ${criticalPathLength(steps)} nodes x ${nodeMs.toFixed(2)} ms (a node timed with every core running one, around the measurements)`;
  return { ms: Math.max(path, spread), note, bounds: ['wallMs'] };
}

export function batchScenarios(sizes: Sizes, calibration: Calibration, cores: number): BatchScenario[] {
  const mib = S5_BYTES / 1024 / 1024;
  const data = (id: string, how: string, move: boolean): BatchScenario => ({
    id,
    title: `a ${mib} MiB Uint8Array through 3 nodes that each touch every page, ${how}, one run at a time`,
    workload: {
      steps: chain(3, 'touch', move ? { move: true } : undefined),
      input: () => new Uint8Array(S5_BYTES),
      check: (result) => result instanceof Uint8Array && result.length === S5_BYTES && result[0] === 3 && result[S5_BYTES - 4096] === 3,
    },
    count: sizes.S5.count,
    concurrency: 1,
    iterations: sizes.S5.iterations,
    threads: cores,
    executor: { threads: cores },
    candidates: move ? MOVE_CANDIDATES : COPY_CANDIDATES,
    trialCount: sizes.S5.trial,
    trialBatches: sizes.trialBatches,
    warmUpCount: sizes.S5.warmUp,
    warmUpMs: sizes.warmUpMs,
    floor: () => null,
    cpuRounds: 0,
    transferInput: move,
    remote: false,
  });
  const sleepChain = chain(3, 'sleepAdd', { ms: SLEEP_MS });
  const sleepFloor: Floor = {
    ms: 3 * SLEEP_MS,
    note: `three ${SLEEP_MS} ms sleeps in sequence (bounds every run and the wall time)`,
    bounds: ['p50Ms', 'p95Ms', 'p99Ms', 'maxMs', 'wallMs'],
  };
  const work = { rounds: calibration.rounds };
  const cpuChain = chain(3, 'cpu', work);
  const dag = fanOutIn(8, 'cpu', work);
  const cpuNote = `~${calibration.targetMs} ms of hashing`;
  const scenarios: BatchScenario[] = [
    {
      id: 'S1',
      title: `${sizes.S1.count.toLocaleString('en-US')} concurrent pipelines x 3 nodes, each a ${SLEEP_MS} ms sleep (the seed's)`,
      workload: numbers(sleepChain, 3),
      count: sizes.S1.count,
      concurrency: sizes.S1.count,
      iterations: sizes.S1.iterations,
      threads: cores,
      executor: { threads: cores, timeouts: SEED_TIMEOUTS },
      candidates: ASYNC_CANDIDATES,
      trialCount: sizes.S1.trial,
      trialBatches: sizes.trialBatches,
      warmUpCount: sizes.S1.warmUp,
      warmUpMs: sizes.warmUpMs,
      floor: () => sleepFloor,
      cpuRounds: 0,
      transferInput: false,
      remote: false,
      targets: [
        { metric: 'p95Ms', against: 'floor', atMost: 2 },
        { metric: 'p95Ms', against: 'floor', atMost: 1.5 },
        { metric: 'p99Ms', against: 'floor', atMost: 2, strictly: true },
        { metric: 'p95Ms', against: 'baseline', atMost: 0.6 },
      ],
    },
    {
      id: 'S2',
      title: `${sizes.S2.count.toLocaleString('en-US')} concurrent pipelines x 3 nodes, each a ${SLEEP_MS} ms sleep`,
      workload: numbers(sleepChain, 3),
      count: sizes.S2.count,
      concurrency: sizes.S2.count,
      iterations: sizes.S2.iterations,
      threads: cores,
      executor: { threads: cores, timeouts: SEED_TIMEOUTS },
      candidates: ASYNC_CANDIDATES,
      trialCount: sizes.S2.trial,
      trialBatches: sizes.trialBatches,
      warmUpCount: sizes.S2.warmUp,
      warmUpMs: sizes.warmUpMs,
      floor: () => sleepFloor,
      cpuRounds: 0,
      transferInput: false,
      remote: false,
      targets: [{ metric: 'p95Ms', against: 'baseline', atMost: 0.6 }],
    },
    {
      id: 'S3',
      title: `${sizes.S3.count.toLocaleString('en-US')} concurrent pipelines x 3 CPU nodes, each ${cpuNote}`,
      workload: numbers(cpuChain, 3),
      count: sizes.S3.count,
      concurrency: sizes.S3.count,
      iterations: sizes.S3.iterations,
      threads: cores,
      executor: { threads: cores },
      candidates: CPU_CANDIDATES,
      trialCount: sizes.S3.trial,
      trialBatches: sizes.trialBatches,
      warmUpCount: sizes.S3.warmUp,
      warmUpMs: sizes.warmUpMs,
      floor: (nodeMs) => cpuFloor(cpuChain, sizes.S3.count, nodeMs ?? calibration.nodeMs, cores),
      cpuRounds: calibration.rounds,
      transferInput: false,
      remote: false,
      targets: [
        { metric: 'wallMs', against: 'floor', atMost: 1.1 },
        { metric: 'wallMs', against: 'baseline', atMost: 1.05 },
      ],
    },
    {
      id: 'S4',
      title: `${sizes.S4.count.toLocaleString('en-US')} concurrent DAGs 1 -> 8 -> 1 of CPU nodes, each ${cpuNote}`,
      // source 0 + 1 = 1; each middle node 1 + 1 = 2; the sink 8 x 2 + 1 = 17.
      workload: numbers(dag, 17),
      count: sizes.S4.count,
      concurrency: sizes.S4.count,
      iterations: sizes.S4.iterations,
      threads: cores,
      executor: { threads: cores },
      candidates: CPU_CANDIDATES,
      trialCount: sizes.S4.trial,
      trialBatches: sizes.trialBatches,
      warmUpCount: sizes.S4.warmUp,
      warmUpMs: sizes.warmUpMs,
      floor: (nodeMs) => cpuFloor(dag, sizes.S4.count, nodeMs ?? calibration.nodeMs, cores),
      cpuRounds: calibration.rounds,
      transferInput: false,
      remote: false,
    },
    data('S5a', 'copied between threads (structured clone)', false),
    data('S5b', 'moved between threads (transfer() / transferList)', true),
  ];
  // S1 and S3 again through the BullMQ backend, each right after its embedded run (the
  // embedded pool's targets are not theirs: theirs is to keep the lead over plain
  // BullMQ); S2's scale points right after S2.
  return scenarios.flatMap((scenario) =>
    scenario.id === 'S1' || scenario.id === 'S3'
      ? [scenario, { ...scenario, id: `${scenario.id}-bullmq`, title: `${scenario.title}, through the BullMQ backend`, remote: true, targets: BACKEND_TARGETS }]
      : scenario.id === 'S2'
        ? [scenario, ...sizes.scale.map((count) => scalePoint(scenario, count, sizes.scaleRounds))]
        : [scenario],
  );
}

/**
 * S2's runs, `count` at once: the cost of a run must not grow with the runs in flight.
 * No pipeline timeout (200,000 runs take seconds); raw piscina's options tried on 10,000.
 */
function scalePoint(s2: BatchScenario, count: number, rounds: number): BatchScenario {
  return {
    ...s2,
    id: `S2-${count / 1000}k`,
    title: `${count.toLocaleString('en-US')} concurrent pipelines x 3 nodes, each a ${SLEEP_MS} ms sleep (a scale point)`,
    count,
    concurrency: count,
    iterations: rounds,
    executor: { ...s2.executor, timeouts: { ...SEED_TIMEOUTS, pipelineTimeoutMs: Infinity } },
    candidates: ASYNC_CANDIDATES.slice(0, 2),
    trialCount: 10_000,
    trialBatches: 1,
    warmUpCount: 10_000,
    targets: [{ metric: 'wallMs', against: 'baseline', atMost: 1 }],
  };
}
