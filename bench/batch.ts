/** Batches of runs, and what they leave behind: per-run latencies, wall times, failures. */
import { performance } from 'node:perf_hooks';

/** Everything one contender measured in a scenario, over all its iterations. */
export class Samples {
  /** Latency of every successful run, in milliseconds. */
  readonly latencies: number[] = [];
  /** Wall time of every measured batch, in milliseconds. */
  readonly walls: number[] = [];
  runs = 0;
  failures = 0;
  firstError: string | null = null;

  succeeded(ms: number): void {
    this.runs++;
    this.latencies.push(ms);
  }

  failed(error: unknown): void {
    this.runs++;
    this.failures++;
    this.firstError ??= describeError(error);
  }
}

export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return `thrown ${typeof error}: ${String(error)}`;
}

/** Runs the pipelines of one batch, given their input. */
export type RunFn = (input: unknown) => Promise<unknown>;

export interface BatchSpec {
  readonly count: number;
  /** Runs in flight at once: `count` starts them all at once, 1 runs them one by one. */
  readonly concurrency: number;
  input(index: number): unknown;
  check(result: unknown): boolean;
}

/** The inputs of a batch's runs, made before its clock starts. */
export function inputsFor(spec: BatchSpec): unknown[] {
  return Array.from({ length: spec.count }, (_, i) => spec.input(i));
}

/**
 * Runs one run per input, `spec.concurrency` at a time, and records each one's latency
 * (from the call to its settlement) or failure in `into`. Resolves when all settled.
 */
export async function runBatch(run: RunFn, spec: BatchSpec, inputs: readonly unknown[], into: Samples): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < inputs.length) {
      const input = inputs[next++];
      const start = performance.now();
      try {
        const result = await run(input);
        const end = performance.now();
        if (spec.check(result)) into.succeeded(end - start);
        else into.failed(new Error(`unexpected result ${preview(result)}`));
      } catch (error) {
        into.failed(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(spec.concurrency, inputs.length) }, lane));
}

function preview(value: unknown): string {
  if (value instanceof Uint8Array) return `Uint8Array(${value.length}) [${value[0]}, ...]`;
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
