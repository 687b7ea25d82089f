/**
 * Thread recycling (`recycleThreads`): a thread is replaced between its nodes once it
 * has run a number of nodes or its heap passes a size; no run fails for it. Real
 * threads, and a node that really leaks.
 */
import { expect } from 'chai';
import type { PipelineExecutor, ThreadExit } from '../src/index';
import { fixture, useExecutors } from './helpers';

const leak = fixture('leak.js');

interface Leaked {
  readonly threadId: number;
  readonly heapUsed: number;
  readonly input: number;
}

describe('thread recycling', function () {
  this.timeout(120_000);
  const create = useExecutors();

  it('refuses bad recycleThreads options, naming them', () => {
    expect(() => create({ recycleThreads: {} })).to.throw(TypeError, /`recycleThreads`/);
    expect(() => create({ recycleThreads: { afterNodes: 0 } })).to.throw(RangeError, /`recycleThreads.afterNodes`/);
    expect(() => create({ recycleThreads: { heapUsedMb: -1 } })).to.throw(RangeError, /`recycleThreads.heapUsedMb`/);
    expect(() => create({ recycleThreads: { afterTasks: 3 } as never })).to.throw(TypeError, /`recycleThreads.afterTasks`/);
  });

  it('replaces a thread whose heap passes heapUsedMb, between its nodes; no run fails', async () => {
    const heapUsedMb = 48;
    const executor = create({ threads: 1, recycleThreads: { heapUsedMb } });
    const { exits, first } = watchExits(executor);
    await executor.ready();
    const results: Leaked[] = [];
    // Each run leaks 2 MiB on its thread, one run after another, until three threads have served.
    for (let i = 0; i < 400 && new Set(results.map((r) => r.threadId)).size < 3; i++) {
      results.push(await executor.executePipeline<Leaked>({ nodes: [{ id: 'leak', module: leak }], initialInput: i }));
    }
    const threads = [...new Set(results.map((r) => r.threadId))];
    expect(threads.length, 'threads that served').to.equal(3);
    expect(results.map((r) => r.input)).to.deep.equal(results.map((_, i) => i));
    // Each thread replaced had passed the limit, and its runs are one unbroken stretch.
    for (const retired of threads.slice(0, 2)) {
      const on = results.filter((r) => r.threadId === retired);
      expect(Math.max(...on.map((r) => r.heapUsed)), `heap of thread ${retired}`).to.be.at.least(heapUsedMb * 1024 * 1024);
      const start = results.findIndex((r) => r.threadId === retired);
      expect(results.slice(start, start + on.length).every((r) => r.threadId === retired)).to.equal(true);
    }
    await first(2);
    expect(exits.map((exit) => [exit.threadId, exit.reason])).to.deep.equal(threads.slice(0, 2).map((id) => [id, 'recycled']));
    const stats = executor.stats();
    expect(stats.runs).to.include({ success: results.length, error: 0 });
    expect([stats.terminations, stats.crashes, stats.resends]).to.deep.equal([0, 0, 0]);
    // Threads replaced on schedule are no churn to health().
    expect((await executor.health()).threadsEndedLastMinute).to.equal(0);
  });

  it('replaces a thread after afterNodes nodes, with many runs in flight on it; none fails', async () => {
    const afterNodes = 30;
    const executor = create({ threads: 2, recycleThreads: { afterNodes } });
    const { exits } = watchExits(executor);
    await executor.ready();
    const nodes = [1, 2, 3].map((n) => ({ id: `leak${n}`, module: leak, params: { mb: 0.25 } }));
    const threadsSeen = new Set<number>();
    let runs = 0;
    // Batches of 40 concurrent three-node runs until two threads were recycled.
    while (exits.length < 2 && runs < 4000) {
      const batch = await Promise.all(Array.from({ length: 40 }, () => executor.executePipeline<Leaked>({ nodes, initialInput: 0 })));
      for (const result of batch) threadsSeen.add(result.threadId);
      runs += batch.length;
    }
    expect(exits.length).to.be.at.least(2);
    expect(exits.every((exit) => exit.reason === 'recycled')).to.equal(true);
    expect(threadsSeen.size).to.be.at.least(3);
    const stats = executor.stats();
    expect(stats.runs).to.include({ success: runs, error: 0, timeout: 0, cancelled: 0 });
    expect([stats.terminations, stats.crashes]).to.deep.equal([0, 0]);
  });
});

/** The executor's thread exits, and a promise of the first `count` of them. */
function watchExits(executor: PipelineExecutor): { exits: ThreadExit[]; first(count: number): Promise<void> } {
  const exits: ThreadExit[] = [];
  const waiting: { count: number; resolve: () => void }[] = [];
  executor.on('threadExit', (exit) => {
    exits.push(exit);
    for (const wait of waiting) if (exits.length >= wait.count) wait.resolve();
  });
  return {
    exits,
    first: (count) => (exits.length >= count ? Promise.resolve() : new Promise((resolve) => waiting.push({ count, resolve }))),
  };
}
