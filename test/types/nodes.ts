// Node functions whose types the type tests use (never run).
import type { NodeContext } from '../../src/index';

export const parse = (text: string): number[] => text.split(',').map(Number);
export const sum = (numbers: readonly number[]): number => numbers.reduce((a, b) => a + b, 0);
export const hash = async (value: unknown, ctx: NodeContext<{ rounds: number }>): Promise<string> => `${String(value)}${ctx.params.rounds}`;
export const join = (input: { left: number; right: string }): string => `${input.left}:${input.right}`;
export const label = (n: number, ctx: NodeContext<{ prefix?: string } | undefined>): string => `${ctx.params?.prefix ?? ''}${n}`;
export const anything = (input: unknown): boolean => input !== undefined;
export const notANode = 42;
export const increment = (n: number): number => n + 1;
export const pair = (input: { parse: number[]; anything: boolean }): [number[], boolean] => [input.parse, input.anything];
