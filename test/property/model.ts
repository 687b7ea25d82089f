/**
 * The model of the property tests: random pipelines whose nodes behave at random,
 * and what a simple reading of the documented semantics predicts of each run.
 *
 * Time scales are kept apart so the prediction is decidable: nodes that succeed,
 * throw or exit do so at once; nodes that hang (spin, wait ignoring their signal,
 * wait honouring it) end only by a deadline; deadlines and aborts lie on a coarse grid
 * (100 ms and more, 50 ms apart at least); a hanging node's own work would take longer
 * than any deadline plus the grace period.
 */
import fc from 'fast-check';

/**
 * What a node does. The `load*` behaviours are those of its module as it loads (its
 * top level never ends, throws, or exits the thread); 'leave' returns like 'ok' and
 * leaves a loop behind.
 */
export type Behaviour = 'ok' | 'throw' | 'exit' | 'spin' | 'wait' | 'honour' | 'leave' | 'loadHang' | 'loadThrow' | 'loadExit';
const HANGS: readonly Behaviour[] = ['spin', 'wait', 'honour', 'loadHang'];
/** Behaviours that end their node at once with an error. */
const FAIL_AT_ONCE: readonly Behaviour[] = ['throw', 'exit', 'loadThrow', 'loadExit'];
/** Behaviours that output a value, as 'ok' does. */
const OUTPUTS: readonly Behaviour[] = ['ok', 'leave'];
/** Node ids that are Object.prototype names, given to the first nodes of a hostile run. */
export const HOSTILE_IDS = ['__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty'] as const;

export interface NodeSpec {
  readonly behaviour: Behaviour;
  /** Added to the sum of its inputs by an 'ok' node. */
  readonly k: number;
  /** Indexes of earlier nodes (ignored for a chain). */
  readonly deps: readonly number[];
  readonly timeoutMs: number | undefined;
}

export interface RunSpec {
  readonly chain: boolean;
  /** Its first nodes have ids that are Object.prototype names. */
  readonly hostile: boolean;
  readonly nodes: readonly NodeSpec[];
  readonly pipelineTimeoutMs: number;
  /** When the caller aborts, from the call; undefined for never. */
  readonly abortAtMs: number | undefined;
}

export interface CaseSpec {
  readonly runs: readonly RunSpec[];
}

/** How long a hanging node's own work would take: longer than any deadline plus grace. */
export const HANG_WORK_MS = 700;
/** Grace period of the executor under test. */
export const GRACE_MS = 30;
/** Timer lateness tolerated when ordering two deadlines. */
export const SLACK_MS = 45;

const behaviour = fc.constantFrom<Behaviour>(
  ...(['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok'] as const),
  'throw',
  'throw',
  'exit',
  'spin',
  'wait',
  'wait',
  'honour',
  'honour',
  'leave',
  'loadHang',
  'loadThrow',
  'loadExit',
);

function nodeArb(index: number): fc.Arbitrary<NodeSpec> {
  return fc.record({
    behaviour,
    k: fc.integer({ min: -5, max: 5 }),
    deps: index === 0 ? fc.constant([]) : fc.uniqueArray(fc.integer({ min: 0, max: index - 1 }), { maxLength: 3 }),
    timeoutMs: fc.constantFrom(undefined, 100, 200, 300),
  });
}

const runArb: fc.Arbitrary<RunSpec> = fc
  .integer({ min: 1, max: 30 })
  .chain((count) =>
    fc.record({
      chain: fc.boolean(),
      hostile: fc.boolean(),
      nodes: fc.tuple(...Array.from({ length: count }, (_, i) => nodeArb(i))),
      pipelineTimeoutMs: fc.constantFrom(150, 250, 350, Infinity),
      abortAtMs: fc.constantFrom(undefined, undefined, 125, 225, 325),
    }),
  )
  .map((run) => {
    // A run that could hang forever gets a pipeline deadline.
    const unbounded = run.nodes.some((node) => HANGS.includes(node.behaviour) && node.timeoutMs === undefined);
    return unbounded && run.pipelineTimeoutMs === Infinity && run.abortAtMs === undefined ? { ...run, pipelineTimeoutMs: 350 } : run;
  });

export const caseArb: fc.Arbitrary<CaseSpec> = fc.record({ runs: fc.array(runArb, { minLength: 1, maxLength: 3 }) });

/** The id of node `index` of the run. */
export function idOf(run: RunSpec, index: number): string {
  return run.hostile && index < HOSTILE_IDS.length ? HOSTILE_IDS[index]! : `n${index}`;
}

/** The index of the node with id `id`, or -1. */
export function indexOf(run: RunSpec, id: string | undefined): number {
  if (id === undefined) return -1;
  if (run.hostile) {
    const hostile = (HOSTILE_IDS as readonly string[]).indexOf(id);
    if (hostile >= 0 && hostile < run.nodes.length) return hostile;
  }
  const index = /^n\d+$/.test(id) ? Number(id.slice(1)) : -1;
  return index >= 0 && index < run.nodes.length && idOf(run, index) === id ? index : -1;
}

export function depsOf(run: RunSpec, index: number): readonly number[] {
  if (run.chain) return index === 0 ? [] : [index - 1];
  return run.nodes[index]!.deps;
}

/** What the model knows of a run before it runs. */
export interface Prediction {
  /** Nodes that start: every node they depend on succeeds. */
  readonly started: ReadonlySet<number>;
  /** Outputs of the 'ok' nodes that start. */
  readonly outputs: ReadonlyMap<number, number>;
  /** The result, when no node that starts fails or hangs. */
  readonly success: { readonly value: unknown } | undefined;
  /** Nodes that start and fail at once ('throw', 'exit'). */
  readonly failingAtOnce: readonly number[];
  /** Nodes that start and hang. */
  readonly hanging: readonly number[];
}

export function predict(run: RunSpec): Prediction {
  const count = run.nodes.length;
  const started = new Set<number>();
  const outputs = new Map<number, number>();
  const dependents = new Array<number>(count).fill(0);
  for (let i = 0; i < count; i++) {
    const deps = depsOf(run, i);
    for (const dep of deps) dependents[dep]!++;
    if (!deps.every((dep) => outputs.has(dep))) continue;
    started.add(i);
    const node = run.nodes[i]!;
    if (!OUTPUTS.includes(node.behaviour)) continue;
    const input = deps.length === 0 ? 1 : deps.reduce((total, dep) => total + outputs.get(dep)!, 0);
    outputs.set(i, input + node.k);
  }
  const failingAtOnce = [...started].filter((i) => FAIL_AT_ONCE.includes(run.nodes[i]!.behaviour));
  const hanging = [...started].filter((i) => HANGS.includes(run.nodes[i]!.behaviour));
  let success: { value: unknown } | undefined;
  if (failingAtOnce.length === 0 && hanging.length === 0) {
    const sinks = [...Array(count).keys()].filter((i) => dependents[i] === 0);
    success = {
      value: sinks.length === 1 ? outputs.get(sinks[0]!) : Object.fromEntries(sinks.map((i) => [idOf(run, i), outputs.get(i)])),
    };
  }
  return { started, outputs, success, failingAtOnce, hanging };
}

/** What a run ended with, as the test saw it. */
export type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

interface ErrorLike {
  name?: string;
  message?: string;
  nodeId?: string;
  timeoutMs?: number;
  reason?: unknown;
  completedNodes?: readonly string[];
  partialResults?: Record<string, unknown>;
}

/**
 * Why `outcome` is not one the model allows, or undefined when it is.
 * @param spinning a node of the run may start late (its thread blocked by a spinning
 * node, or terminated under it by another run's): "at once" and "at its deadline"
 * become "at most then".
 */
export function judge(run: RunSpec, prediction: Prediction, outcome: Outcome, spinning: boolean, abortReason: string): string | undefined {
  const { success, failingAtOnce, hanging, outputs } = prediction;
  if (success !== undefined && outcome.ok) {
    return same(outcome.value, success.value) ? undefined : `expected ${JSON.stringify(success.value)}, got ${JSON.stringify(outcome.value)}`;
  }
  if (outcome.ok) return `expected a failure, got ${JSON.stringify(outcome.value)}`;
  const error = outcome.error as ErrorLike;
  if (success !== undefined && !(spinning && (error.name === 'PipelineTimeoutException' || error.name === 'CancellationException'))) {
    // Only a run held up on another run's blocked or lost thread may miss its deadlines.
    return `expected success, got ${describe(outcome.error)}`;
  }
  const nodeOf = (id: string | undefined): number => indexOf(run, id);
  const deadline = Math.min(run.pipelineTimeoutMs, run.abortAtMs ?? Infinity);
  // Hanging nodes whose clock surely started at the call: their deadlines are firm.
  const firmTimeouts = spinning ? [] : hanging.map((i) => run.nodes[i]!.timeoutMs ?? Infinity);
  const earliestFirm = Math.min(deadline, ...firmTimeouts);

  switch (error.name) {
    case 'Error':
    case 'WorkerCrashedException':
    case 'PipelineDefinitionError': {
      const node = nodeOf(error.nodeId);
      const expected: Behaviour[] = error.name === 'Error' ? ['throw'] : error.name === 'PipelineDefinitionError' ? ['loadThrow'] : ['exit', 'loadExit'];
      if (!failingAtOnce.includes(node) || !expected.includes(run.nodes[node]!.behaviour)) {
        return `${error.name} names ${error.nodeId}, which is not a started ${expected.join(' or ')} node`;
      }
      if (error.name === 'Error' && error.message !== `boom ${idOf(run, node)}`) return `unexpected message ${error.message}`;
      return undefined;
    }
    case 'NodeTimeoutException': {
      const node = nodeOf(error.nodeId);
      if (!hanging.includes(node)) return `NodeTimeoutException names ${error.nodeId}, which does not hang`;
      if (error.timeoutMs !== run.nodes[node]!.timeoutMs) return `NodeTimeoutException with timeoutMs ${error.timeoutMs}`;
      if (!spinning && failingAtOnce.length > 0) return `a timeout came before the failures at once of ${failingAtOnce}`;
      if (error.timeoutMs! > deadline + SLACK_MS) return `node timeout ${error.timeoutMs} came after the deadline at ${deadline}`;
      return undefined;
    }
    case 'PipelineTimeoutException':
    case 'CancellationException': {
      const at = error.name === 'PipelineTimeoutException' ? run.pipelineTimeoutMs : run.abortAtMs;
      if (at === undefined || at === Infinity) return `${error.name} without that deadline`;
      if (error.name === 'CancellationException' && error.reason !== abortReason) return `cancelled with ${String(error.reason)}`;
      if (!spinning && failingAtOnce.length > 0) return `${error.name} came before the failures at once of ${failingAtOnce}`;
      if (at > earliestFirm + SLACK_MS) return `${error.name} at ${at} came after a deadline at ${earliestFirm}`;
      const completed = new Set((error.completedNodes ?? []).map(nodeOf));
      for (const node of completed) {
        if (!outputs.has(node)) return `completedNodes lists ${idOf(run, node)}, which does not complete`;
        const id = idOf(run, node);
        const partial = error.partialResults !== undefined && Object.hasOwn(error.partialResults, id) ? error.partialResults[id] : undefined;
        if (partial !== outputs.get(node)) return `partialResults of ${id} is ${String(partial)}`;
      }
      if (!spinning && completed.size !== outputs.size) return `completedNodes ${[...completed]} miss some of ${[...outputs.keys()]}`;
      return undefined;
    }
    default:
      return `unexpected error ${describe(error)}`;
  }
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
