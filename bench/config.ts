/** How much each scenario runs: the full benchmark, and `--quick` (CI's smoke test). */

export interface Size {
  /** Runs per measured iteration. */
  readonly count: number;
  /** Measured iterations per contender (they alternate). */
  readonly iterations: number;
  /** Runs in the trial batch of each baseline candidate. */
  readonly trial: number;
  /** Runs per warm-up batch (see {@link Sizes.warmUpMs}). */
  readonly warmUp: number;
}

/** The sizes of S7's and S8's shapes. */
export interface Shapes {
  /** S7a: a fan-out 1 -> `fanOut` -> 1. */
  readonly fanOut: number;
  /** S7b: `layers` layers of `width` nodes, two dependencies each. */
  readonly layers: number;
  readonly width: number;
  /** S8a: elements of ~0.2 ms of CPU in one map node. */
  readonly mapCpu: number;
  /** S8b: trivial elements in one map node. */
  readonly mapTrivial: number;
}

export interface Sizes {
  readonly S1: Size;
  readonly S2: Size;
  readonly S3: Size;
  readonly S4: Size;
  readonly S5: Size;
  /** S6: `count` abort trials per iteration, per case; `warmUp` trials before. */
  readonly S6: Size;
  /** S7 and S8: one run at a time, `iterations` rounds (a run here swings by 50% and more); the shapes' sizes in `shapes`. */
  readonly S7: Size;
  readonly shapes: Shapes;
  /** Scale points: S2's runs, this many at once (none in the quick run), `scaleRounds` rounds each. */
  readonly scale: readonly number[];
  readonly scaleRounds: number;
  /**
   * Each pool (the orchestrator's, each raw piscina candidate's) runs warm-up batches
   * for at least this long, and at least two: the first batches of a fresh pool run
   * several times slower than later ones (JIT, heap growth), far beyond a thread start.
   */
  readonly warmUpMs: number;
  /** Trial batches per baseline candidate; its best p95 counts (noise only ever adds). */
  readonly trialBatches: number;
}

const FULL: Sizes = {
  S1: { count: 1_000, iterations: 10, trial: 1_000, warmUp: 1_000 },
  S2: { count: 10_000, iterations: 5, trial: 10_000, warmUp: 10_000 },
  S3: { count: 1_000, iterations: 5, trial: 200, warmUp: 200 },
  S4: { count: 200, iterations: 5, trial: 40, warmUp: 40 },
  S5: { count: 16, iterations: 5, trial: 8, warmUp: 4 },
  S6: { count: 15, iterations: 5, trial: 0, warmUp: 2 },
  S7: { count: 1, iterations: 11, trial: 1, warmUp: 1 },
  shapes: { fanOut: 5_000, layers: 100, width: 100, mapCpu: 10_000, mapTrivial: 100_000 },
  scale: [100_000, 200_000],
  scaleRounds: 3,
  warmUpMs: 1_500,
  trialBatches: 2,
};

const QUICK: Sizes = {
  S1: { count: 1_000, iterations: 1, trial: 1_000, warmUp: 1_000 },
  S2: { count: 2_000, iterations: 1, trial: 2_000, warmUp: 2_000 },
  S3: { count: 100, iterations: 1, trial: 40, warmUp: 40 },
  S4: { count: 20, iterations: 1, trial: 8, warmUp: 8 },
  S5: { count: 4, iterations: 1, trial: 2, warmUp: 2 },
  S6: { count: 4, iterations: 1, trial: 0, warmUp: 1 },
  S7: { count: 1, iterations: 1, trial: 1, warmUp: 1 },
  shapes: { fanOut: 1_000, layers: 20, width: 20, mapCpu: 1_000, mapTrivial: 5_000 },
  scale: [],
  scaleRounds: 0,
  warmUpMs: 300,
  trialBatches: 1,
};

export function sizesFor(quick: boolean): Sizes {
  return quick ? QUICK : FULL;
}

/** What a CPU node's work should take on this machine's main thread. */
export const CPU_NODE_TARGET_MS = 2;

/** Size of S5's buffer. */
export const S5_BYTES = 16 * 1024 * 1024;

/** S6: how long a node may ignore its aborted signal before its thread is terminated. */
export const S6_CLEANUP_GRACE_MS = 50;
