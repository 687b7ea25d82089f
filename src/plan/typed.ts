/**
 * Typed node definitions: a node's input, output and params types, carried from its
 * function's type to the run's result. Types only, but for two small factories that
 * return the plain definitions the rest of the planner takes.
 */
import type { NodeContext } from '../shared/node';
import type { MapOptions, NodeDefinition, PipelineRequest } from './definition';

/** The key of a typed node's types. No node has it at run time. */
declare const nodeTypes: unique symbol;

/** What a typed node carries in its type. */
interface NodeTypes<Input, Output, Deps> {
  /** A function of the input, so that a node taking `unknown` takes anything. */
  readonly input: (input: Input) => void;
  readonly output: Output;
  readonly deps: Deps;
}

/**
 * A node definition that carries its function's types: what {@link defineNode} and
 * {@link nodeModule} return. `executePipeline` checks a list of them against each other
 * and infers the run's result from them.
 */
export interface TypedNode<
  Id extends string = string,
  Input = never,
  Output = unknown,
  Params = unknown,
  Deps extends readonly string[] | undefined = readonly string[] | undefined,
> extends NodeDefinition<Params> {
  readonly id: Id;
  readonly dependsOn?: Deps;
  /** Types only: no such property exists at run time. */
  readonly [nodeTypes]: NodeTypes<Input, Output, Deps>;
}

/** Any typed node. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyTypedNode = TypedNode<string, never, unknown, any, readonly string[] | undefined>;

/**
 * What `executePipeline` infers `nodes` as: a tuple (`readonly []` makes TypeScript
 * 5.2 infer a literal list as one).
 */
export type TypedNodeList = readonly [] | readonly AnyTypedNode[];

/** The input of a node function's type. */
export type NodeInput<F> = F extends (input: infer I, ...rest: never[]) => unknown ? I : never;
/** The output of a node function's type, a promise's value for an async one. */
export type NodeOutput<F> = F extends (...args: never[]) => infer O ? Awaited<O> : never;
/** The `ctx.params` a node function's type reads (`unknown` when it takes no `ctx`). */
export type NodeParams<F> = F extends (input: never, ctx: NodeContext<infer P>, ...rest: never[]) => unknown ? P : unknown;

/** A node function, as far as typing needs. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFunction = (input: any, ctx: NodeContext<any>) => unknown;

/** `params`: required when the function reads params that cannot be undefined. */
type ParamsField<P> = undefined extends P ? { readonly params?: P } : { readonly params: P };

/** The input of a node in a typed pipeline. */
export type InputOf<N> = N extends { readonly [nodeTypes]: { readonly input: (input: infer I) => void } } ? I : never;
/** The output of a node in a typed pipeline. */
export type OutputOf<N> = N extends { readonly [nodeTypes]: { readonly output: infer O } } ? O : never;
type DepsOf<N> = N extends { readonly [nodeTypes]: { readonly deps: infer D } } ? D : never;

/** What {@link defineNode} takes: a node definition whose `params` fit the function. */
export type NodeDefinitionOf<F, Id extends string = string> = Omit<NodeDefinition, 'id' | 'params' | 'dependsOn'> & {
  readonly id: Id;
  /** Not here: a DAG's nodes come from {@link nodeModule}, which types their dependencies. */
  readonly dependsOn?: undefined;
} & ParamsField<NodeParams<F>>;

/**
 * A node definition typed by its function's type: the definition as given, with the
 * function's input, output and params types attached (to its type only).
 *
 * In a chain, `executePipeline` then checks each node's input against the previous
 * node's output and `initialInput` against the first node's, and gives the run the last
 * node's output type. `params` must fit what the function reads from `ctx.params`.
 * The id is typed `string` unless given as a second type argument (TypeScript infers no
 * type argument once one is given); for DAGs, {@link nodeModule} infers ids and
 * dependencies.
 *
 * @example
 * ```ts
 * import type * as nodes from './nodes';
 * const module = new URL('./nodes.js', import.meta.url);
 * const parse = defineNode<typeof nodes.parse>({ id: 'parse', module, export: 'parse' });
 * const sum = defineNode<typeof nodes.sum>({ id: 'sum', module, export: 'sum' });
 * const total = await executor.executePipeline({ nodes: [parse, sum], initialInput: '1,2' }); // number
 * // A map node (`map: true` or `{ concurrency }`, given literally) takes an array of the
 * // function's input and gives an array of its output:
 * const squares = defineNode<typeof nodes.square>({ id: 'squares', module, export: 'square', map: true }); // number[] -> number[]
 * ```
 */
export function defineNode<F extends AnyFunction, Id extends string = string>(
  definition: NodeDefinitionOf<F, Id> & { readonly map: true | MapOptions },
): TypedNode<Id, readonly NodeInput<F>[], NodeOutput<F>[], NodeParams<F>, undefined>;
export function defineNode<F extends AnyFunction, Id extends string = string>(
  definition: NodeDefinitionOf<F, Id> & { readonly map?: false },
): TypedNode<Id, NodeInput<F>, NodeOutput<F>, NodeParams<F>, undefined>;
export function defineNode(definition: NodeDefinition): unknown {
  return definition;
}

/** The names of a module type's exports that are functions. */
export type NodeExports<M, WithoutParams extends boolean = false> = {
  [K in keyof M]: M[K] extends AnyFunction ? (WithoutParams extends true ? (undefined extends NodeParams<M[K]> ? K : never) : K) : never;
}[keyof M] &
  string;

/** What {@link NodeModule.node} takes besides the export's name. */
export type NodeOptions<F> = Omit<NodeDefinition, 'id' | 'module' | 'export' | 'params' | 'dependsOn'> & {
  /** @default the export's name */
  readonly id?: string;
  /** Ids of the nodes whose outputs this node takes (a literal list, for its types to follow). */
  readonly dependsOn?: readonly string[];
} & ParamsField<NodeParams<F>>;

/**
 * No key but those of `Allowed`: an unknown key is a compile error, as in a literal.
 * (In a constraint, not the parameter's type: TypeScript 5.2 infers no literal types
 * through an intersection.)
 */
type NoKeysBut<Given, Allowed> = { readonly [K in Exclude<keyof Given, keyof Allowed>]: never };
/** The node's id: `options.id`, or the export's name. */
type IdOf<Options, Name extends string> = Options extends { readonly id: infer Id extends string } ? Id : Name;
/** Whether the options make a map node: `map: true` or `map: { ... }`, given literally. */
type IsMap<Options> = Options extends { readonly map: true | MapOptions } ? true : false;
/** A node's input and output types: a map node's are arrays of its function's. */
type MapInput<Options, I> = IsMap<Options> extends true ? readonly I[] : I;
type MapOutput<Options, O> = IsMap<Options> extends true ? O[] : O;
/** The node's dependencies: `options.dependsOn`, or none. */
type DependsOf<Options> = Options extends { readonly dependsOn: infer Deps extends readonly string[] } ? Deps : undefined;

/** The node functions of a module, from {@link nodeModule}. */
export interface NodeModule<M> {
  /** The module, as given. */
  readonly module: string | URL;
  /**
   * A definition of the node that calls export `name`, typed by the export's type; the
   * node's id is `name` unless `options.id` gives another, its dependencies
   * `options.dependsOn` (a literal list, for the types to follow). With `map: true` (or
   * `{ concurrency }`) it takes an array of the export's input and gives an array of its output.
   */
  node<const Name extends NodeExports<M>, const Options extends NodeOptions<M[Name]> & NoKeysBut<Options, NodeOptions<M[Name]>>>(
    name: Name,
    options: Options,
  ): TypedNode<IdOf<Options, Name>, MapInput<Options, NodeInput<M[Name]>>, MapOutput<Options, NodeOutput<M[Name]>>, NodeParams<M[Name]>, DependsOf<Options>>;
  /** The node that calls export `name`, with the id `name`, for a function that needs no params. */
  node<const Name extends NodeExports<M, true>>(name: Name): TypedNode<Name, NodeInput<M[Name]>, NodeOutput<M[Name]>, NodeParams<M[Name]>, undefined>;
}

/**
 * The node functions of module `module`, typed by its type (as Temporal's
 * `proxyActivities<typeof activities>()` types activities): `node(name, options)` defines
 * a node that calls export `name`, checked to be a function of the module, with its
 * input, output and params types, its id and its dependencies' ids. Nothing is loaded
 * on the calling thread: `import type` the module.
 *
 * @example
 * ```ts
 * import type * as ops from './nodes';
 * const nodes = nodeModule<typeof ops>(new URL('./nodes.js', import.meta.url));
 * const parse = nodes.node('parse');
 * const left = nodes.node('sum', { id: 'left', dependsOn: ['parse'] });
 * const right = nodes.node('hash', { id: 'right', dependsOn: ['parse'], params: { rounds: 10 } });
 * const both = await executor.executePipeline({ nodes: [parse, left, right], initialInput: '5,6' });
 * // both: { left: number; right: string }
 * ```
 */
export function nodeModule<M>(module: string | URL): NodeModule<M> {
  return {
    module,
    node: (name: string, options: Omit<NodeDefinition, 'module' | 'export'> | undefined = undefined) =>
      ({ ...options, id: options?.id ?? name, module, export: name }) as never,
  } as NodeModule<M>;
}

// What executePipeline makes of a list of typed nodes.

/** A node whose input takes `Value`: what a mismatched node is checked against. */
interface Takes<Value> {
  readonly [nodeTypes]: { readonly input: (input: Value) => void };
}

/** A node whose dependencies are all nodes of the pipeline. */
interface DependsOnly<Ids> {
  readonly dependsOn?: readonly Ids[];
}

type Last<Nodes> = Nodes extends readonly [...unknown[], infer L] ? L : never;
type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
type IsUnion<T> = [T] extends [UnionToIntersection<T>] ? false : true;

/** Each node but the first takes the previous one's output (tail-recursive: long chains type). */
type ChainCheck<Nodes, Previous = never, First = true, Checked extends readonly unknown[] = readonly []> = Nodes extends readonly [
  infer N,
  ...infer Rest,
]
  ? ChainCheck<Rest, OutputOf<N>, false, readonly [...Checked, First extends true ? unknown : Takes<Previous>]>
  : Checked;

type Ids<Nodes extends readonly AnyTypedNode[]> = Nodes[number]['id'];
type NodeById<Nodes extends readonly AnyTypedNode[], Id> = Extract<Nodes[number], { readonly id: Id }>;
type AllDeps<Nodes extends readonly AnyTypedNode[]> = DepsOf<Nodes[number]>;
type IsRoot<N> = DepsOf<N> extends readonly [string, ...string[]] ? false : true;

/** A node's input in a DAG, from its dependencies. */
type DepsInput<Nodes extends readonly AnyTypedNode[], Deps> = Deps extends readonly [infer Only]
  ? OutputOf<NodeById<Nodes, Only>>
  : Deps extends readonly string[]
    ? { readonly [Id in Deps[number]]: OutputOf<NodeById<Nodes, Id>> }
    : never;

/** Each node's dependencies are nodes of the pipeline, and their outputs fit its input. */
type DagCheck<Nodes extends readonly AnyTypedNode[]> = {
  readonly [K in keyof Nodes]: [Exclude<DepsOf<Nodes[K]>, undefined>[number]] extends [Ids<Nodes>]
    ? IsRoot<Nodes[K]> extends true
      ? unknown
      : Takes<DepsInput<Nodes, DepsOf<Nodes[K]>>>
    : DependsOnly<Ids<Nodes>>;
};

/** A list typed node by node: a tuple, as a literal list is. */
type IsTuple<Nodes extends readonly AnyTypedNode[]> = number extends Nodes['length'] ? false : true;
type IsChain<Nodes extends readonly AnyTypedNode[]> = IsTuple<Nodes> extends false ? false : [AllDeps<Nodes>] extends [undefined] ? true : false;
/** A DAG is typed when its ids are literals and its dependency lists literal tuples. */
type IsTypedDag<Nodes extends readonly AnyTypedNode[]> = IsTuple<Nodes> extends false
  ? false
  : string extends Ids<Nodes>
    ? false
  : [Exclude<AllDeps<Nodes>, undefined>] extends [infer D extends readonly string[]]
    ? number extends D['length']
      ? false
      : true
    : false;

/** What every root takes (an intersection: a union would vanish into a root's `unknown`). */
type RootsInput<Nodes, Input = unknown> = Nodes extends readonly [infer N, ...infer Rest]
  ? RootsInput<Rest, IsRoot<N> extends true ? Input & InputOf<N> : Input>
  : Input;

type Sinks<Nodes extends readonly AnyTypedNode[]> = Exclude<Ids<Nodes>, Exclude<AllDeps<Nodes>, undefined>[number]>;

/** What `nodes` must be: the list, with each node's input checked. */
export type CheckedNodes<Nodes extends readonly AnyTypedNode[]> =
  IsChain<Nodes> extends true ? ChainCheck<Nodes> : IsTypedDag<Nodes> extends true ? DagCheck<Nodes> : unknown;

/** The pipeline's input: the first node's in a chain, what every root takes in a DAG. */
export type PipelineInput<Nodes extends readonly AnyTypedNode[]> =
  IsChain<Nodes> extends true
    ? InputOf<Nodes[0]>
    : IsTypedDag<Nodes> extends true
      ? RootsInput<Nodes>
      : unknown;

/**
 * The run's result: the last node's output in a chain, in a DAG the sink's output or
 * `{ [sinkId]: output }` for several sinks.
 */
export type PipelineResult<Nodes extends readonly AnyTypedNode[]> =
  IsChain<Nodes> extends true
    ? OutputOf<Last<Nodes>>
    : IsTypedDag<Nodes> extends true
      ? IsUnion<Sinks<Nodes>> extends true
        ? { [Id in Sinks<Nodes>]: OutputOf<NodeById<Nodes, Id>> }
        : OutputOf<NodeById<Nodes, Sinks<Nodes>>>
      : unknown;

/** `initialInput`: required when the first nodes cannot take `undefined`. */
type InputField<Input> = undefined extends Input ? { readonly initialInput?: Input } : { readonly initialInput: Input };

/** A pipeline request of typed nodes (see {@link defineNode} and {@link nodeModule}). */
export type TypedPipelineRequest<Nodes extends readonly AnyTypedNode[]> = Omit<PipelineRequest, 'nodes' | 'initialInput'> & {
  readonly nodes: Nodes & CheckedNodes<Nodes>;
} & InputField<PipelineInput<Nodes>>;

/** A request of plain node definitions: no typed node among them. */
export type PlainPipelineRequest<Input = unknown> = Omit<PipelineRequest<Input>, 'nodes'> & {
  readonly nodes: readonly (NodeDefinition & { readonly [nodeTypes]?: never })[];
};
