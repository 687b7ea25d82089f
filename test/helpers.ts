import { join } from 'node:path';
import { PipelineExecutor, type ExecutorOptions } from '../src/index';

/** Absolute path of a fixture module. */
export function fixture(name: string): string {
  return join(__dirname, 'fixtures', name);
}

/** Cells of the fixtures' probe (see fixtures/probe.js). */
export const STARTED = 0;
export const COMPLETED = 1;
export const CLEANUP = 2;
export const ABORTED = 3;
export const RUNS = 4;

/** What a fixture node reports to the test, through shared memory. */
export class Probe {
  readonly buffer = new SharedArrayBuffer(8 * 4);
  private readonly cells = new Int32Array(this.buffer);

  get(field: number): number {
    return Atomics.load(this.cells, field);
  }

  /** Resolves once the field reaches `count`; rejects after `timeoutMs`. */
  async until(field: number, count = 1, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = Atomics.load(this.cells, field);
      if (value >= count) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`probe field ${field} stayed at ${value}, expected ${count}`);
      await Atomics.waitAsync(this.cells, field, value, left).value;
    }
  }
}

/** Executors made through this are closed after each test. */
export function useExecutors(): (options?: ExecutorOptions) => PipelineExecutor {
  const open: PipelineExecutor[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((executor) => executor.close()));
  });
  return (options) => {
    const executor = new PipelineExecutor(options);
    open.push(executor);
    return executor;
  };
}

/** Resolves with what the promise rejected with; fails if it resolved. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  let value: unknown;
  try {
    value = await promise;
  } catch (error) {
    return error;
  }
  throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
}
