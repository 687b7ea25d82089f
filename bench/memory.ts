/**
 * M1, memory: the seed's pipelines (3 nodes that sleep 10 ms and add 1) 1,000 at a time,
 * batch after batch, 100,000 in all (10,000 with --quick). Heap use after a full GC,
 * once the first 1,000 are done and once all are, must stay within 10%.
 *
 * Then the caches: a million runs (20,000 with --quick), 1,000 at a time, each with a
 * pipeline id of its own and one of many shapes (chains of 1 to 4 trivial nodes, fans of
 * 2 to 5), so that every run is planned afresh and its segments are new to the threads.
 * The heap of the main thread and of each worker thread, after a full GC, must stay
 * within 10% of what it was after the first 10,000.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describeError } from './batch';
import { Orchestrator, toNodes, type NodeDefinition } from './orchestrator';
import { NODES_MODULE, chain } from './workload';

export interface MemoryResult {
  readonly id: 'M1';
  readonly runs: number;
  readonly failures: number;
  /** What the first failed run rejected with (or its wrong result), if one failed. */
  readonly firstError?: string | null;
  readonly heapAfterFirstMiB: number;
  readonly heapAfterAllMiB: number;
  /** Heap after all, over heap after the first batch, less one. */
  readonly growth: number;
  /** Every run of each part succeeded and each heap grew at most 10%. */
  readonly ok: boolean;
  readonly varied: VariedResult;
}

/** The caches part: runs of ever new pipeline ids and shapes. */
export interface VariedResult {
  readonly runs: number;
  readonly failures: number;
  readonly mainFirstMiB: number;
  readonly mainAllMiB: number;
  readonly mainGrowth: number;
  /** The largest worker-thread heap, after the first 10,000 runs and after all. */
  readonly threadsFirstMiB: number;
  readonly threadsAllMiB: number;
  readonly threadsGrowth: number;
}

const BATCH = 1_000;
const SEED_TIMEOUTS = { nodeTimeoutMs: 500, pipelineTimeoutMs: 1500, cleanupGraceMs: 50 };

function collect(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** A definition of one of many shapes, under a pipeline id of its own. */
function variedRequest(i: number): { pipelineId: string; nodes: NodeDefinition[] } {
  const size = 1 + (i % 5);
  const node = (id: string, dependsOn?: string[]): NodeDefinition => ({ id, module: NODES_MODULE, export: 'increment', ...(dependsOn ? { dependsOn } : {}) });
  let nodes: NodeDefinition[];
  if (i % 2 === 0) {
    nodes = Array.from({ length: size }, (_, n) => node(`c${n}`));
  } else {
    const branches = Array.from({ length: size }, (_, n) => node(`b${n}`, ['root']));
    nodes = [node('root'), ...branches, node('join', branches.map((branch) => branch.id))];
  }
  return { pipelineId: `varied-${i}`, nodes };
}

/** The largest worker-thread heap after a full GC, in MiB: probes sent to every thread. */
async function threadHeap(orchestrator: Orchestrator, threads: number): Promise<number> {
  const probes = await Promise.all(
    Array.from({ length: threads * 4 }, () =>
      orchestrator.executor.executePipeline({ pipelineId: 'heap-probe', nodes: [{ id: 'probe', module: NODES_MODULE, export: 'heapProbe' }] }),
    ),
  );
  return Math.max(...probes.map((probe) => (probe as { heap: number }).heap)) / 2 ** 20;
}

async function runVaried(quick: boolean, threads: number, heap: () => number, onBatch: (done: number, of: number) => void): Promise<VariedResult> {
  const total = quick ? 20_000 : 1_000_000;
  const first = 10_000;
  const orchestrator = new Orchestrator({ threads, timeouts: SEED_TIMEOUTS }, 'M1-varied');
  let failures = 0;
  let mainFirst = 0;
  let threadsFirst = 0;
  let threadsAll: number;
  try {
    await orchestrator.ready();
    for (let done = 0; done < total; done += BATCH) {
      if (done % 10_000 === 0) onBatch(done, total);
      const results = await Promise.allSettled(
        Array.from({ length: BATCH }, (_, i) => orchestrator.executor.executePipeline({ ...variedRequest(done + i), initialInput: 0 })),
      );
      failures += results.filter((result) => result.status === 'rejected').length;
      if (done + BATCH === first) {
        mainFirst = heap();
        threadsFirst = await threadHeap(orchestrator, threads);
      }
    }
    threadsAll = await threadHeap(orchestrator, threads);
  } finally {
    await orchestrator.close();
  }
  const mainAll = heap();
  return {
    runs: total,
    failures,
    mainFirstMiB: mainFirst,
    mainAllMiB: mainAll,
    mainGrowth: mainAll / mainFirst - 1,
    threadsFirstMiB: threadsFirst,
    threadsAllMiB: threadsAll,
    threadsGrowth: threadsAll / threadsFirst - 1,
  };
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
  let firstError: string | null = null;
  let heapAfterFirst = 0;
  try {
    await orchestrator.ready();
    const nodes = toNodes(chain(3, 'sleepAdd', { ms: 10 }));
    for (let done = 0; done < total; done += BATCH) {
      onBatch(done, total);
      const results = await Promise.allSettled(Array.from({ length: BATCH }, (_, i) => orchestrator.run(nodes, i)));
      results.forEach((result, i) => {
        if (result.status === 'fulfilled' && result.value === i + 3) return;
        failures++;
        firstError ??= result.status === 'rejected' ? describeError(result.reason) : `a wrong result: ${String(result.value)}`;
      });
      if (done === 0) heapAfterFirst = heap();
    }
  } finally {
    await orchestrator.close();
  }
  const heapAfterAll = heap();
  const growth = heapAfterAll / heapAfterFirst - 1;
  const varied = await runVaried(quick, threads, heap, onBatch);
  return {
    id: 'M1',
    runs: total,
    failures,
    firstError,
    heapAfterFirstMiB: heapAfterFirst,
    heapAfterAllMiB: heapAfterAll,
    growth,
    ok: failures === 0 && growth <= 0.1 && varied.failures === 0 && varied.mainGrowth <= 0.1 && varied.threadsGrowth <= 0.1,
    varied,
  };
}

export function formatMemory(result: MemoryResult): string {
  const mib = (value: number): string => `${value.toFixed(2)} MiB`;
  const percent = (growth: number): string => `${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(1)}%`;
  const v = result.varied;
  return [
    `M1  ${result.runs.toLocaleString('en-US')} of the seed's pipelines, 1,000 at a time, batch after batch  [${result.ok ? 'ok' : 'FAILED'}]`,
    `  heap after a full GC: ${mib(result.heapAfterFirstMiB)} after the first 1,000, ${mib(result.heapAfterAllMiB)} after all ` +
      `(${percent(result.growth)}, at most +10%); ${result.failures} of ${result.runs.toLocaleString('en-US')} runs failed` +
      (result.firstError ? `, the first with ${result.firstError}` : ''),
    `  ${v.runs.toLocaleString('en-US')} runs, each with its own pipeline id and one of many shapes: ${v.failures} failed; heap after a full GC`,
    `  main thread ${mib(v.mainFirstMiB)} after 10,000, ${mib(v.mainAllMiB)} after all (${percent(v.mainGrowth)}); ` +
      `largest worker thread ${mib(v.threadsFirstMiB)} after 10,000, ${mib(v.threadsAllMiB)} after all (${percent(v.threadsGrowth)}); at most +10% each`,
  ].join('\n');
}
