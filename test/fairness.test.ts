/**
 * Fair scheduling: `priority` and `concurrencyKey` on a run, `maxConcurrentPerKey`, and
 * what `stats()` says of keys. Orders are read from the threads themselves (nodes that
 * record their tags in shared memory), never from timings.
 */
import { expect } from 'chai';
import { PipelineDefinitionError, PipelineTimeoutException, type PipelineExecutor } from '../src/index';
import { AHEAD_MIN } from '../src/pool/threads';
import { Gates } from './gates';
import { rejection, useExecutors } from './helpers';

/** A one-node run that records `tag`. */
function recordRun(executor: PipelineExecutor, gates: Gates, tag: number, extra: { priority?: number; concurrencyKey?: string } = {}): Promise<unknown> {
  return executor.executePipeline({ pipelineId: `tag-${tag}`, nodes: [gates.record(tag)], initialInput: tag, ...extra });
}

describe('fair scheduling', function () {
  this.timeout(60_000);
  const create = useExecutors();

  describe('checks', () => {
    it('refuses a bad priority, concurrencyKey or dedupeKey before any node runs, naming the option', async () => {
      const executor = create({ threads: 1 });
      const gates = new Gates();
      const bad: [string, unknown][] = [
        ['priority', '1'],
        ['priority', Number.NaN],
        ['priority', Infinity],
        ['concurrencyKey', ''],
        ['concurrencyKey', 7],
        ['dedupeKey', ''],
        ['dedupeKey', { id: 1 }],
      ];
      for (const [option, value] of bad) {
        const error = await rejection(executor.executePipeline({ nodes: [gates.record(1)], [option]: value }));
        expect(error, `${option}: ${String(value)}`).to.be.instanceOf(PipelineDefinitionError);
        expect((error as Error).message).to.include(`\`${option}\``);
      }
      expect(gates.tags()).to.deep.equal([]);
      expect(executor.stats().nodes).to.deep.equal({ success: 0, error: 0, timeout: 0, cancelled: 0 });
      expect(executor.stats().runs.error).to.equal(0);
    });

    it('refuses a bad maxConcurrentPerKey, naming it', () => {
      expect(() => create({ maxConcurrentPerKey: 0 })).to.throw(RangeError, /`maxConcurrentPerKey`/);
      expect(() => create({ maxConcurrentPerKey: 1.5 })).to.throw(TypeError, /`maxConcurrentPerKey`/);
      expect(() => create({ maxConcurrentPerKey: '2' as unknown as number })).to.throw(TypeError, /`maxConcurrentPerKey`/);
    });
  });

  describe('priority', () => {
    it('admits waiting runs highest priority first, equal priorities in arrival order', async () => {
      const executor = create({ threads: 1, maxConcurrentPipelines: 1 });
      const gates = new Gates();
      const first = executor.executePipeline({ nodes: [gates.node('wait')] });
      await gates.started(1);
      const priorities = [0, 5, 1, 5, 0, -2, 1];
      const runs = priorities.map((priority, tag) => recordRun(executor, gates, tag, { priority }));
      expect(executor.stats().runsQueued).to.equal(priorities.length);
      gates.open();
      await Promise.all([first, ...runs]);
      // Tags by priority, highest first; ties in the order they were submitted.
      expect(gates.tags()).to.deep.equal([1, 3, 2, 6, 0, 4, 5]);
    });

    it('hands node tasks waiting for a thread to it highest priority first', async () => {
      const executor = create({ threads: 1 });
      await executor.ready();
      const gates = new Gates();
      const held = executor.executePipeline({ nodes: [gates.node('hold')] });
      await gates.started(1);
      // These fill what the thread holds ahead while its node holds it; the rest wait for it here.
      const fillers = Array.from({ length: AHEAD_MIN }, (_, i) => recordRun(executor, gates, 100 + i));
      await new Promise(setImmediate);
      const later = [0, 10, 0, 10, 5, 0, 10].map((priority, tag) => recordRun(executor, gates, tag, { priority }));
      gates.open();
      await Promise.all([held, ...fillers, ...later]);
      const tags = gates.tags().filter((tag) => tag < 100);
      expect(tags).to.deep.equal([1, 3, 6, 4, 0, 2, 5]);
    });
  });

  describe('bursts', () => {
    it('orders two runs submitted together by priority, however many runs came before', async () => {
      // Runs of one key and priority are sent every 64 submissions without waiting for
      // the turn to end: that count starts again at each flush, so an earlier history
      // of 63 submissions cannot send the first of these two alone.
      const executor = create({ threads: 1 });
      await executor.ready();
      const gates = new Gates();
      for (const history of [63, 1]) {
        await Promise.all(Array.from({ length: history }, (_, i) => recordRun(executor, gates, 1000 + i)));
        const low = recordRun(executor, gates, 0, { priority: 0 });
        const high = recordRun(executor, gates, 1, { priority: 10 });
        await Promise.all([low, high]);
        expect(gates.tags().filter((tag) => tag < 1000).slice(-2)).to.deep.equal([1, 0]);
      }
    });

    it('sends a long burst of one key before its turn ends, yet a higher priority submitted in it waits behind no more than a window', async () => {
      const executor = create({ threads: 1 });
      await executor.ready();
      const gates = new Gates();
      const held = executor.executePipeline({ nodes: [gates.node('hold')] });
      await gates.started(1);
      const low = Array.from({ length: 100 }, (_, i) => recordRun(executor, gates, 100 + i));
      const high = recordRun(executor, gates, 1, { priority: 10 });
      gates.open();
      await Promise.all([held, ...low, high]);
      const tags = gates.tags();
      // The first burst of 64 went out as the thread had room (its window), in arrival order.
      expect(tags.indexOf(1)).to.be.within(1, AHEAD_MIN);
      expect(tags.filter((tag) => tag >= 100)).to.deep.equal(Array.from({ length: 100 }, (_, i) => 100 + i));
    });
  });

  describe('keys', () => {
    it('serves node tasks round-robin across keys: a burst of one key does not hold back another', async () => {
      const executor = create({ threads: 1 });
      await executor.ready();
      const gates = new Gates();
      const held = executor.executePipeline({ nodes: [gates.node('hold')] });
      await gates.started(1);
      const fillers = Array.from({ length: AHEAD_MIN }, (_, i) => recordRun(executor, gates, 100 + i, { concurrencyKey: 'filler' }));
      await new Promise(setImmediate);
      // Key A's burst (tags 0-19), then key B's runs (tags 20-24), then runs without a key (30-31).
      const a = Array.from({ length: 20 }, (_, i) => recordRun(executor, gates, i, { concurrencyKey: 'A' }));
      const b = Array.from({ length: 5 }, (_, i) => recordRun(executor, gates, 20 + i, { concurrencyKey: 'B' }));
      const none = [30, 31].map((tag) => recordRun(executor, gates, tag));
      await new Promise(setImmediate);
      expect(executor.stats().tasksQueued).to.equal(27);
      gates.open();
      await Promise.all([held, ...fillers, ...a, ...b, ...none]);
      const tags = gates.tags().filter((tag) => tag < 100);
      const keyOf = (tag: number): string => (tag < 20 ? 'A' : tag < 30 ? 'B' : '-');
      // A, B and the keyless runs take turns while all three wait; then A alone.
      expect(tags.slice(0, 8).map(keyOf).join('')).to.equal('AB-AB-AB');
      expect(tags.slice(8, 12).map(keyOf).join('')).to.equal('ABAB');
      expect(tags.slice(12).map(keyOf).join('')).to.equal('A'.repeat(15));
      // Within a key, arrival order.
      expect(tags.filter((tag) => tag < 20)).to.deep.equal(Array.from({ length: 20 }, (_, i) => i));
      expect(tags.filter((tag) => tag >= 20 && tag < 30)).to.deep.equal([20, 21, 22, 23, 24]);
    });

    it('bounds the runs in flight per key with maxConcurrentPerKey; other keys and keyless runs go ahead', async () => {
      const executor = create({ threads: 1, maxConcurrentPerKey: 2 });
      const gates = new Gates();
      const a = Array.from({ length: 5 }, () => executor.executePipeline({ nodes: [gates.node('wait')], concurrencyKey: 'A' }));
      await gates.started(2);
      const b = executor.executePipeline({ nodes: [gates.node('wait')], concurrencyKey: 'B' });
      const keyless = [1, 2, 3].map(() => executor.executePipeline({ nodes: [gates.node('wait')] }));
      await gates.started(6);
      const stats = executor.stats();
      expect(stats.runsInFlight).to.equal(6);
      expect(stats.runsQueued).to.equal(3);
      expect(stats.keys).to.deep.equal([
        { key: 'A', inFlight: 2, waiting: 3 },
        { key: 'B', inFlight: 1, waiting: 0 },
      ]);
      expect(gates.startedCount).to.equal(6);
      gates.open();
      await Promise.all([...a, b, ...keyless]);
      expect(gates.startedCount).to.equal(9);
      expect(executor.stats().keys).to.deep.equal([]);
    });

    it('counts the wait for a key in the pipeline timeout; the waiting run never starts', async () => {
      const executor = create({ threads: 1, maxConcurrentPerKey: 1 });
      const gates = new Gates();
      const first = executor.executePipeline({ nodes: [gates.node('wait')], concurrencyKey: 'A' });
      await gates.started(1);
      const late = executor.executePipeline({ nodes: [gates.node('wait')], concurrencyKey: 'A', timeouts: { pipelineTimeoutMs: 100 } });
      const error = await rejection(late);
      expect(error).to.be.instanceOf(PipelineTimeoutException);
      expect(executor.stats().keys).to.deep.equal([{ key: 'A', inFlight: 1, waiting: 0 }]);
      gates.open();
      await first;
      expect(gates.startedCount).to.equal(1);
    });

    it('lists the busiest keys only, most runs first', async () => {
      const executor = create({ threads: 1, maxConcurrentPerKey: 1 });
      const gates = new Gates();
      const runs: Promise<unknown>[] = [];
      // Key k<i> has i + 1 runs: one in flight, i waiting.
      for (let i = 0; i < 14; i++) {
        for (let j = 0; j <= i; j++) runs.push(executor.executePipeline({ nodes: [gates.node('wait')], concurrencyKey: `k${i}` }));
      }
      await gates.started(14);
      const { keys } = executor.stats();
      expect(keys.map((entry) => entry.key)).to.deep.equal(['k13', 'k12', 'k11', 'k10', 'k9', 'k8', 'k7', 'k6', 'k5', 'k4']);
      expect(keys[0]).to.deep.equal({ key: 'k13', inFlight: 1, waiting: 13 });
      gates.open();
      await Promise.all(runs);
    });
  });
});
