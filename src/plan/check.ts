/**
 * Checks of a pipeline request, before anything runs: each mistake is a
 * `PipelineDefinitionError` that names the node and what is wrong.
 */
import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expectDuration, expectPlainObject, rejectUnknownKeys } from '../options';
import { show } from '../shared/show';
import { PipelineDefinitionError } from '../errors';
import type { ModuleRoots } from './module-roots';
import type { NodeDefinition, PipelineRequest } from './definition';
import { NO_RETRY, type RetryPolicy } from './retry';

export type Fail = (message: string, nodeId?: string, cause?: unknown) => never;

const REQUEST_KEYS = ['pipelineId', 'nodes', 'initialInput', 'signal', 'timeouts', 'failFast', 'onProgress', 'priority', 'concurrencyKey', 'dedupeKey'];
const NODE_KEYS = ['id', 'module', 'export', 'params', 'dependsOn', 'timeoutMs', 'retries', 'backoff', 'retryOn', 'retryTimeouts', 'map'];

/** A failure of pipeline `pipelineId`'s definition. */
export function failer(pipelineId: string): Fail {
  return (message, nodeId, cause) => {
    throw new PipelineDefinitionError(message, { pipelineId, nodeId, cause });
  };
}

/** Checks what a request holds besides its nodes; returns its pipeline id. */
export function checkRequest(request: PipelineRequest): string {
  let pipelineId = 'pipeline';
  const fail = (message: string, cause?: unknown): never => failer(pipelineId)(message, undefined, cause);
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
  if (request.priority !== undefined && (typeof request.priority !== 'number' || !Number.isFinite(request.priority))) {
    fail(`Expected \`priority\` to be a finite number, got ${show(request.priority)}`);
  }
  for (const key of ['concurrencyKey', 'dedupeKey'] as const) {
    const value = request[key];
    if (value !== undefined && (typeof value !== 'string' || value === '')) fail(`Expected \`${key}\` to be a non-empty string, got ${show(value)}`);
  }
  return pipelineId;
}

/** What the plan keeps of a node definition, once checked. */
export interface CheckedNode {
  readonly id: string;
  readonly module: string;
  readonly exportName: string | undefined;
  readonly timeoutMs: number | undefined;
  readonly retry: RetryPolicy;
  /** `dependsOn`, when given. */
  readonly dependsOn: readonly string[] | undefined;
  /** For a map node: how many of a run's elements may be in flight at once. */
  readonly map: { readonly concurrency: number } | undefined;
}

/** Made once: a function written inline in `checkNode` would be made per node. */
const isNotString = (value: unknown): boolean => typeof value !== 'string';

/** A field of a definition that `checkNode`'s pass over its keys did not come across. */
const UNSEEN: unique symbol = Symbol('unseen');

/**
 * Checks `nodes[index]` on its own (not its edges). `roots`: the executor's `moduleRoots`,
 * when its own threads load the modules.
 */
export function checkNode(def: NodeDefinition, index: number, fail: Fail, modulesAreLocal: boolean, roots?: ModuleRoots): CheckedNode {
  if (def === null || typeof def !== 'object' || Array.isArray(def)) {
    fail(`Expected \`nodes[${index}]\` to be a node definition object, got ${show(def)}`);
  }
  // The fields are read in the one pass over the keys that looks for unknown ones, where
  // V8 reads each by its position in the object. Read by name, each would be a lookup of
  // some 100 ns on an object whose hidden class is its own, as V8 11 (Node 20) gives
  // every object made as `{ ...base, dependsOn }`, and most fields are absent. A field
  // the pass did not come across is not enumerable or, most often, absent: asking
  // whether it is there is cheap where reading an absent field is not.
  const fields = def as unknown as Record<string, unknown>;
  let id: unknown = UNSEEN;
  let module: unknown = UNSEEN;
  let exportName: unknown = UNSEEN;
  let dependsOn: unknown = UNSEEN;
  let timeoutMs: unknown = UNSEEN;
  let retries: unknown = UNSEEN;
  let backoff: unknown = UNSEEN;
  let retryOn: unknown = UNSEEN;
  let retryTimeouts: unknown = UNSEEN;
  let map: unknown = UNSEEN;
  let unknownKey: string | undefined;
  for (const key in fields) {
    switch (key) {
      case 'id':
        id = fields[key];
        break;
      case 'module':
        module = fields[key];
        break;
      case 'export':
        exportName = fields[key];
        break;
      case 'params':
        break;
      case 'dependsOn':
        dependsOn = fields[key];
        break;
      case 'timeoutMs':
        timeoutMs = fields[key];
        break;
      case 'retries':
        retries = fields[key];
        break;
      case 'backoff':
        backoff = fields[key];
        break;
      case 'retryOn':
        retryOn = fields[key];
        break;
      case 'retryTimeouts':
        retryTimeouts = fields[key];
        break;
      case 'map':
        map = fields[key];
        break;
      default:
        if (unknownKey === undefined && Object.hasOwn(def, key)) unknownKey = key;
    }
  }
  if (id === UNSEEN) id = 'id' in def ? def.id : undefined;
  if (module === UNSEEN) module = 'module' in def ? def.module : undefined;
  if (exportName === UNSEEN) exportName = 'export' in def ? def.export : undefined;
  if (dependsOn === UNSEEN) dependsOn = 'dependsOn' in def ? def.dependsOn : undefined;
  if (timeoutMs === UNSEEN) timeoutMs = 'timeoutMs' in def ? def.timeoutMs : undefined;
  if (retries === UNSEEN) retries = 'retries' in def ? def.retries : undefined;
  if (backoff === UNSEEN) backoff = 'backoff' in def ? def.backoff : undefined;
  if (retryOn === UNSEEN) retryOn = 'retryOn' in def ? def.retryOn : undefined;
  if (retryTimeouts === UNSEEN) retryTimeouts = 'retryTimeouts' in def ? def.retryTimeouts : undefined;
  if (map === UNSEEN) map = 'map' in def ? def.map : undefined;
  if (typeof id !== 'string' || id === '') fail(`Expected \`nodes[${index}].id\` to be a non-empty string, got ${show(id)}`);
  if (unknownKey !== undefined) fail(`Node "${id}" has an unknown key \`${unknownKey}\`; known keys are: ${NODE_KEYS.join(', ')}`, id);
  const checkedModule = checkModule(module, id, fail, modulesAreLocal, roots);
  if (exportName !== undefined && (typeof exportName !== 'string' || exportName === '')) {
    fail(`Expected \`export\` of node "${id}" to be a non-empty string, got ${show(exportName)}`, id);
  }
  if (timeoutMs !== undefined) {
    try {
      expectDuration(timeoutMs, `timeoutMs`);
    } catch (error) {
      fail(`Node "${id}": ${(error as Error).message}`, id, error);
    }
  }
  const retry = retryPolicy(retries, backoff, retryOn, retryTimeouts, id, fail);
  if (dependsOn !== undefined && (!Array.isArray(dependsOn) || dependsOn.some(isNotString))) {
    fail(`Expected \`dependsOn\` of node "${id}" to be an array of node ids, got ${show(dependsOn)}`, id);
  }
  const mapped = mapOptions(map, id, fail);
  return {
    id,
    module: checkedModule,
    exportName: exportName as string | undefined,
    timeoutMs: timeoutMs as number | undefined,
    retry,
    dependsOn: dependsOn as readonly string[] | undefined,
    map: mapped,
  };
}

/** `map`: `true`, `false` or `{ concurrency }`, a positive integer or `Infinity`. */
function mapOptions(map: unknown, id: string, fail: Fail): { readonly concurrency: number } | undefined {
  if (map === undefined || map === false) return undefined;
  if (map === true) return { concurrency: Infinity };
  if (map === null || typeof map !== 'object' || Object.getPrototypeOf(map) !== Object.prototype) {
    return fail(`Expected \`map\` of node "${id}" to be a boolean or { concurrency }, got ${show(map)}`, id);
  }
  for (const key of Object.keys(map)) {
    if (key !== 'concurrency') fail(`\`map\` of node "${id}" has an unknown key \`${key}\`; the known key is: concurrency`, id);
  }
  const { concurrency } = map as { concurrency?: unknown };
  if (concurrency === undefined) return { concurrency: Infinity };
  if (typeof concurrency !== 'number' || !(concurrency === Infinity || (Number.isInteger(concurrency) && concurrency >= 1))) {
    fail(`Expected \`map.concurrency\` of node "${id}" to be a positive integer or Infinity, got ${show(concurrency)}`, id);
  }
  return { concurrency };
}

function retryPolicy(retries: unknown, backoff: unknown, retryOn: unknown, retryTimeouts: unknown, id: string, fail: Fail): RetryPolicy {
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
    const given = backoff as NonNullable<NodeDefinition['backoff']>;
    baseMs = given.baseMs ?? baseMs;
    maxMs = given.maxMs ?? maxMs;
  }
  return {
    retries: (retries as number | undefined) ?? 0,
    baseMs,
    maxMs,
    retryOn: retryOn as RetryPolicy['retryOn'],
    retryTimeouts: (retryTimeouts as boolean | undefined) ?? false,
  };
}

/**
 * Modules found to be files, keyed by the module roots they were checked against too:
 * one allowed under one set of roots is not thereby allowed under another.
 */
const knownModules = new Set<string>();

/** The module as the threads get it: a string, a `URL` by its `href`. */
export function moduleName(module: unknown): unknown {
  return module instanceof URL ? module.href : module;
}

function checkModule(given: unknown, id: string, fail: Fail, isHere: boolean, roots: ModuleRoots | undefined): string {
  const module = moduleName(given);
  if (typeof module !== 'string' || module === '') {
    fail(`Expected \`module\` of node "${id}" to be an absolute path or a file: URL, got ${show(given)}`, id);
  }
  const key = roots === undefined ? module : `${roots.key}\n${module}`;
  if (knownModules.has(key)) return module;
  let path: string;
  if (module.startsWith('file:')) {
    try {
      path = fileURLToPath(module);
    } catch (error) {
      return fail(`Node "${id}" has an invalid file: URL as its module: ${module}`, id, error);
    }
  } else if (given instanceof URL) {
    return fail(`Node "${id}" names its module by a ${given.protocol} URL (${module}); give an absolute path or a file: URL`, id);
  } else if (isAbsolute(module)) {
    path = module;
  } else {
    return fail(`Node "${id}" names its module by a relative path or a package name ("${module}"); give an absolute path or a file: URL`, id);
  }
  if (!isHere) return module;
  if (roots !== undefined) {
    const refusal = roots.refusal(module);
    if (refusal !== undefined) fail(`Module of node "${id}" (${module}) is refused: ${refusal}`, id);
  }
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (error) {
    return fail(`Module of node "${id}" does not exist: ${path}`, id, error);
  }
  if (!isFile) fail(`Module of node "${id}" is not a file: ${path}`, id);
  // Bounded: definitions built at run time may name ever new files.
  if (knownModules.size >= 4096) knownModules.clear();
  knownModules.add(key);
  return module;
}

const cloneableParams = new WeakSet<object>();

export function checkParams(params: unknown, id: string, fail: Fail): void {
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
