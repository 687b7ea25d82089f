import { expect } from 'chai';
import { getEventListeners } from 'node:events';
import {
  CancellationException,
  NodeTimeoutException,
  PipelineTimeoutException,
  type PipelineExecutor,
  type PipelineHandle,
} from '../src/index';
import { Gates } from './gates';
import { fixture, useExecutors } from './helpers';

const sleepAdd = fixture('sleep-add.js');
const honour = fixture('honour-signal.js');
const spin = fixture('notify-then-spin.js');
const failing = fixture('throw-custom.js');

type Kind = 'success' | 'node-error' | 'node-timeout' | 'pipeline-timeout' | 'cancel' | 'hard-kill';

/** One run of a kind, and what it must end with. */
function start(executor: PipelineExecutor, kind: Kind, i: number, signal: AbortSignal): Promise<string> {
  let handle: PipelineHandle<unknown>;
  switch (kind) {
    case 'success':
      handle = executor.startPipeline({
        nodes: ['a', 'b', 'c'].map((id) => ({ id, module: sleepAdd, params: { ms: 1 } })),
        initialInput: i,
        signal,
      });
      return handle.result.then((value) => (value === i + 3 ? kind : `wrong result ${String(value)}`));
    case 'node-error':
      handle = executor.startPipeline({ nodes: [{ id: 'e', module: failing, export: 'nodeFailed' }], signal });
      return handle.result.then(
        () => 'resolved',
        (error: Error) => (error.message === 'Node failed' ? kind : String(error)),
      );
    case 'node-timeout':
      handle = executor.startPipeline({ nodes: [{ id: 't', module: honour, params: {}, timeoutMs: 15 }], signal });
      return handle.result.then(
        () => 'resolved',
        (error: unknown) => (error instanceof NodeTimeoutException ? kind : String(error)),
      );
    case 'pipeline-timeout':
      handle = executor.startPipeline({
        nodes: [{ id: 'p', module: honour, params: {} }],
        signal,
        timeouts: { pipelineTimeoutMs: 25 },
      });
      return handle.result.then(
        () => 'resolved',
        (error: unknown) => (error instanceof PipelineTimeoutException ? kind : String(error)),
      );
    case 'cancel':
      handle = executor.startPipeline({ nodes: [{ id: 'c', module: honour, params: {} }], signal });
      setTimeout(() => handle.cancel('leak test'), i % 7);
      return handle.result.then(
        () => 'resolved',
        (error: unknown) => (error instanceof CancellationException ? kind : String(error)),
      );
    case 'hard-kill':
      handle = executor.startPipeline({ nodes: [{ id: 'k', module: spin, params: {}, timeoutMs: 30 }], signal });
      return handle.result.then(
        () => 'resolved',
        (error: unknown) => (error instanceof NodeTimeoutException ? kind : String(error)),
      );
  }
}

function kindOf(i: number): Kind {
  if (i % 500 === 250) return 'hard-kill';
  const r = i % 20;
  if (r < 14) return 'success';
  if (r < 16) return 'node-error';
  if (r < 17) return 'node-timeout';
  if (r < 18) return 'pipeline-timeout';
  return 'cancel';
}

function heapAfterGc(): number {
  for (let i = 0; i < 4; i++) global.gc?.();
  return process.memoryUsage().heapUsed;
}

function timers(): number {
  return process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
}

describe('no leaks', function () {
  this.timeout(120_000);
  const newExecutor = useExecutors();

  it('10,000 runs of every outcome, hard kills included, leave nothing behind', async () => {
    expect(global.gc, 'run mocha with --expose-gc (see .mocharc.json)').to.be.a('function');
    const threads = 2;
    const executor = newExecutor({ threads, timeouts: { cleanupGraceMs: 20, nodeTimeoutMs: 10_000 } });
    await executor.ready();
    const controller = new AbortController();
    const timersBefore = timers();
    const counts = new Map<string, number>();
    let heapBaseline = 0;
    const batch = 500;
    for (let from = 0; from < 10_000; from += batch) {
      const outcomes = await Promise.all(
        Array.from({ length: batch }, (_, k) => start(executor, kindOf(from + k), from + k, controller.signal)),
      );
      for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
      if (from === 0) heapBaseline = heapAfterGc();
    }
    // Every run ended as its kind says.
    const expected = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) expected.set(kindOf(i), (expected.get(kindOf(i)) ?? 0) + 1);
    expect(Object.fromEntries(counts)).to.deep.equal(Object.fromEntries(expected));
    expect(expected.get('hard-kill')).to.equal(20);

    const stats = executor.stats();
    expect(stats.runsInFlight).to.equal(0);
    expect(stats.tasksInFlight).to.equal(0);
    expect(stats.tasksWaiting).to.equal(0);
    expect(stats.tasksQueued).to.equal(0);
    expect(stats.terminations).to.be.at.least(20);
    expect(stats.threads, 'threads back to the configured size').to.equal(threads);
    // One control port per live thread, none left from the terminated ones.
    expect((executor as unknown as { dispatcher: { openPorts: number } }).dispatcher.openPorts).to.be.at.most(threads);
    expect(getEventListeners(controller.signal, 'abort')).to.have.length(0);
    expect(timers(), 'timers left running').to.equal(timersBefore);
    const heap = heapAfterGc();
    console.log(`      heap after GC: ${(heapBaseline / 2 ** 20).toFixed(1)} MiB after the first 500 runs, ${(heap / 2 ** 20).toFixed(1)} MiB after 10,000`);
    expect(heap).to.be.below(heapBaseline * 1.1);
  });

  it('a run in flight holds no timer of its own: 1,000 runs behind a held thread add no more timers than the thread takes in', async () => {
    const tasksPerThread = 8;
    const executor = newExecutor({ threads: 1, tasksPerThread, timeouts: { nodeTimeoutMs: 60_000, pipelineTimeoutMs: 60_000 } });
    await executor.ready();
    const timersBefore = timers();
    const gates = new Gates();
    const held = executor.executePipeline({ nodes: [gates.node('hold')], initialInput: -1 });
    await gates.started(1);
    const runs = Array.from({ length: 1_000 }, (_, i) =>
      executor.executePipeline({ nodes: ['a', 'b', 'c'].map((id) => ({ id, module: sleepAdd, params: { ms: 1 } })), initialInput: i }),
    );
    // The pool sends what the held thread takes in, and keeps the rest waiting.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(executor.stats().tasksQueued, 'runs waiting for the thread').to.be.at.least(1_000 - tasksPerThread);
    // A node's deadline is watched once its segment is on a thread (the held node's and
    // those sent behind it), and the runs' pipeline timeouts share one timer.
    expect(timers() - timersBefore, 'timers while 1,000 runs wait').to.be.at.most(tasksPerThread + 3);
    gates.open();
    expect(await held).to.equal(-1);
    expect(await Promise.all(runs)).to.deep.equal(Array.from({ length: 1_000 }, (_, i) => i + 3));
    expect(timers(), 'timers left running').to.equal(timersBefore);
  });
});
