/**
 * Plans: a checked definition cut into *segments* (runs of nodes that execute one after
 * another in one dispatch), in dependency order. A plan is shared by every run of the
 * same definition (`params` apart), so most runs plan nothing.
 */
import { uncrossable } from '../shared/crossing';
import type { TaskNode } from '../shared/protocol';
import { checkNode, checkParams, checkRequest, failer, moduleName } from './check';
import type { NodeDefinition, PipelineRequest } from './definition';
import type { ModuleRoots } from './module-roots';
import { NO_RETRY, type RetryPolicy } from './retry';

export interface PlannedNode {
  readonly id: string;
  readonly index: number;
  readonly module: string;
  readonly exportName: string | undefined;
  readonly timeoutMs: number | undefined;
  /** The node's retry policy as a whole: none for a map node, whose elements retry each. */
  readonly retry: RetryPolicy;
  /** Set for a map node (see `run/map.ts`): a segment of its own. */
  readonly map: MapPlan | undefined;
  readonly deps: readonly number[];
  readonly dependents: readonly number[];
  segment: number;
}

/** How a map node runs its elements. */
export interface MapPlan {
  /** Elements of one run in flight at once. */
  readonly concurrency: number;
  /** The retry policy of each element. */
  readonly retry: RetryPolicy;
}

/**
 * A run of nodes that execute one after another inside one dispatch: each node but
 * the last has exactly one dependent, the next one, which has no other dependency.
 */
export interface Segment {
  readonly index: number;
  /** Node indexes, in execution order. */
  readonly nodes: readonly number[];
  /** Node indexes whose outputs form the first node's input. */
  readonly deps: readonly number[];
  /** Segments that wait on this one's last node. */
  readonly dependents: readonly number[];
  /** What dispatching it needs every time, made once per plan (plans are shared by runs). */
  cache?: SegmentCache;
}

/** A segment's dispatch data, filled in by its first dispatch (see `scheduler.ts`). */
export interface SegmentCache {
  /** Its nodes as sent, for runs without params or tracing, and the id they are kept under. */
  tasks: readonly TaskNode[] | undefined;
  id: number | undefined;
  /** Each node's timeout, for runs whose `nodeTimeoutMs` is `timeoutsFor`. */
  timeouts: readonly number[] | undefined;
  timeoutsFor: number;
}

export interface Plan {
  readonly pipelineId: string;
  readonly nodes: readonly PlannedNode[];
  readonly segments: readonly Segment[];
  /** Node indexes without dependents: their outputs form the result. */
  readonly sinks: readonly number[];
  /** Segments with no dependency, ready at the start. */
  readonly roots: readonly number[];
}

/** A request's plan (shared by every run of the same definition) and its nodes' params. */
export interface PlannedRequest {
  readonly plan: Plan;
  /** `params` of each node, by index. */
  readonly params: readonly unknown[];
}

/** Plans by the shape of their definition: most runs repeat one. */
const plans = new Map<string, Plan>();
const MAX_PLANS = 512;
/**
 * The longest shape key kept, in characters (a thousand nodes or more). A longer key
 * costs about as much to build as planning its definition, and the cache would hold it
 * and its plan: such definitions are planned afresh every time.
 */
const MAX_KEY_LENGTH = 65_536;

/**
 * Checks a pipeline request and plans its execution. `modulesAreLocal`: this process's
 * threads load the node modules, so their files must exist here (another process may
 * load them elsewhere, as with a remote backend: then only their form is checked).
 * `roots`: the executor's `moduleRoots`, which every module must lie inside.
 * @throws {PipelineDefinitionError} naming the culprit, before any node runs.
 */
export function planPipeline(request: PipelineRequest, modulesAreLocal = true, roots?: ModuleRoots): PlannedRequest {
  const pipelineId = checkRequest(request);
  const defs = request.nodes;
  // A plan whose module files were not looked for is not one whose files were, nor is
  // one checked against other module roots (or none).
  const key = shapeKey(`${modulesAreLocal ? 'local' : 'remote'}:${roots?.key ?? ''}\u0001`, pipelineId, defs);
  let plan = key === undefined ? undefined : plans.get(key);
  if (plan === undefined) {
    plan = buildPlan(pipelineId, defs, modulesAreLocal, roots);
    if (key !== undefined) {
      if (plans.size >= MAX_PLANS) plans.delete(plans.keys().next().value!);
      plans.set(key, plan);
    }
  }
  const fail = failer(pipelineId);
  // Shared by every request without params (most): a run holds its request's.
  let params: unknown[] | undefined;
  for (let i = 0; i < defs.length; i++) {
    // Asked first: reading an absent field can cost more (see `checkNode`).
    const def = defs[i]!;
    const value = 'params' in def ? def.params : undefined;
    if (value === undefined) continue;
    checkParams(value, def.id, fail);
    (params ??= new Array<unknown>(defs.length))[i] = value;
  }
  if (request.initialInput !== undefined) {
    const problem = uncrossable(request.initialInput);
    if (problem !== undefined) {
      const takers = plan.roots.map((root) => plan.nodes[plan.segments[root]!.nodes[0]!]!.id);
      fail(`The input of pipeline "${pipelineId}" (for ${takers.map((id) => `"${id}"`).join(', ')}) cannot cross threads: it is ${problem}`, takers[0]);
    }
  }
  return { plan, params: params ?? NO_PARAMS };
}

/** The params of a request without any: none at every index. */
const NO_PARAMS: readonly unknown[] = Object.freeze([]);

const functionIds = new WeakMap<object, number>();
let nextFunctionId = 0;

/**
 * Module names by a number of their own, so that a key does not repeat a long path per
 * node: the key is hashed and compared whole on every run. Bounded as the modules found
 * to be files are; a number is never given twice, so a key made before the table was
 * cleared matches no other module.
 */
const moduleIds = new Map<string, number>();
let nextModuleId = 0;

function moduleId(module: string): number {
  let id = moduleIds.get(module);
  if (id === undefined) {
    if (moduleIds.size >= 4096) moduleIds.clear();
    moduleIds.set(module, (id = ++nextModuleId));
  }
  return id;
}

/**
 * A string that two definitions share only if they plan alike (everything but
 * `params`), or undefined for a definition too unusual or too large to key (it is
 * planned afresh). `prefix` sets apart what else the plan depends on.
 */
function shapeKey(prefix: string, pipelineId: string, defs: readonly NodeDefinition[]): string | undefined {
  let key = `${prefix}${pipelineId.length}:${pipelineId}`;
  for (const def of defs) {
    if (def === null || typeof def !== 'object' || Object.getPrototypeOf(def) !== Object.prototype || key.length > MAX_KEY_LENGTH) return undefined;
    key += '|';
    let fields = 0;
    for (const name in def) {
      fields++;
      if (name === 'params') continue;
      let value = (def as unknown as Record<string, unknown>)[name];
      // With its length: a name that holds `;module=...` must not read as two fields.
      key += `;${name.length}:${name}=`;
      if (name === 'module') {
        // A URL module plans as its href does.
        value = moduleName(value);
        if (typeof value === 'string') {
          key += `M${moduleId(value)}`;
          continue;
        }
      }
      if (typeof value === 'string') key += `s${value.length}:${value}`;
      else if (typeof value === 'number' || typeof value === 'boolean' || value === undefined) key += `${typeof value}:${String(value)}`;
      else if (typeof value === 'function') {
        let id = functionIds.get(value);
        if (id === undefined) functionIds.set(value, (id = ++nextFunctionId));
        key += `f${id}`;
      } else if (name === 'map' && value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
        // `{ concurrency }` plans by its value; anything else is planned afresh (and refused).
        const keys = Object.keys(value);
        const { concurrency } = value as { concurrency?: unknown };
        if (keys.length > 1 || (keys.length === 1 && keys[0] !== 'concurrency') || (concurrency !== undefined && typeof concurrency !== 'number')) return undefined;
        key += `m${String(concurrency)}`;
      } else if (Array.isArray(value)) {
        key += `a${value.length}`;
        for (const item of value) {
          if (typeof item !== 'string') return undefined;
          key += `,${item.length}:${item}`;
        }
      } else return undefined;
    }
    // A field the loop did not see (not enumerable, or a symbol) is still checked by
    // name, so the key would not tell such definitions apart: they are planned afresh.
    if (Reflect.ownKeys(def).length !== fields) return undefined;
  }
  return key.length > MAX_KEY_LENGTH ? undefined : key;
}

/** The edges of a node or segment that has none: a plan's arrays do not change once it is made. */
const NONE: readonly number[] = [];

/**
 * An array for `length` numbers written in order from index 0, made at its final
 * length: `[]` grown by `push` keeps room for 17, which a plan of many nodes would
 * hold three times per node.
 */
function numbers(length: number): number[] {
  return new Array<number>(length);
}

/**
 * `length` counters set to `value`: a plain array, a third the size of a typed array
 * when it is short, as most plans' are.
 */
function counters(length: number, value: number): number[] {
  return new Array<number>(length).fill(value);
}

/** A node or segment while its plan is made: its arrays are set once its edges are known. */
type Making<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Checks the nodes of a definition and plans them, in time linear in nodes and edges,
 * with no recursion. Every array is made at its final length and nodes without edges
 * share one empty array: the garbage collector copies whatever a large plan keeps.
 */
function buildPlan(pipelineId: string, defs: readonly NodeDefinition[], modulesAreLocal: boolean, moduleRoots: ModuleRoots | undefined): Plan {
  const fail = failer(pipelineId);
  const byId = new Map<string, number>();
  const nodes = new Array<Making<PlannedNode>>(defs.length);
  const dependsOn = new Array<readonly string[] | undefined>(defs.length);
  let isDag = false;
  for (let index = 0; index < defs.length; index++) {
    const checked = checkNode(defs[index]!, index, fail, modulesAreLocal, moduleRoots);
    const { id } = checked;
    // One lookup per node, not two: a twin is sought only once the map did not grow.
    const size = byId.size;
    byId.set(id, index);
    if (byId.size === size) {
      let twin = 0;
      while (nodes[twin]!.id !== id) twin++;
      fail(`Pipeline "${pipelineId}" has two nodes with the id "${id}" (nodes[${twin}] and nodes[${index}])`, id);
    }
    if (checked.dependsOn !== undefined) isDag = true;
    dependsOn[index] = checked.dependsOn;
    // Written out: object rest and spread are slow paths in V8, and this runs per node.
    const { module, exportName, timeoutMs, retry } = checked;
    const map = checked.map === undefined ? undefined : { concurrency: checked.map.concurrency, retry };
    nodes[index] = { id, index, module, exportName, timeoutMs, retry: map === undefined ? retry : NO_RETRY, map, deps: NONE, dependents: NONE, segment: -1 };
  }
  const count = nodes.length;

  // Edges: list order for a chain, `dependsOn` for a DAG. Dependents are counted first,
  // then listed in node order.
  const counts = counters(count, 0);
  if (!isDag) {
    for (let index = 1; index < count; index++) {
      nodes[index]!.deps = [index - 1];
      counts[index - 1] = 1;
    }
  } else {
    const lastListedBy = counters(count, -1);
    for (let index = 0; index < count; index++) {
      const ids = dependsOn[index];
      if (ids === undefined || ids.length === 0) continue;
      const node = nodes[index]!;
      const deps = numbers(ids.length);
      for (let k = 0; k < ids.length; k++) {
        const depId = ids[k]!;
        const dep = byId.get(depId);
        if (dep === undefined) fail(`Node "${node.id}" depends on "${depId}", which is not a node of pipeline "${pipelineId}"`, node.id);
        else if (lastListedBy[dep] === index) fail(`Node "${node.id}" lists the dependency "${depId}" twice`, node.id);
        else {
          lastListedBy[dep] = index;
          deps[k] = dep;
          counts[dep]!++;
        }
      }
      node.deps = deps;
    }
  }
  for (let index = 0; index < count; index++) {
    if (counts[index] !== 0) nodes[index]!.dependents = numbers(counts[index]!);
  }
  counts.fill(0);
  for (let index = 0; index < count; index++) {
    for (const dep of nodes[index]!.deps) (nodes[dep]!.dependents as number[])[counts[dep]!++] = index;
  }

  const { order, pending } = topologicalOrder(nodes);
  if (order.length < count) {
    const cycle = findCycle(nodes, pending).map((i) => nodes[i]!.id);
    // A long cycle is shown by its ends.
    const shown = cycle.length <= 12 ? cycle : [...cycle.slice(0, 6), `... (${cycle.length - 11} more)`, ...cycle.slice(-5)];
    fail(`Pipeline "${pipelineId}" has a dependency cycle: ${shown.join(' -> ')}`, cycle[0]);
  }

  // Segments: a node continues its only dependency's segment when it is that
  // dependency's only dependent. A map node is a segment of its own.
  const segments: Making<Segment>[] = [];
  for (let i = 0; i < count; i++) {
    const index = order[i]!;
    const node = nodes[index]!;
    const parent = node.deps.length === 1 ? nodes[node.deps[0]!]! : undefined;
    if (parent !== undefined && parent.dependents.length === 1 && node.map === undefined && parent.map === undefined) {
      node.segment = parent.segment;
      (segments[parent.segment]!.nodes as number[]).push(index);
    } else {
      node.segment = segments.length;
      segments.push({ index: segments.length, nodes: [index], deps: node.deps, dependents: NONE });
    }
  }
  // Segment dependents as node dependents: counted, then listed in segment order.
  const segmentCounts = counters(segments.length, 0);
  for (const segment of segments) {
    for (const dep of segment.deps) segmentCounts[nodes[dep]!.segment]!++;
  }
  for (const segment of segments) {
    if (segmentCounts[segment.index] !== 0) segment.dependents = numbers(segmentCounts[segment.index]!);
  }
  segmentCounts.fill(0);
  const roots: number[] = [];
  for (const segment of segments) {
    if (segment.deps.length === 0) roots.push(segment.index);
    for (const dep of segment.deps) {
      const at = nodes[dep]!.segment;
      (segments[at]!.dependents as number[])[segmentCounts[at]!++] = segment.index;
    }
  }
  const sinks: number[] = [];
  for (let index = 0; index < count; index++) {
    if (nodes[index]!.dependents.length === 0) sinks.push(index);
  }
  return { pipelineId, nodes, segments, sinks, roots };
}

/** Kahn's order; `pending[i] > 0` afterwards for the nodes on or behind a cycle. */
function topologicalOrder(nodes: readonly PlannedNode[]): { order: number[]; pending: number[] } {
  const pending = new Array<number>(nodes.length);
  const order: number[] = [];
  for (let index = 0; index < nodes.length; index++) {
    pending[index] = nodes[index]!.deps.length;
    if (pending[index] === 0) order.push(index);
  }
  for (let i = 0; i < order.length; i++) {
    for (const dependent of nodes[order[i]!]!.dependents) {
      if (--pending[dependent]! === 0) order.push(dependent);
    }
  }
  return { order, pending };
}

/**
 * A cycle, as node indexes in dependency order with the first repeated at the end.
 * Every node left with `pending > 0` has a dependency also left so: walking from one
 * such dependency to the next must come back to a node already seen.
 */
function findCycle(nodes: readonly PlannedNode[], pending: readonly number[]): number[] {
  const seenAt = counters(nodes.length, -1);
  const path: number[] = [];
  let at = pending.findIndex((count) => count > 0);
  while (seenAt[at] === -1) {
    seenAt[at] = path.length;
    path.push(at);
    at = nodes[at]!.deps.find((dep) => pending[dep]! > 0)!;
  }
  const cycle = path.slice(seenAt[at]).reverse();
  return [...cycle, cycle[0]!];
}
