// Checked by `npm run typecheck`: a map node takes an array of its function's input and
// gives an array of its output; each mistake marked @ts-expect-error must not compile.
import { PipelineExecutor, defineNode, nodeModule, type TypedNode } from '../../src/index';
import type * as ops from './nodes';

declare const executor: PipelineExecutor;

/** `true` only when A and B are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** `expectType<T>()(value, true)` compiles only when `value` is of type T exactly. */
function expectType<Expected>() {
  return <Actual>(actual: Actual, check: Equal<Actual, Expected>): void => void [actual, check];
}

const module = '/abs/nodes.js';
const nodes = nodeModule<typeof ops>(module);

// --- defineNode with `map`.
const increments = defineNode<typeof ops.increment>({ id: 'increments', module, export: 'increment', map: true });
expectType<TypedNode<string, readonly number[], number[], unknown, undefined>>()(increments, true);
const hashes = defineNode<typeof ops.hash>({ id: 'hashes', module, export: 'hash', params: { rounds: 1 }, map: { concurrency: 4 } });
expectType<TypedNode<string, readonly unknown[], string[], { rounds: number }, undefined>>()(hashes, true);
// `map: false` is a plain node.
expectType<TypedNode<string, number, number, unknown, undefined>>()(defineNode<typeof ops.increment>({ id: 'one', module, export: 'increment', map: false }), true);
// @ts-expect-error: map's options hold only `concurrency`.
defineNode<typeof ops.increment>({ id: 'bad', module, export: 'increment', map: { limit: 2 } });
// @ts-expect-error: concurrency is a number.
defineNode<typeof ops.increment>({ id: 'bad', module, export: 'increment', map: { concurrency: '2' } });

// --- nodeModule with `map`.
const labels = nodes.node('label', { id: 'labels', map: true });
expectType<TypedNode<'labels', readonly number[], string[], { prefix?: string } | undefined, undefined>>()(labels, true);
const plain = nodes.node('label', { id: 'plain', map: false });
expectType<TypedNode<'plain', number, string, { prefix?: string } | undefined, undefined>>()(plain, true);

export async function chains(): Promise<void> {
  // parse gives number[]; a map of increment takes it, and gives number[] on to sum.
  const total = await executor.executePipeline({ nodes: [nodes.node('parse'), increments, nodes.node('sum')], initialInput: '1,2' });
  expectType<number>()(total, true);
  // The map's output, an array of its function's output, is the result when it is last.
  const all = await executor.executePipeline({ nodes: [nodes.node('parse'), nodes.node('label', { map: { concurrency: 2 } })], initialInput: '1,2' });
  expectType<string[]>()(all, true);
  // The input of a map node at the head of a chain is an array of its function's input.
  const direct = await executor.executePipeline({ nodes: [increments], initialInput: [1, 2, 3] });
  expectType<number[]>()(direct, true);

  // @ts-expect-error: a map node takes an array, not one number.
  await executor.executePipeline({ nodes: [increments], initialInput: 1 });
  // @ts-expect-error: a map of label gives string[], which sum (numbers) does not take.
  await executor.executePipeline({ nodes: [nodes.node('parse'), nodes.node('label', { map: true }), nodes.node('sum')], initialInput: '1' });
  // @ts-expect-error: without `map`, increment takes one number, not parse's number[].
  await executor.executePipeline({ nodes: [nodes.node('parse'), nodes.node('increment'), nodes.node('sum')], initialInput: '1' });
}

export async function dags(): Promise<void> {
  const result = await executor.executePipeline({
    nodes: [nodes.node('parse'), nodes.node('increment', { id: 'each', dependsOn: ['parse'], map: true }), nodes.node('sum', { dependsOn: ['each'] })],
    initialInput: '1,2',
  });
  expectType<number>()(result, true);
  // @ts-expect-error: a map over a dependency that gives no array.
  await executor.executePipeline({ nodes: [nodes.node('sum'), nodes.node('increment', { id: 'each', dependsOn: ['sum'], map: true })], initialInput: [1] });
}
