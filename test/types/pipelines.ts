// Checked by `npm run typecheck` (tsc --noEmit): types flow from typed nodes to the
// run's result, and each mistake marked @ts-expect-error must not compile.
import {
  PipelineExecutor,
  bullmqBackend,
  defineNode,
  nodeModule,
  type NodeDefinition,
  type PipelineHandle,
  type TypedNode,
} from '../../src/index';
import type * as ops from './nodes';

declare const executor: PipelineExecutor;

/** `true` only when A and B are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** `expectType<T>()(value, true)` compiles only when `value` is of type T exactly. */
function expectType<Expected>() {
  return <Actual>(actual: Actual, check: Equal<Actual, Expected>): void => void [actual, check];
}

const module = '/abs/nodes.js';
const url = new URL('file:///abs/nodes.js');

// --- defineNode: a node from its function's type.
const parse = defineNode<typeof ops.parse>({ id: 'parse', module, export: 'parse' });
const sum = defineNode<typeof ops.sum>({ id: 'sum', module: url, export: 'sum' });
expectType<TypedNode<string, string, number[], unknown, undefined>>()(parse, true);
// An async node's output is its promise's value; its params are what it reads.
const hash = defineNode<typeof ops.hash>({ id: 'hash', module, export: 'hash', params: { rounds: 3 } });
expectType<TypedNode<string, unknown, string, { rounds: number }, undefined>>()(hash, true);
// Params the function may go without may be left out.
defineNode<typeof ops.label>({ id: 'label', module, export: 'label' });
defineNode<typeof ops.label>({ id: 'label', module, export: 'label', params: { prefix: '#' } });
// @ts-expect-error: params of the wrong shape (rounds is a number).
defineNode<typeof ops.hash>({ id: 'hash', module, export: 'hash', params: { rounds: '3' } });
// @ts-expect-error: params the function reads are missing.
defineNode<typeof ops.hash>({ id: 'hash', module, export: 'hash' });
// @ts-expect-error: a key no node definition has.
defineNode<typeof ops.sum>({ id: 'sum', module, export: 'sum', retry: 2 });
// @ts-expect-error: dependencies are for nodeModule, which types them.
defineNode<typeof ops.sum>({ id: 'sum', module, export: 'sum', dependsOn: ['parse'] });
// @ts-expect-error: a module is a string or a URL.
defineNode<typeof ops.sum>({ id: 'sum', module: 42, export: 'sum' });

export async function chains(): Promise<void> {
  // The last node's output, with no annotation.
  const total = await executor.executePipeline({ nodes: [parse, sum], initialInput: '1,2' });
  expectType<number>()(total, true);
  // @ts-expect-error: the helper itself fails on another type.
  expectType<number | string>()(total, true);
  const handle = executor.startPipeline({ nodes: [parse, sum], initialInput: '1,2', pipelineId: 'sum', failFast: false });
  expectType<PipelineHandle<number>>()(handle, true);
  const labelled = await executor.executePipeline({
    nodes: [parse, sum, defineNode<typeof ops.label>({ id: 'label', module, export: 'label' })],
    initialInput: '1',
  });
  expectType<string>()(labelled, true);

  // @ts-expect-error: sum's output (a number) is not parse's input (a string).
  await executor.executePipeline({ nodes: [sum, parse], initialInput: [1, 2] });
  // @ts-expect-error: an initialInput the first node does not take.
  await executor.executePipeline({ nodes: [parse, sum], initialInput: 12 });
  // @ts-expect-error: the first node needs an input.
  await executor.executePipeline({ nodes: [parse, sum] });
  // A first node that takes anything needs none.
  const any = await executor.executePipeline({ nodes: [defineNode<typeof ops.anything>({ id: 'a', module })] });
  expectType<boolean>()(any, true);

  // Ten nodes and more: each checked against the previous one.
  const n = (id: string): TypedNode<string, number, number, unknown, undefined> => defineNode<typeof ops.increment>({ id, module, export: 'increment' });
  const twelve = await executor.executePipeline({
    nodes: [parse, sum, n('1'), n('2'), n('3'), n('4'), n('5'), n('6'), n('7'), n('8'), n('9'), n('10')],
    initialInput: '1',
  });
  expectType<number>()(twelve, true);
  await executor.executePipeline({
    // @ts-expect-error: the eleventh node's input is a string; the tenth's output a number.
    nodes: [parse, sum, n('1'), n('2'), n('3'), n('4'), n('5'), n('6'), n('7'), n('8'), parse],
    initialInput: '1',
  });
}

export async function dags(): Promise<void> {
  const nodes = nodeModule<typeof ops>(url);
  const p = nodes.node('parse');
  const left = nodes.node('sum', { id: 'left', dependsOn: ['parse'] });
  const right = nodes.node('hash', { id: 'right', dependsOn: ['parse'], params: { rounds: 1 } });
  expectType<TypedNode<'left', readonly number[], number, unknown, readonly ['parse']>>()(left, true);

  // Several sinks: { [sinkId]: output }.
  const both = await executor.executePipeline({ nodes: [p, left, right], initialInput: '1,2' });
  expectType<{ left: number; right: string }>()(both, true);
  // A node with several dependencies takes { [depId]: output }; one sink, its output.
  const joined = await executor.executePipeline({
    nodes: [p, left, right, nodes.node('join', { dependsOn: ['left', 'right'] })],
    initialInput: '1,2',
  });
  expectType<string>()(joined, true);
  const started = executor.startPipeline({ nodes: [p, left, right], initialInput: '3' });
  expectType<Promise<{ left: number; right: string }>>()(started.result, true);

  await executor.executePipeline({
    // @ts-expect-error: "nope" is not a node of the pipeline.
    nodes: [p, left, right, nodes.node('join', { dependsOn: ['left', 'nope'] })],
    initialInput: '1,2',
  });
  await executor.executePipeline({
    // @ts-expect-error: join takes { left: number, right: string }, not { left, parse }.
    nodes: [p, left, right, nodes.node('join', { dependsOn: ['left', 'parse'] })],
    initialInput: '1,2',
  });
  await executor.executePipeline({
    // @ts-expect-error: one dependency: sum takes parse's output itself, not { parse }... but label takes a number.
    nodes: [p, nodes.node('label', { dependsOn: ['parse'] })],
    initialInput: '1,2',
  });
  // @ts-expect-error: the root (parse) takes a string.
  await executor.executePipeline({ nodes: [p, left, right], initialInput: [1, 2] });
  // Two roots: the input must suit both.
  const twoRoots = [p, nodes.node('anything'), nodes.node('pair', { dependsOn: ['parse', 'anything'] })] as const;
  const pair = await executor.executePipeline({ nodes: twoRoots, initialInput: 'x' });
  expectType<[number[], boolean]>()(pair, true);
  // @ts-expect-error: parse, a root, does not take a number.
  await executor.executePipeline({ nodes: twoRoots, initialInput: 1 });

  // @ts-expect-error: not an export of the module.
  nodes.node('parese');
  // @ts-expect-error: an export that is not a function.
  nodes.node('notANode');
  // @ts-expect-error: hash reads params: they are required.
  nodes.node('hash', { id: 'right', dependsOn: ['parse'] });
  // @ts-expect-error: and so are its options.
  nodes.node('hash');
  // @ts-expect-error: params of the wrong shape.
  nodes.node('hash', { params: { rounds: 'one' } });
  // @ts-expect-error: a key no node definition has.
  nodes.node('sum', { id: 'total', retry: 2 });
  // @ts-expect-error: a module is given once, to nodeModule.
  nodes.node('sum', { module: url });

  // defineNode in a DAG, with its id given as a type argument.
  const root = defineNode<typeof ops.parse, 'root'>({ id: 'root', module, export: 'parse' });
  const fromRoot = await executor.executePipeline({ nodes: [root, nodes.node('sum', { dependsOn: ['root'] })], initialInput: '1' });
  expectType<number>()(fromRoot, true);
}

export async function plain(): Promise<void> {
  // Plain definitions work as before: an unknown result, or the one asked for.
  const result = await executor.executePipeline({ nodes: [{ id: 'a', module }], initialInput: 1 });
  expectType<unknown>()(result, true);
  const asked = await executor.executePipeline<number>({ nodes: [{ id: 'a', module: url, dependsOn: [] }] });
  expectType<number>()(asked, true);
  const handle = executor.startPipeline<string, number>({ nodes: [{ id: 'a', module }], initialInput: 1 });
  expectType<PipelineHandle<string>>()(handle, true);
  // Built at run time, typed nodes among them: no checks, an unknown result.
  const built: NodeDefinition[] = [parse, { id: 'b', module }];
  const fromBuilt = await executor.executePipeline({ nodes: built, initialInput: 1 });
  expectType<unknown>()(fromBuilt, true);
  // A typed list that is not a tuple: unchecked too.
  const list = [parse, sum];
  const fromList = await executor.executePipeline({ nodes: list, initialInput: 1 });
  expectType<unknown>()(fromList, true);
  // @ts-expect-error: a literal list mixing typed and plain nodes: annotate it as NodeDefinition[].
  await executor.executePipeline({ nodes: [parse, { id: 'b', module }], initialInput: '1' });
}

export async function scheduling(): Promise<void> {
  // A run's place among waiting work: a priority, a key, a dedupe key.
  await executor.executePipeline({ nodes: [{ id: 'a', module }], priority: 10, concurrencyKey: 'tenant-a', dedupeKey: 'a:1' });
  // @ts-expect-error: a priority is a number.
  await executor.executePipeline({ nodes: [{ id: 'a', module }], priority: 'high' });
  // @ts-expect-error: a key is a string.
  await executor.executePipeline({ nodes: [{ id: 'a', module }], concurrencyKey: 42 });
  // The same on typed pipelines.
  await executor.executePipeline({ nodes: [parse, sum], initialInput: '1,2', priority: -1, concurrencyKey: 'b' });
  new PipelineExecutor({ maxConcurrentPerKey: 4 });
  // @ts-expect-error: a limit is a number.
  new PipelineExecutor({ maxConcurrentPerKey: '4' });
  new PipelineExecutor({ recycleThreads: { afterNodes: 10_000, heapUsedMb: 256 } });
  new PipelineExecutor({ backend: bullmqBackend({ connection: 'redis://127.0.0.1:6379', maxSegmentsInFlight: 64 }) });
  // @ts-expect-error: recycling by a count of runs is not offered.
  new PipelineExecutor({ recycleThreads: { afterRuns: 10 } });
  const keys: readonly { readonly key: string; readonly inFlight: number; readonly waiting: number }[] = executor.stats().keys;
  void keys;
}
