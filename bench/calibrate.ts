/** How much work makes a CPU node last the target time on this machine. */
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
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

/**
 * What a CPU node of `rounds` takes while every core runs one (median over the cores'
 * threads): the cost of the work under the load a CPU scenario puts on the machine,
 * which is what its floor divides among the cores. One core alone runs it faster (it
 * has the caches and the memory bandwidth to itself), so timing it on the main thread
 * alone would set a floor no scheduler could reach.
 */
export async function timeNodeOnAllCores(rounds: number, cores: number, samples = 15): Promise<number> {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { work } = require(workerData.module);
    const times = [];
    for (let i = 0; i < workerData.samples; i++) {
      const start = performance.now();
      work(workerData.rounds);
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    parentPort.postMessage(times[times.length >> 1]);`;
  const medians = await Promise.all(
    Array.from(
      { length: cores },
      () =>
        new Promise<number>((resolve, reject) => {
          const worker = new Worker(source, { eval: true, workerData: { module: NODES_MODULE, rounds, samples } });
          worker.once('message', (ms: number) => {
            resolve(ms);
            void worker.terminate();
          });
          worker.once('error', reject);
        }),
    ),
  );
  return median(medians)!;
}
