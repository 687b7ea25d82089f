/** Measured iterations of two contenders, interleaved, timed by tinybench. */
import { Bench } from 'tinybench';
import { NoiseMeter, type Noise } from './machine';

export interface Contender {
  readonly label: string;
  /** Gets an iteration ready, off the clock (e.g. makes its inputs). */
  prepare?(): void;
  /** One measured iteration (a batch of runs); it records its own per-run samples. */
  iteration(): Promise<void>;
}

/** What each contender's iterations measured, in the contenders' order. */
export interface Interleaved {
  /** Wall time of each iteration, in milliseconds, as tinybench measured it. */
  readonly walls: number[];
  /** How busy other processes kept the machine during its iterations. */
  readonly noise: Noise;
}

/**
 * Runs `rounds` iterations of each contender, alternating which goes first round by
 * round (A B, B A, A B, ...) so that machine noise hits both alike. Each iteration is a
 * tinybench task of one timed call.
 */
export async function interleave(
  name: string,
  contenders: readonly Contender[],
  rounds: number,
  onStart: (label: string, iteration: number, of: number) => void,
): Promise<Interleaved[]> {
  const bench = new Bench({ name, iterations: 1, time: 0, warmup: false, throws: true });
  const owners: number[] = [];
  const meters = contenders.map(() => new NoiseMeter());
  const total = rounds * contenders.length;
  for (let round = 0; round < rounds; round++) {
    const order = contenders.map((_, i) => (round % 2 === 0 ? i : contenders.length - 1 - i));
    for (const index of order) {
      const contender = contenders[index]!;
      const position = owners.length + 1;
      owners.push(index);
      bench.add(`${contender.label} #${round + 1}`, () => contender.iteration(), {
        async: true,
        beforeAll: () => onStart(contender.label, position, total),
        beforeEach: () => {
          contender.prepare?.();
          meters[index]!.start();
        },
        afterEach: () => meters[index]!.stop(),
      });
    }
  }
  await bench.run();
  const walls: number[][] = contenders.map(() => []);
  bench.tasks.forEach((task, i) => {
    const result = task.result;
    if (result.state !== 'completed') {
      throw new Error(`tinybench task ${task.name} ended ${result.state}${'error' in result ? `: ${String(result.error)}` : ''}`);
    }
    walls[owners[i]!]!.push(...(result.latency.samples ?? [result.latency.mean]));
  });
  return contenders.map((_, i) => ({ walls: walls[i]!, noise: meters[i]!.noise }));
}
