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
const NODE_KEY_SET = new Set(NODE_KEYS);

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

/**
 * Checks `nodes[index]` on its own (not its edges). `roots`: the executor's `moduleRoots`,
 * when its own threads load the modules.
 */
export function checkNode(def: NodeDefinition, index: number, fail: Fail, modulesAreLocal: boolean, roots?: ModuleRoots): CheckedNode {
  if (def === null || typeof def !== 'object' || Array.isArray(def)) {
    fail(`Expected \`nodes[${index}]\` to be a node definition object, got ${show(def)}`);
  }
  const { id } = def;
  if (typeof id !== 'string' || id === '') fail(`Expected \`nodes[${index}].id\` to be a non-empty string, got ${show(id)}`);
  for (const key in def) {
    if (!NODE_KEY_SET.has(key) && Object.hasOwn(def, key)) {
      fail(`Node "${id}" has an unknown key \`${key}\`; known keys are: ${NODE_KEYS.join(', ')}`, id);
    }
  }
  const module = checkModule(def.module, id, fail, modulesAreLocal, roots);
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
  if (def.dependsOn !== undefined && (!Array.isArray(def.dependsOn) || def.dependsOn.some((dep) => typeof dep !== 'string'))) {
    fail(`Expected \`dependsOn\` of node "${id}" to be an array of node ids, got ${show(def.dependsOn)}`, id);
  }
  const map = mapOptions(def.map, id, fail);
  return { id, module, exportName: def.export, timeoutMs: def.timeoutMs, retry, dependsOn: def.dependsOn, map };
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

function retryPolicy(def: NodeDefinition, id: string, fail: Fail): RetryPolicy {
  if (def.retries === undefined && def.backoff === undefined && def.retryOn === undefined && def.retryTimeouts === undefined) return NO_RETRY;
  const { retries, backoff, retryOn, retryTimeouts } = def;
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
