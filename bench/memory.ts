/**
 * M1, memory: the seed's pipelines (3 nodes that sleep 10 ms and add 1) 1,000 at a time,
 * batch after batch, 100,000 in all (10,000 with --quick). Heap use after a full GC,
 * once the first 1,000 are done and once all are, must stay within 10%.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Orchestrator, toNodes } from './orchestrator';
import { chain } from './workload';

export interface MemoryResult {
  readonly id: 'M1';
  readonly runs: number;
  readonly failures: number;
  readonly heapAfterFirstMiB: number;
  readonly heapAfterAllMiB: number;
  /** Heap after all, over heap after the first batch, less one. */
  readonly growth: number;
  /** Every run succeeded and the heap grew at most 10%. */
  readonly ok: boolean;
}

const BATCH = 1_000;
const SEED_TIMEOUTS = { nodeTimeoutMs: 500, pipelineTimeoutMs: 1500, cleanupGraceMs: 50 };

function collect(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

export async function runMemory(quick: boolean, threads: number, onBatch: (done: number, of: number) => void): Promise<MemoryResult> {
  const gc = collect();
  const heap = (): number => {
    for (let i = 0; i < 4; i++) gc();
    return process.memoryUsage().heapUsed / 2 ** 20;
  };
  const total = quick ? 10_000 : 100_000;
  const orchestrator = new Orchestrator({ threads, timeouts: SEED_TIMEOUTS }, 'M1');
  let failures = 0;
  let heapAfterFirst = 0;
  try {
    await orchestrator.ready();
    const nodes = toNodes(chain(3, 'sleepAdd', { ms: 10 }));
    for (let done = 0; done < total; done += BATCH) {
      onBatch(done, total);
      const results = await Promise.allSettled(Array.from({ length: BATCH }, (_, i) => orchestrator.run(nodes, i)));
      failures += results.filter((result, i) => result.status === 'rejected' || result.value !== i + 3).length;
      if (done === 0) heapAfterFirst = heap();
    }
  } finally {
    await orchestrator.close();
  }
  const heapAfterAll = heap();
  const growth = heapAfterAll / heapAfterFirst - 1;
  return {
    id: 'M1',
    runs: total,
    failures,
    heapAfterFirstMiB: heapAfterFirst,
    heapAfterAllMiB: heapAfterAll,
    growth,
    ok: failures === 0 && growth <= 0.1,
  };
}

export function formatMemory(result: MemoryResult): string {
  const mib = (value: number): string => `${value.toFixed(2)} MiB`;
  return [
    `M1  ${result.runs.toLocaleString('en-US')} of the seed's pipelines, 1,000 at a time, batch after batch  [${result.ok ? 'ok' : 'FAILED'}]`,
    `  heap after a full GC: ${mib(result.heapAfterFirstMiB)} after the first 1,000, ${mib(result.heapAfterAllMiB)} after all ` +
      `(${result.growth >= 0 ? '+' : ''}${(result.growth * 100).toFixed(1)}%, at most +10%); ${result.failures} of ${result.runs.toLocaleString('en-US')} runs failed`,
  ].join('\n');
}
