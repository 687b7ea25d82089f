/**
 * S7 and S8: wide and data-shaped pipelines, one run at a time, against raw piscina
 * running the same nodes (one `run()` per node, or per element) in the same process.
 *
 * - S7a, a fan-out 1 -> N -> 1, and S7b, a layered DAG (two dependencies per node), of
 *   trivial nodes: what planning and dispatching cost per node.
 * - S8a, a map node over elements of ~0.2 ms of CPU each (raw piscina: `Promise.all` of
 *   one `run()` per element), against the CPU floor too; S8b, a map over trivial elements.
 */
import type { BaselineOptions } from './baseline';
import type { Calibration } from './calibrate';
import type { Sizes } from './config';
import type { BatchScenario } from './scenarios';
import { fanOutIn, layered, type Step, type Workload } from './workload';

/** Trivial nodes, one run at a time: many tasks per worker, atomics as piscina likes them. */
const TRIVIAL_CANDIDATES: readonly BaselineOptions[] = [
  { concurrentTasksPerWorker: 1024, atomics: 'disabled', transfer: false },
  { concurrentTasksPerWorker: 1024, atomics: 'sync', transfer: false },
];

/** CPU elements: one task per worker (piscina's default) or many. */
const CPU_CANDIDATES: readonly BaselineOptions[] = [
  { concurrentTasksPerWorker: 1, atomics: 'sync', transfer: false },
  { concurrentTasksPerWorker: 1024, atomics: 'disabled', transfer: false },
];

/** A map node over `count` zeros, each element giving `expected`. */
function mapOver(step: Step, count: number, expected: number): Workload {
  return {
    steps: [step],
    input: () => new Array<number>(count).fill(0),
    check: (result) => Array.isArray(result) && result.length === count && result.every((value) => value === expected),
  };
}

export function shapeScenarios(sizes: Sizes, calibration: Calibration, cores: number): BatchScenario[] {
  const { fanOut, layers, width, mapCpu, mapTrivial } = sizes.shapes;
  const size = sizes.S7;
  const common = {
    count: size.count,
    concurrency: 1,
    iterations: size.iterations,
    threads: cores,
    executor: { threads: cores },
    trialCount: size.trial,
    trialBatches: 1,
    warmUpCount: size.warmUp,
    warmUpMs: sizes.warmUpMs,
    transferInput: false,
    remote: false,
  };
  // Each layer doubles the sum of two nodes of the one before, plus one.
  let lastLayer = 0;
  for (let layer = 0; layer < layers; layer++) lastLayer = layer === 0 ? 1 : 2 * lastLayer + 1;
  const atParity = { metric: 'wallMs', against: 'baseline', atMost: 1 } as const;
  const elementRounds = Math.max(1, Math.round(calibration.rounds / 10));
  const elementMs = calibration.nodeMs / 10;
  return [
    {
      ...common,
      id: 'S7a',
      title: `a fan-out 1 -> ${fanOut.toLocaleString('en-US')} -> 1 of trivial nodes, one run at a time`,
      // source 0 + 1; each middle node 1 + 1; the sink fanOut x 2 + 1.
      workload: { steps: fanOutIn(fanOut, 'increment'), input: () => 0, check: (result) => result === fanOut * 2 + 1 },
      candidates: TRIVIAL_CANDIDATES,
      floor: () => null,
      cpuRounds: 0,
      targets: [atParity],
    },
    {
      ...common,
      id: 'S7b',
      title: `a layered DAG of ${layers} x ${width} trivial nodes, two dependencies each, one run at a time`,
      workload: {
        steps: layered(layers, width, 'increment'),
        input: () => 0,
        check: (result) => typeof result === 'object' && result !== null && Object.values(result).length === width && Object.values(result).every((value) => value === lastLayer),
      },
      candidates: TRIVIAL_CANDIDATES,
      floor: () => null,
      cpuRounds: 0,
      targets: [atParity],
    },
    {
      ...common,
      id: 'S8a',
      title: `a map node over ${mapCpu.toLocaleString('en-US')} elements of ~${elementMs.toFixed(2)} ms of CPU each, one run at a time`,
      workload: mapOver({ id: 'each', fn: 'cpu', params: { rounds: elementRounds }, map: true }, mapCpu, 1),
      candidates: CPU_CANDIDATES,
      floor: (nodeMs) => {
        const ms = nodeMs ?? elementMs;
        return {
          ms: (mapCpu * ms) / cores,
          note: `${mapCpu.toLocaleString('en-US')} elements x ${ms.toFixed(3)} ms of CPU over ${cores} cores (an element timed with every core running one, around the measurements)`,
          bounds: ['wallMs'],
        };
      },
      cpuRounds: elementRounds,
      targets: [atParity, { metric: 'wallMs', against: 'floor', atMost: 1.1 }],
    },
    {
      ...common,
      id: 'S8b',
      title: `a map node over ${mapTrivial.toLocaleString('en-US')} trivial elements, one run at a time`,
      workload: mapOver({ id: 'each', fn: 'increment', map: true }, mapTrivial, 1),
      candidates: TRIVIAL_CANDIDATES,
      floor: () => null,
      cpuRounds: 0,
      targets: [{ metric: 'wallMs', against: 'baseline', atMost: 0.5 }],
    },
  ];
}
