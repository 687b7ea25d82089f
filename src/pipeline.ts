import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expectDuration, expectPlainObject, rejectUnknownKeys, show, type TimeoutOptions } from './config';
import { uncrossable } from './crossing';
import { PipelineDefinitionError } from './errors';
import type { TaskNode } from './protocol';

/** One node of a pipeline: a function exported by a module, run in a worker thread. */
export interface NodeDefinition<Params = unknown> {
  /** Unique within the pipeline; names the node in results and errors. */
  readonly id: string;
  /**
   * Absolute path or `file:` URL of a CommonJS or ESM module (a TypeScript one when the
   * process runs under ts-node). Resolved in the worker thread.
   */
  readonly module: string;
  /**
   * The named export to call.
   * @default the module's default export (or `module.exports` itself when it is a function)
   */
  readonly export?: string;
  /** Passed to the node as `ctx.params`. Must be cloneable between threads. */
  readonly params?: Params;
  /**
   * Ids of the nodes whose outputs this node takes. When no node of the pipeline has
   * `dependsOn`, the nodes form a chain in list order.
   */
  readonly dependsOn?: readonly string[];
  /** This node's own timeout, in place of the run's `nodeTimeoutMs`. */
  readonly timeoutMs?: number;
  /**
   * How many more attempts the node gets after a failure (its error, its thread
   * crashing under it, or a timeout with `retryTimeouts`). The pipeline timeout bounds
   * all attempts together.
   * @default 0
   */
  readonly retries?: number;
  /**
   * Wait before attempt n + 1: a random time up to `min(maxMs, baseMs * 2 ** (n - 1))`
   * (exponential backoff with full jitter).
   * @default { baseMs: 100, maxMs: 10000 }
   */
  readonly backoff?: { readonly baseMs?: number; readonly maxMs?: number };
  /**
   * Called on the main thread with the error of a failed attempt and its number (1 for
   * the first); return false to fail at once.
   * @default () => true
   */
  readonly retryOn?: (error: unknown, attempt: number) => boolean;
  /**
   * Retry after a node timeout too.
   * @default false
   */
  readonly retryTimeouts?: boolean;
}

/** The retry policy of a node, with defaults filled in. */
export interface RetryPolicy {
  readonly retries: number;
  readonly baseMs: number;
  readonly maxMs: number;
  readonly retryOn: ((error: unknown, attempt: number) => boolean) | undefined;
  readonly retryTimeouts: boolean;
}

export const NO_RETRY: RetryPolicy = Object.freeze({ retries: 0, baseMs: 100, maxMs: 10_000, retryOn: undefined, retryTimeouts: false });

/** What `executePipeline` takes. */
export interface PipelineRequest<Input = unknown> {
  /**
   * A label of the pipeline; many concurrent runs may share it.
   * @default 'pipeline'
   */
  readonly pipelineId?: string;
  readonly nodes: readonly NodeDefinition[];
  /** The input of the first node (of every node without dependencies, in a DAG). */
  readonly initialInput?: Input;
  /** Aborting it cancels the run with a `CancellationException` carrying `signal.reason`. */
  readonly signal?: AbortSignal;
  /** This run's deadlines, over the executor's, field by field. */
  readonly timeouts?: TimeoutOptions;
  /**
   * `true`: a failing node stops the run at once (its in-flight siblings are stopped)
   * and the run rejects with that node's error. `false`: branches that do not depend on
   * the failed node go on to the end, then the run rejects with a
   * `PipelineFailedException` holding every failed node's error.
   * @default true
   */
  readonly failFast?: boolean;
  /**
   * Called on the main thread with what nodes report through `ctx.progress(value)`:
   * at most one call per node every `progressIntervalMs`, with the latest value.
   */
  readonly onProgress?: (event: ProgressEvent) => void;
}

/** A node's `ctx.progress(value)`, as it reaches the main thread. */
export interface ProgressEvent {
  readonly runId: string;
  readonly pipelineId: string;
  readonly nodeId: string;
  readonly value: unknown;
}

export interface PlannedNode {
  readonly id: string;
  readonly index: number;
  readonly module: string;
  readonly exportName: string | undefined;
  readonly timeoutMs: number | undefined;
  readonly retry: RetryPolicy;
  readonly deps: readonly number[];
  readonly dependents: number[];
  segment: number;
}

/**
 * A run of nodes that execute one after another inside one dispatch: each node but
 * the last has exactly one dependent, the next one, which has no other dependency.
 */
export interface Segment {
  readonly index: number;
  /** Node indexes, in execution order. */
  readonly nodes: number[];
  /** Node indexes whose outputs form the first node's input. */
  readonly deps: readonly number[];
  /** Segments that wait on this one's last node. */
  readonly dependents: number[];
  /** What dispatching it needs every time, made once per plan (plans are shared by runs). */
  cache?: { readonly tasks?: readonly TaskNode[]; readonly id?: number; readonly ones?: readonly number[] };
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

const REQUEST_KEYS = ['pipelineId', 'nodes', 'initialInput', 'signal', 'timeouts', 'failFast', 'onProgress'];
const NODE_KEYS = ['id', 'module', 'export', 'params', 'dependsOn', 'timeoutMs', 'retries', 'backoff', 'retryOn', 'retryTimeouts'];

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
 * Checks a pipeline request and plans its execution. `modulesAreLocal`: this process's
 * threads load the node modules, so their files must exist here (another process may
 * load them elsewhere, as with a remote backend: then only their form is checked).
 * @throws {PipelineDefinitionError} naming the culprit, before any node runs.
 */
export function planPipeline(request: PipelineRequest, modulesAreLocal = true): PlannedRequest {
  const pipelineId = checkRequest(request);
  const defs = request.nodes;
  const shape = shapeKey(pipelineId, defs);
  // A plan whose module files were not looked for is not one whose files were.
  const key = shape === undefined ? undefined : modulesAreLocal ? shape : `remote:${shape}`;
  let plan = key === undefined ? undefined : plans.get(key);
  if (plan === undefined) {
    plan = buildPlan(pipelineId, defs, modulesAreLocal);
    if (key !== undefined) {
      if (plans.size >= MAX_PLANS) plans.delete(plans.keys().next().value!);
      plans.set(key, plan);
    }
  }
  const fail = (message: string, nodeId?: string, cause?: unknown): never => {
    throw new PipelineDefinitionError(message, { pipelineId, nodeId, cause });
  };
  const params = new Array<unknown>(defs.length);
  for (let i = 0; i < defs.length; i++) {
    const value = defs[i]!.params;
    if (value !== undefined) checkParams(value, defs[i]!.id, fail);
    params[i] = value;
  }
  if (request.initialInput !== undefined) {
    const problem = uncrossable(request.initialInput);
    if (problem !== undefined) {
      const takers = plan.roots.map((root) => plan.nodes[plan.segments[root]!.nodes[0]!]!.id);
      fail(`The input of pipeline "${pipelineId}" (for ${takers.map((id) => `"${id}"`).join(', ')}) cannot cross threads: it is ${problem}`, takers[0]);
    }
  }
  return { plan, params };
}

/** Checks what a request holds besides its nodes; returns its pipeline id. */
function checkRequest(request: PipelineRequest): string {
  let pipelineId = 'pipeline';
  const fail = (message: string, cause?: unknown): never => {
    throw new PipelineDefinitionError(message, { pipelineId, cause });
  };
  try {
    expectPlainObject(request, 'request');
    rejectUnknownKeys(request, REQUEST_KEYS, 'request');
  } catch (error) {
    return fail((error as Error).message, error);
  }
  if (request.pipelineId !== undefined) {
    if (typeof request.pipelineId !== 'string' || request.pipelineId === '') {
      fail(`Expected \`pipelineId\` to be a non-empty string, got ${show(request.pipelineId)}`);
    }
    pipelineId = request.pipelineId;
  }
  const defs = request.nodes;
  if (!Array.isArray(defs)) fail(`Expected \`nodes\` to be an array, got ${show(defs)}`);
  if (defs.length === 0) fail(`Pipeline "${pipelineId}" has no nodes`);
  if (request.signal !== undefined && !(request.signal instanceof AbortSignal)) {
    fail(`Expected \`signal\` to be an AbortSignal, got ${show(request.signal)}`);
  }
  if (request.failFast !== undefined && typeof request.failFast !== 'boolean') {
    fail(`Expected \`failFast\` to be a boolean, got ${show(request.failFast)}`);
  }
  if (request.onProgress !== undefined && typeof request.onProgress !== 'function') {
    fail(`Expected \`onProgress\` to be a function, got ${show(request.onProgress)}`);
  }
  return pipelineId;
}

const functionIds = new WeakMap<object, number>();
let nextFunctionId = 0;

/**
 * A string that two definitions share only if they plan alike (everything but
 * `params`), or undefined for a definition too unusual to key (it is planned afresh).
 */
function shapeKey(pipelineId: string, defs: readonly NodeDefinition[]): string | undefined {
  let key = `${pipelineId.length}:${pipelineId}`;
  for (const def of defs) {
    if (def === null || typeof def !== 'object' || Object.getPrototypeOf(def) !== Object.prototype) return undefined;
    key += '|';
    for (const name in def) {
      if (name === 'params') continue;
      const value: unknown = (def as unknown as Record<string, unknown>)[name];
      key += `;${name}=`;
      if (typeof value === 'string') key += `s${value.length}:${value}`;
      else if (typeof value === 'number' || typeof value === 'boolean' || value === undefined) key += `${typeof value}:${String(value)}`;
      else if (typeof value === 'function') {
        let id = functionIds.get(value);
        if (id === undefined) functionIds.set(value, (id = ++nextFunctionId));
        key += `f${id}`;
      } else if (Array.isArray(value)) {
        key += `a${value.length}`;
        for (const item of value) {
          if (typeof item !== 'string') return undefined;
          key += `,${item.length}:${item}`;
        }
      } else return undefined;
    }
  }
  return key;
}

/** Validates the nodes of a definition and plans them. */
function buildPlan(pipelineId: string, defs: readonly NodeDefinition[], modulesAreLocal: boolean): Plan {
  const fail = (message: string, nodeId?: string, cause?: unknown): never => {
    throw new PipelineDefinitionError(message, { pipelineId, nodeId, cause });
  };
  const byId = new Map<string, number>();
  const nodes: PlannedNode[] = [];
  let isDag = false;
  defs.forEach((def: NodeDefinition, index: number) => {
    const where = `nodes[${index}]`;
    if (def === null || typeof def !== 'object' || Array.isArray(def)) {
      fail(`Expected \`${where}\` to be a node definition object, got ${show(def)}`);
    }
    const { id } = def;
    if (typeof id !== 'string' || id === '') fail(`Expected \`${where}.id\` to be a non-empty string, got ${show(id)}`);
    for (const key of Object.keys(def)) {
      if (!NODE_KEYS.includes(key)) fail(`Node "${id}" has an unknown key \`${key}\`; known keys are: ${NODE_KEYS.join(', ')}`, id);
    }
    if (byId.has(id)) fail(`Pipeline "${pipelineId}" has two nodes with the id "${id}" (nodes[${byId.get(id)}] and ${where})`, id);
    byId.set(id, index);
    checkModule(def.module, id, fail, modulesAreLocal);
    if (def.export !== undefined && (typeof def.export !== 'string' || def.export === '')) {
      fail(`Expected \`export\` of node "${id}" to be a non-empty string, got ${show(def.export)}`, id);
    }
    if (def.timeoutMs !== undefined) {
      try {
        expectDuration(def.timeoutMs, `timeoutMs`);
      } catch (error) {
        fail(`Node "${id}": ${(error as Error).message}`, id, error);
      }
    }
    const retry = retryPolicy(def, id, fail);
    if (def.dependsOn !== undefined) {
      isDag = true;
      if (!Array.isArray(def.dependsOn) || def.dependsOn.some((dep) => typeof dep !== 'string')) {
        fail(`Expected \`dependsOn\` of node "${id}" to be an array of node ids, got ${show(def.dependsOn)}`, id);
      }
    }
    nodes.push({
      id,
      index,
      module: def.module,
      exportName: def.export,
      timeoutMs: def.timeoutMs,
      retry,
      deps: [],
      dependents: [],
      segment: -1,
    });
  });

  // Edges: list order for a chain, `dependsOn` for a DAG.
  nodes.forEach((node, index) => {
    const deps = node.deps as number[];
    if (!isDag) {
      if (index > 0) deps.push(index - 1);
    } else {
      for (const depId of defs[index]?.dependsOn ?? []) {
        const dep = byId.get(depId);
        if (dep === undefined) fail(`Node "${node.id}" depends on "${depId}", which is not a node of pipeline "${pipelineId}"`, node.id);
        else if (deps.includes(dep)) fail(`Node "${node.id}" lists the dependency "${depId}" twice`, node.id);
        else deps.push(dep);
      }
    }
    for (const dep of deps) nodes[dep]?.dependents.push(index);
  });

  const order = topologicalOrder(nodes);
  if (order.length < nodes.length) {
    const cycle = findCycle(nodes);
    fail(`Pipeline "${pipelineId}" has a dependency cycle: ${cycle.map((i) => nodes[i]?.id).join(' -> ')}`, nodes[cycle[0] ?? 0]?.id);
  }

  // Segments: a node continues its only dependency's segment when it is that
  // dependency's only dependent.
  const segments: Segment[] = [];
  for (const index of order) {
    const node = nodes[index]!;
    const parent = node.deps.length === 1 ? nodes[node.deps[0]!]! : undefined;
    if (parent !== undefined && parent.dependents.length === 1) {
      node.segment = parent.segment;
      segments[parent.segment]!.nodes.push(index);
    } else {
      node.segment = segments.length;
      segments.push({ index: segments.length, nodes: [index], deps: node.deps, dependents: [] });
    }
  }
  for (const segment of segments) {
    for (const dep of segment.deps) segments[nodes[dep]!.segment]!.dependents.push(segment.index);
  }

  const roots = segments.filter((segment) => segment.deps.length === 0).map((segment) => segment.index);
  return {
    pipelineId,
    nodes,
    segments,
    sinks: nodes.filter((node) => node.dependents.length === 0).map((node) => node.index),
    roots,
  };
}

function topologicalOrder(nodes: readonly PlannedNode[]): number[] {
  const pending = nodes.map((node) => node.deps.length);
  const order = nodes.filter((node) => node.deps.length === 0).map((node) => node.index);
  for (let i = 0; i < order.length; i++) {
    for (const dependent of nodes[order[i]!]!.dependents) {
      if (--pending[dependent]! === 0) order.push(dependent);
    }
  }
  return order;
}

/** A cycle, as node indexes with the first repeated at the end. */
function findCycle(nodes: readonly PlannedNode[]): number[] {
  const state = new Uint8Array(nodes.length); // 0 new, 1 on the path, 2 done
  const path: number[] = [];
  const visit = (index: number): number[] | undefined => {
    state[index] = 1;
    path.push(index);
    for (const dep of nodes[index]!.deps) {
      if (state[dep] === 1) return [...path.slice(path.indexOf(dep)), dep];
      if (state[dep] === 0) {
        const found = visit(dep);
        if (found) return found;
      }
    }
    path.pop();
    state[index] = 2;
    return undefined;
  };
  for (const node of nodes) {
    if (state[node.index] === 0) {
      const found = visit(node.index);
      if (found) return found.reverse();
    }
  }
  return [];
}

type Fail = (message: string, nodeId?: string, cause?: unknown) => never;

function retryPolicy(def: NodeDefinition, id: string, fail: Fail): RetryPolicy {
  const { retries, backoff, retryOn, retryTimeouts } = def;
  if (retries === undefined && backoff === undefined && retryOn === undefined && retryTimeouts === undefined) return NO_RETRY;
  if (retries !== undefined && (typeof retries !== 'number' || !Number.isInteger(retries) || retries < 0)) {
    fail(`Expected \`retries\` of node "${id}" to be a non-negative integer, got ${show(retries)}`, id);
  }
  if (retryOn !== undefined && typeof retryOn !== 'function') {
    fail(`Expected \`retryOn\` of node "${id}" to be a function, got ${show(retryOn)}`, id);
  }
  if (retryTimeouts !== undefined && typeof retryTimeouts !== 'boolean') {
    fail(`Expected \`retryTimeouts\` of node "${id}" to be a boolean, got ${show(retryTimeouts)}`, id);
  }
  let { baseMs, maxMs } = NO_RETRY;
  if (backoff !== undefined) {
    try {
      expectPlainObject(backoff, 'backoff');
      rejectUnknownKeys(backoff, ['baseMs', 'maxMs'], 'backoff');
      if (backoff.baseMs !== undefined) expectDuration(backoff.baseMs, 'backoff.baseMs');
      if (backoff.maxMs !== undefined) expectDuration(backoff.maxMs, 'backoff.maxMs');
    } catch (error) {
      fail(`Node "${id}": ${(error as Error).message}`, id, error);
    }
    baseMs = backoff.baseMs ?? baseMs;
    maxMs = backoff.maxMs ?? maxMs;
  }
  return { retries: retries ?? 0, baseMs, maxMs, retryOn, retryTimeouts: retryTimeouts ?? false };
}

const knownModules = new Set<string>();

function checkModule(module: unknown, id: string, fail: Fail, isHere: boolean): void {
  if (typeof module !== 'string' || module === '') {
    fail(`Expected \`module\` of node "${id}" to be an absolute path or a file: URL, got ${show(module)}`, id);
  }
  if (knownModules.has(module)) return;
  let path: string;
  if (module.startsWith('file:')) {
    try {
      path = fileURLToPath(module);
    } catch (error) {
      return fail(`Node "${id}" has an invalid file: URL as its module: ${module}`, id, error);
    }
  } else if (isAbsolute(module)) {
    path = module;
  } else {
    return fail(`Node "${id}" names its module by a relative path or a package name ("${module}"); give an absolute path or a file: URL`, id);
  }
  if (!isHere) return;
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (error) {
    return fail(`Module of node "${id}" does not exist: ${path}`, id, error);
  }
  if (!isFile) fail(`Module of node "${id}" is not a file: ${path}`, id);
  knownModules.add(module);
}

const cloneableParams = new WeakSet<object>();

function checkParams(params: unknown, id: string, fail: Fail): void {
  if (params === undefined || params === null) return;
  if (typeof params === 'function' || typeof params === 'symbol') {
    fail(`\`params\` of node "${id}" cannot be sent to a worker thread: got ${show(params)}`, id);
  }
  if (typeof params !== 'object' || cloneableParams.has(params)) return;
  try {
    structuredClone(params);
  } catch (error) {
    fail(`\`params\` of node "${id}" cannot be sent to a worker thread: ${(error as Error).message}`, id, error);
  }
  cloneableParams.add(params);
}
