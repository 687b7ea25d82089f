/**
 * No single bad run can hurt the executor: a module whose load hangs or is slow, a loop
 * a node leaves behind, hostile ids, huge definitions, bad durations, inputs that
 * cannot be posted. Two threads, node timeout 300 ms, pipeline timeout 3 s, grace 50 ms.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { expect } from 'chai';
import {
  NodeTimeoutException,
  PipelineDefinitionError,
  transfer,
  type NodeDefinition,
  type PipelineExecutor,
  type ThreadExit,
} from '../src/index';
import { planPipeline } from '../src/plan/plan';
import { ORPHAN_MS, ORPHAN_WINDOW_MS, WATCH_MS } from '../src/pool/watchdog';
import { Gates } from './gates';
import { Probe, STARTED, fixture, rejection, useExecutors } from './helpers';

const timeouts = { nodeTimeoutMs: 300, pipelineTimeoutMs: 3_000, cleanupGraceMs: 50 };
const increment = fixture('increment.js');
const sleepAdd = fixture('sleep-add.js');
const identity = fixture('identity.js');

/** Waits for the executor's next thread exit for `reason`. */
function nextExit(executor: PipelineExecutor, reason: ThreadExit['reason']): Promise<ThreadExit> {
  return new Promise((resolve) => {
    const listener = (exit: ThreadExit): void => {
      if (exit.reason !== reason) return;
      executor.off('threadExit', listener);
      resolve(exit);
    };
    executor.on('threadExit', listener);
  });
}

/** The executor's next thread exit as orphaned, and its exits for any other reason. */
function watchExits(executor: PipelineExecutor): { orphaned: Promise<ThreadExit>; others: ThreadExit[] } {
  const orphaned = nextExit(executor, 'orphaned');
  const others: ThreadExit[] = [];
  executor.on('threadExit', (exit) => {
    if (exit.reason !== 'orphaned') others.push(exit);
  });
  return { orphaned, others };
}

/** `count` seed-like runs (three 10 ms nodes) at once; all must succeed. */
async function normalRuns(executor: PipelineExecutor, count: number): Promise<void> {
  const nodes: NodeDefinition[] = ['a', 'b', 'c'].map((id) => ({ id, module: sleepAdd }));
  const results = await Promise.all(Array.from({ length: count }, () => executor.executePipeline({ nodes, initialInput: 0 })));
  expect(results).to.deep.equal(new Array(count).fill(3));
}

describe('bad runs harm no other run', function () {
  this.timeout(30_000);
  const newExecutor = useExecutors();

  describe('loading a module is part of its node', () => {
    it('a module whose load never ends fails as a NodeTimeoutException naming its node, and its thread is replaced', async () => {
      const executor = newExecutor({ threads: 2, timeouts });
      await executor.ready();
      const terminated = nextExit(executor, 'terminated');
      const started = performance.now();
      const error = await rejection(executor.executePipeline({ nodes: [{ id: 'first', module: increment }, { id: 'load', module: fixture('hang-on-load.js') }], initialInput: 1 }));
      expect(error).to.be.instanceOf(NodeTimeoutException);
      expect((error as NodeTimeoutException).nodeId).to.equal('load');
      expect(performance.now() - started).to.be.below(timeouts.pipelineTimeoutMs);
      await terminated;
      expect(executor.stats().terminations).to.equal(1);
      await normalRuns(executor, 20);
    });

    for (const module of ['slow-load.js', 'slow-load.mjs']) {
      it(`a slow load (${module}) is blamed on its own node, never on the nodes of other runs on its thread`, async () => {
        const executor = newExecutor({ threads: 1, timeouts });
        await executor.ready();
        // Neighbours wait on timers on the only thread while the module loads for 1.5 s.
        const neighbours = Array.from({ length: 10 }, () => executor.executePipeline({ nodes: [{ id: 'wait', module: sleepAdd, params: { ms: 100 } }], initialInput: 0 }));
        const slow = executor.executePipeline({ nodes: [{ id: 'slow', module: fixture(module), timeoutMs: 10_000 }], initialInput: 1, timeouts: { pipelineTimeoutMs: 20_000 } });
        expect(await slow).to.equal(2);
        expect(await Promise.all(neighbours)).to.deep.equal(new Array(10).fill(1));
      });
    }

    it('a slow load past its node timeout fails that node alone', async () => {
      const executor = newExecutor({ threads: 1, timeouts });
      await executor.ready();
      const neighbours = Array.from({ length: 10 }, () => executor.executePipeline({ nodes: [{ id: 'wait', module: sleepAdd, params: { ms: 100 } }], initialInput: 0 }));
      const error = await rejection(executor.executePipeline({ nodes: [{ id: 'slow', module: fixture('slow-load.js') }], initialInput: 1 }));
      expect(error).to.be.instanceOf(NodeTimeoutException);
      expect((error as NodeTimeoutException).nodeId).to.equal('slow');
      expect(await Promise.all(neighbours)).to.deep.equal(new Array(10).fill(1));
    });
  });

  describe('a thread held by code no live node owns', () => {
    for (const via of ['timer', 'promise', 'interval'] as const) {
      it(`is terminated and replaced when a node leaves a loop behind (in ${via === 'interval' ? 'an' : 'a'} ${via}), and later runs succeed`, async () => {
        const probe = new Probe();
        const executor = newExecutor({ threads: 2, timeouts });
        await executor.ready();
        const { orphaned, others: crashedOrTimedOut } = watchExits(executor);
        const started = performance.now();
        expect(await executor.executePipeline({ nodes: [{ id: 'leave', module: fixture('leave-loop.js'), params: { via, probe: probe.buffer } }], initialInput: 7 })).to.equal(7);
        // Runs sent once the loop holds its thread, some of them to it, all succeed:
        // none is blamed.
        await probe.until(STARTED);
        await normalRuns(executor, 40);
        const exit = await orphaned;
        expect(performance.now() - started).to.be.below(Math.max(ORPHAN_MS, ORPHAN_WINDOW_MS) + 4 * WATCH_MS + 2_000);
        expect(exit.nodeId).to.equal(undefined);
        expect(crashedOrTimedOut).to.deep.equal([]);
        const stats = executor.stats();
        expect(stats.terminations).to.equal(1);
        expect(stats.runs.error + stats.runs.timeout).to.equal(0);
        await normalRuns(executor, 20);
        expect(executor.stats().threads).to.equal(2);
      });
    }

    // Where AsyncLocalStorage runs on AsyncContextFrame (Node 24), only promise
    // continuations and timers are marked (workers/orphans.ts).
    const everyCallback = typeof (new AsyncLocalStorage() as unknown as { kResourceStore?: unknown }).kResourceStore === 'symbol';
    const leftIn = { then: 'promise continuations (a then chain)', async: 'promise continuations (an async function)', tick: 'a nextTick callback' };
    for (const via of ['then', 'async', 'tick'] as const) {
      (via === 'tick' && !everyCallback ? it.skip : it)(`is terminated and replaced when a node leaves a loop in ${leftIn[via]}, while a node of another run awaits on that thread: that node neither fails nor is blamed`, async () => {
        const gates = new Gates();
        const probe = new Probe();
        const executor = newExecutor({ threads: 1, timeouts });
        await executor.ready();
        const { orphaned, others } = watchExits(executor);
        // A live node on the only thread, awaiting the gate, with the 300 ms node timeout:
        // the loop's time must not count against it.
        const live = executor.executePipeline({ nodes: [{ ...gates.node('wait'), id: 'live' }], initialInput: 1, timeouts: { pipelineTimeoutMs: 20_000 } });
        const liveEnd = live.then(
          (output) => ({ output }),
          (error: unknown) => ({ error }),
        );
        await gates.started(1);
        const started = performance.now();
        expect(await executor.executePipeline({ nodes: [{ id: 'leave', module: fixture('leave-loop.js'), params: { via, probe: probe.buffer } }], initialInput: 7 })).to.equal(7);
        await probe.until(STARTED);
        // The watchdog ends the thread before anything ends the live node...
        const first = await Promise.race([orphaned, liveEnd.then((end) => ({ live: end }))]);
        if ('live' in first) expect.fail(`the live node ended first: ${'error' in first.live ? String(first.live.error) : 'it completed'}`);
        expect(performance.now() - started).to.be.below(ORPHAN_MS + 4 * WATCH_MS + 2_000);
        expect(first.nodeId).to.equal(undefined);
        // ...which is sent again to the replacement thread and completes there.
        await gates.started(2);
        gates.open();
        expect(await liveEnd).to.deep.equal({ output: 1 });
        expect(others).to.deep.equal([]);
        const stats = executor.stats();
        expect(stats.terminations).to.equal(1);
        expect(stats.runs.error + stats.runs.timeout).to.equal(0);
        expect(stats.threads).to.equal(1);
      });
    }
  });

  describe('definitions', () => {
    it('lets node ids that are Object.prototype names flow like any other', async () => {
      const executor = newExecutor({ threads: 2, timeouts });
      const ids = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];
      const nodes: NodeDefinition[] = [
        { id: 'root', module: increment },
        ...ids.map((id) => ({ id, module: increment, dependsOn: ['root'] })),
        { id: 'join', module: identity, dependsOn: ids },
        { id: 'valueOf', module: increment, dependsOn: ['root'] },
      ];
      const result = (await executor.executePipeline({ nodes, initialInput: 0 })) as Record<string, unknown>;
      expect(Object.getPrototypeOf(result)).to.equal(Object.prototype);
      expect(Object.keys(result).sort()).to.deep.equal(['join', 'valueOf']);
      expect(Object.hasOwn(result, 'valueOf') && result.valueOf).to.equal(2);
      const join = result.join as Record<string, unknown>;
      expect(Object.keys(join).sort()).to.deep.equal([...ids].sort());
      for (const id of ids) expect(Object.getOwnPropertyDescriptor(join, id)?.value).to.equal(2);
    });

    it('checks a 100,000-node chain, DAG or cycle in well under a second, without recursion', () => {
      const count = 100_000;
      const chain = Array.from({ length: count }, (_, i) => ({ id: `n${i}`, module: increment }));
      const dag = chain.map((node, i) => ({ ...node, dependsOn: i === 0 ? [] : i < 2 ? ['n0'] : [`n${i - 1}`, `n${i - 2}`] }));
      const cycle = chain.map((node, i) => ({ ...node, dependsOn: [`n${(i + count - 1) % count}`] }));
      for (const [name, nodes] of [['chain', chain], ['dag', dag], ['cycle', cycle]] as const) {
        // The garbage of the tests before is not the planner's to collect.
        global.gc?.();
        const started = performance.now();
        let error: unknown;
        try {
          planPipeline({ pipelineId: `big-${name}`, nodes });
        } catch (caught) {
          error = caught;
        }
        const took = performance.now() - started;
        expect(took, `${name} took ${took.toFixed(0)} ms`).to.be.below(1_000);
        if (name === 'cycle') {
          expect(error).to.be.instanceOf(PipelineDefinitionError);
          expect((error as Error).message).to.match(/dependency cycle: (n\d+ -> ){6}\.\.\. \(99990 more\) -> (n\d+ -> ){4}n\d+$/);
        } else {
          expect(error).to.equal(undefined);
        }
      }
    });

    it('refuses a duration that setTimeout cannot honour with a RangeError naming it', async () => {
      expect(() => newExecutor({ timeouts: { cleanupGraceMs: 2 ** 31 } })).to.throw(RangeError, /`timeouts.cleanupGraceMs`/);
      expect(() => newExecutor({ closeTimeoutMs: 2 ** 40 })).to.throw(RangeError, /`closeTimeoutMs`/);
      const executor = newExecutor({ threads: 1, timeouts: { cleanupGraceMs: 2 ** 31 - 1, pipelineTimeoutMs: Infinity } });
      expect(await executor.executePipeline({ nodes: [{ id: 'a', module: increment }], initialInput: 1 })).to.equal(2);
      const node = await rejection(executor.executePipeline({ nodes: [{ id: 'a', module: increment, timeoutMs: 2 ** 31 }] }));
      expect(node).to.be.instanceOf(PipelineDefinitionError);
      expect((node as Error).message).to.match(/timeoutMs/);
    });

    it('rejects a bad per-run `timeouts` as a PipelineDefinitionError, like the rest of the request', async () => {
      const executor = newExecutor({ threads: 1 });
      for (const bad of [{ nodeTimeoutMs: -1 }, { pipelineTimeoutMs: 'soon' }, { cleanupGraceMs: 2 ** 31 }, { nodeTimeout: 5 }]) {
        const error = await rejection(executor.executePipeline({ nodes: [{ id: 'a', module: increment }], timeouts: bad as never }));
        expect(error).to.be.instanceOf(PipelineDefinitionError);
        expect((error as PipelineDefinitionError).cause).to.be.instanceOf(Error);
      }
    });
  });

  it('fails only its own run when an input marked with transfer() cannot be posted', async () => {
    const executor = newExecutor({ threads: 1, timeouts });
    await executor.ready();
    // Several runs submitted in one turn travel in one batch.
    const good = Array.from({ length: 5 }, (_, i) => executor.executePipeline({ nodes: [{ id: 'ok', module: increment }], initialInput: i }));
    const unpostable = { data: new Uint8Array(4) };
    transfer(unpostable, [new SharedArrayBuffer(8) as unknown as ArrayBuffer]);
    const bad = executor.executePipeline({ pipelineId: 'bad', nodes: [{ id: 'takes', module: increment }], initialInput: unpostable });
    const error = await rejection(bad);
    expect(error).to.be.instanceOf(PipelineDefinitionError);
    expect((error as PipelineDefinitionError).nodeId).to.equal('takes');
    expect(await Promise.all(good)).to.deep.equal([1, 2, 3, 4, 5]);
  });
});
