/** How much work makes a CPU node last the target time on this machine. */
import { performance } from 'node:perf_hooks';
import { median } from './stats';
import { NODES_MODULE } from './workload';

export interface Calibration {
  /** Rounds of `work` a CPU node does. */
  readonly rounds: number;
  /** What one CPU node's work takes on the main thread, measured after calibrating (median). */
  readonly nodeMs: number;
  readonly targetMs: number;
}

interface NodesModule {
  work(rounds: number): number;
}

/** Times `work(rounds)` on this thread, in milliseconds. */
function timeWork(work: NodesModule['work'], rounds: number): number {
  const start = performance.now();
  work(rounds);
  return performance.now() - start;
}

/** Median time of `work(rounds)`, in milliseconds. */
function medianTime(work: NodesModule['work'], rounds: number, samples: number): number {
  return median(Array.from({ length: samples }, () => timeWork(work, rounds)))!;
}

/** Finds the rounds of work that take `targetMs` on the main thread, with the node's own code. */
export function calibrate(targetMs: number): Calibration {
  const { work } = require(NODES_MODULE) as NodesModule;
  // Warm up and find a count that takes long enough to time well, for a first estimate.
  let rounds = 1_000;
  while (timeWork(work, rounds) < 20) rounds *= 2;
  let nodeRounds = Math.max(1, Math.round((targetMs / medianTime(work, rounds, 5)) * rounds));
  // Then correct it at the node's own size, where per-call costs show.
  for (let pass = 0; pass < 3; pass++) {
    nodeRounds = Math.max(1, Math.round((nodeRounds * targetMs) / medianTime(work, nodeRounds, 15)));
  }
  return { rounds: nodeRounds, nodeMs: medianTime(work, nodeRounds, 25), targetMs };
}

/**
 * What a CPU node of `rounds` takes on the main thread now (median of `samples`). This
 * machine's speed drifts by tens of percent over minutes, so the floor of a CPU
 * scenario is computed from timings taken around its own measurements, not at start-up.
 */
export function timeNode(rounds: number, samples = 15): number {
  const { work } = require(NODES_MODULE) as NodesModule;
  return medianTime(work, rounds, samples);
}
