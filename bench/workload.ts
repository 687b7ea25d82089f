/**
 * What a scenario's pipelines do, independent of who runs them: the orchestrator turns
 * the steps into node definitions, the raw-piscina baseline runs them by hand.
 */
import { join } from 'node:path';

/** The node functions module (bench/fixtures/nodes.js). */
export const NODES_MODULE = join(__dirname, 'fixtures', 'nodes.js');

/** The baseline's piscina worker (bench/fixtures/piscina-worker.js). */
export const BASELINE_WORKER = join(__dirname, 'fixtures', 'piscina-worker.js');

/** Exports of nodes.js that are nodes. */
export type NodeName = 'sleepAdd' | 'cpu' | 'touch' | 'identity' | 'honourSignal' | 'spin' | 'increment';

/** One node: a function of nodes.js, its params, and the steps whose outputs it takes. */
export interface Step {
  readonly id: string;
  readonly fn: NodeName;
  readonly params?: Readonly<Record<string, unknown>>;
  readonly dependsOn?: readonly string[];
  /** A map node: `fn` runs once per element of its input array (raw piscina: one `run()` each). */
  readonly map?: boolean;
}

export interface Workload {
  /** A chain (no `dependsOn`) or a DAG. */
  readonly steps: readonly Step[];
  /** The initial input of run `index` (made before its clock starts). */
  input(index: number): unknown;
  /** Whether a run's result is the right one. */
  check(result: unknown): boolean;
}

/** `length` nodes in a chain, each `fn` with `params`. */
export function chain(length: number, fn: NodeName, params?: Record<string, unknown>): Step[] {
  return Array.from({ length }, (_, i) => ({ id: `node${i + 1}`, fn, params }));
}

/** A source, `width` nodes that each take its output, and a sink that takes all of theirs. */
export function fanOutIn(width: number, fn: NodeName, params?: Record<string, unknown>): Step[] {
  const middle = Array.from({ length: width }, (_, i) => ({ id: `mid${i + 1}`, fn, params, dependsOn: ['source'] }));
  return [{ id: 'source', fn, params }, ...middle, { id: 'sink', fn, params, dependsOn: middle.map((step) => step.id) }];
}

/**
 * `layers` layers of `width` nodes: the first take the input, each later node the
 * outputs of two nodes of the layer before (its own column and the next, wrapping).
 * Every node of the last layer is a sink.
 */
export function layered(layers: number, width: number, fn: NodeName): Step[] {
  const steps: Step[] = [];
  for (let layer = 0; layer < layers; layer++) {
    for (let column = 0; column < width; column++) {
      const dependsOn = layer === 0 ? [] : [`l${layer - 1}n${column}`, `l${layer - 1}n${(column + 1) % width}`];
      steps.push({ id: `l${layer}n${column}`, fn, dependsOn });
    }
  }
  return steps;
}

/** Steps on the longest dependency path (a chain: all of them). */
export function criticalPathLength(steps: readonly Step[]): number {
  const isDag = steps.some((step) => step.dependsOn !== undefined);
  if (!isDag) return steps.length;
  const depth = new Map<string, number>();
  const depthOf = (step: Step): number => {
    const known = depth.get(step.id);
    if (known !== undefined) return known;
    const deps = (step.dependsOn ?? []).map((id) => steps.find((other) => other.id === id)!);
    const value = 1 + Math.max(0, ...deps.map(depthOf));
    depth.set(step.id, value);
    return value;
  };
  return Math.max(...steps.map(depthOf));
}
