import { expect } from 'chai';
import { CancellationException, NodeTimeoutException, PipelineTimeoutException, type Backend, type NodeDefinition, type SegmentJob } from '../src/index';
import type { ResolvedOptions } from '../src/options';
import { PiscinaDispatcher } from '../src/pool/piscina-dispatcher';
import { Gates } from './gates';
import { ABORTED, CLEANUP, COMPLETED, Probe, STARTED, fixture, rejection, useExecutors } from './helpers';

const sleepAdd = fixture('sleep-add.js');

describe('timeouts', () => {
  const newExecutor = useExecutors();

  describe('node timeout', () => {
    it('stops a node that ignores its signal by terminating its thread; it never completes', async () => {
      const executor = newExecutor({ timeouts: { nodeTimeoutMs: 200, cleanupGraceMs: 20 } });
      const probe = new Probe();
      const error = await rejection(
        executor.executePipeline({
          pipelineId: 'slow',
          nodes: [{ id: 'waits', module: fixture('notify-then-wait.js'), params: { ms: 2_000, probe: probe.buffer } }],
          initialInput: 0,
        }),
      );
      expect(error).to.be.instanceOf(NodeTimeoutException);
      expect(error).to.include({ nodeId: 'waits', pipelineId: 'slow', timeoutMs: 200 });
      expect(probe.get(COMPLETED)).to.equal(0);
      expect(executor.stats().terminations).to.equal(1);
    });

    it('is enforced for a backend of your own that does not report sends: it is watched from submit', async () => {
      let sends = 0;
      // The embedded pool, less its reports of sends: what a dispatcher written without them does.
      const backend: Backend = {
        name: 'no-sends',
        createDispatcher: (options, events) =>
          // The executor hands a backend its resolved options, which the pool takes.
          new Proxy(new PiscinaDispatcher(options as ResolvedOptions, events), {
            get(target, key) {
              if (key === 'reportsSends') return undefined;
              if (key === 'submit') {
                return (job: SegmentJob) => {
                  const { listener } = job;
                  return target.submit({
                    run: job.run,
                    nodes: job.nodes,
                    segmentId: job.segmentId,
                    first: job.first,
                    element: job.element,
                    attempts: job.attempts,
                    input: job.input,
                    reportStarts: job.reportStarts,
                    timeouts: job.timeouts,
                    graceMs: job.graceMs,
                    deadline: job.deadline,
                    priority: job.priority,
                    concurrencyKey: job.concurrencyKey,
                    listener: {
                      nodeStarted: (position, startedAt) => listener.nodeStarted(position, startedAt),
                      nodeCompleted: (position, output, startedAt, endedAt, moved) => listener.nodeCompleted(position, output, startedAt, endedAt, moved),
                      progress: (position, value) => listener.progress(position, value),
                      settled: (settlement, startedAt) => listener.settled(settlement, startedAt),
                      sent: () => void sends++,
                    },
                  });
                };
              }
              const value: unknown = Reflect.get(target, key, target);
              return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
            },
          }),
      };
      const executor = newExecutor({ backend, timeouts: { nodeTimeoutMs: 200, cleanupGraceMs: 20 } });
      const waits = { module: fixture('notify-then-wait.js'), params: { ms: 2_000, probe: new Probe().buffer } };
      const chain = await rejection(executor.executePipeline({ nodes: [{ id: 'waits', ...waits }], initialInput: 0 }));
      expect(chain).to.be.instanceOf(NodeTimeoutException);
      expect(chain).to.include({ nodeId: 'waits', timeoutMs: 200 });
      const map = await rejection(executor.executePipeline({ nodes: [{ id: 'each', ...waits, map: true }], initialInput: [0, 1] }));
      expect(map).to.be.instanceOf(NodeTimeoutException);
      expect(map).to.include({ nodeId: 'each', timeoutMs: 200 });
      expect(sends, 'segments the pool sent, unreported').to.be.at.least(3);
    });

    it('stops a CPU loop that never yields, and the pool serves the next run', async () => {
      const executor = newExecutor({ threads: 1, timeouts: { nodeTimeoutMs: 150, cleanupGraceMs: 20 } });
      const probe = new Probe();
      const error = await rejection(
        executor.executePipeline({
          nodes: [
            { id: 'spin', module: fixture('notify-then-spin.js'), params: { probe: probe.buffer } },
            { id: 'after', module: sleepAdd, params: { probe: new Probe().buffer } },
          ],
        }),
      );
      expect(error).to.be.instanceOf(NodeTimeoutException);
      expect((error as NodeTimeoutException).nodeId).to.equal('spin');
      expect(executor.stats().terminations).to.equal(1);
      expect(await executor.executePipeline({ nodes: [{ id: 'next', module: sleepAdd }], initialInput: 1 })).to.equal(2);
    });

    it('stops a node that loops in its own promise continuation (after an await) at its node timeout: the loop is its own, not an orphan', async () => {
      const executor = newExecutor({ threads: 1, timeouts: { nodeTimeoutMs: 150, cleanupGraceMs: 20 } });
      const reasons: string[] = [];
      executor.on('threadExit', (exit) => reasons.push(exit.reason));
      const error = await rejection(executor.executePipeline({ nodes: [{ id: 'spin', module: fixture('announce-add.js'), params: { spin: true, ms: 5 } }], initialInput: 0 }));
      expect(error).to.be.instanceOf(NodeTimeoutException);
      expect((error as NodeTimeoutException).nodeId).to.equal('spin');
      expect(executor.stats().terminations).to.equal(1);
      expect(await executor.executePipeline({ nodes: [{ id: 'next', module: sleepAdd }], initialInput: 1 })).to.equal(2);
      expect(reasons).to.deep.equal(['terminated']);
    });

    it('lets a node that honours its signal stop by itself: its cleanup runs, its thread lives', async () => {
      const executor = newExecutor({ timeouts: { nodeTimeoutMs: 100, cleanupGraceMs: 5_000 } });
      const probe = new Probe();
      const error = await rejection(
        executor.executePipeline({
          nodes: [{ id: 'polite', module: fixture('honour-signal.js'), params: { probe: probe.buffer } }],
        }),
      );
      expect(error).to.be.instanceOf(NodeTimeoutException);
      expect(probe.get(ABORTED)).to.equal(1);
      expect(probe.get(CLEANUP)).to.equal(1);
      expect(probe.get(COMPLETED)).to.equal(0);
      expect(executor.stats().terminations).to.equal(0);
    });

    it('counts from when the node starts, not while it waits for a free slot', async () => {
      // One thread holding one task at a time: the second run waits 150 ms for the first.
      const executor = newExecutor({ threads: 1, tasksPerThread: 1, timeouts: { nodeTimeoutMs: 250 } });
      const node = (id: string): NodeDefinition[] => [{ id, module: sleepAdd, params: { ms: 150 } }];
      const results = await Promise.all([
        executor.executePipeline({ nodes: node('first'), initialInput: 0 }),
        executor.executePipeline({ nodes: node('second'), initialInput: 10 }),
      ]);
      expect(results).to.deep.equal([1, 11]);
    });

    it('does not count the time another node held the thread with synchronous code', async () => {
      const executor = newExecutor({ threads: 1, timeouts: { nodeTimeoutMs: 10_000 } });
      const waiting = new Probe();
      // An async node with 200 ms of timeout, which needs 50 ms of it...
      const patient = executor.executePipeline({
        nodes: [{ id: 'patient', module: sleepAdd, timeoutMs: 200, params: { ms: 50, probe: waiting.buffer } }],
        initialInput: 0,
      });
      await waiting.until(STARTED);
      // ...shares its thread with a node that holds it for 400 ms.
      const hog = executor.executePipeline({ nodes: [{ id: 'hog', module: fixture('busy.js'), params: { ms: 400 } }], initialInput: 0 });
      expect(await Promise.all([patient, hog])).to.deep.equal([1, 1]);
    });

    it("takes a node's own timeoutMs over the run's", async () => {
      const executor = newExecutor({ timeouts: { nodeTimeoutMs: 60_000 } });
      const error = await rejection(
        executor.executePipeline({
          nodes: [
            { id: 'quick', module: sleepAdd, timeoutMs: 1_000 },
            { id: 'strict', module: fixture('honour-signal.js'), timeoutMs: 50, params: {} },
          ],
          initialInput: 0,
        }),
      );
      expect(error).to.include({ nodeId: 'strict', timeoutMs: 50 });
    });
  });

  describe('pipeline timeout', () => {
    it('counts from the call and reports the completed nodes and their outputs', async () => {
      const executor = newExecutor({ timeouts: { pipelineTimeoutMs: 300, cleanupGraceMs: 20 } });
      await executor.ready();
      const probe = new Probe();
      const error = await rejection(
        executor.executePipeline({
          pipelineId: 'etl',
          nodes: [
            { id: 'extract', module: sleepAdd, params: { ms: 1 } },
            { id: 'transform', module: sleepAdd, params: { ms: 1 } },
            { id: 'load', module: fixture('notify-then-wait.js'), params: { ms: 5_000, probe: probe.buffer } },
            { id: 'never', module: sleepAdd, params: { probe: new Probe().buffer } },
          ],
          initialInput: 0,
        }),
      );
      expect(error).to.be.instanceOf(PipelineTimeoutException);
      const timeout = error as PipelineTimeoutException;
      expect(timeout).to.include({ pipelineId: 'etl', timeoutMs: 300 });
      expect(timeout.completedNodes).to.deep.equal(['extract', 'transform']);
      expect(timeout.partialResults).to.deep.equal({ extract: 1, transform: 2 });
      expect(probe.get(COMPLETED)).to.equal(0);
    });

    it('reports the completed nodes of every branch of a DAG', async () => {
      const executor = newExecutor({ timeouts: { pipelineTimeoutMs: 400, cleanupGraceMs: 20 } });
      await executor.ready();
      const error = (await rejection(
        executor.executePipeline({
          nodes: [
            { id: 'root', module: sleepAdd, params: { ms: 1 } },
            { id: 'fast', module: sleepAdd, params: { ms: 1 }, dependsOn: ['root'] },
            { id: 'slow', module: fixture('honour-signal.js'), params: {}, dependsOn: ['root'] },
            { id: 'join', module: sleepAdd, dependsOn: ['fast', 'slow'] },
          ],
          initialInput: 0,
        }),
      )) as PipelineTimeoutException;
      expect(error).to.be.instanceOf(PipelineTimeoutException);
      expect(error.completedNodes).to.deep.equal(['root', 'fast']);
      expect(error.partialResults).to.deep.equal({ root: 1, fast: 2 });
    });
    it('times out each run at its own deadline, in order, when many share a timeout; one that ends first leaves its place', async () => {
      const executor = newExecutor({ timeouts: { cleanupGraceMs: 50 } });
      await executor.ready();
      const gates = new Gates();
      const runs: { startedAt: number; timeoutMs: number; cancelled: boolean; outcome: Promise<{ error: unknown; at: number }> }[] = [];
      for (let i = 0; i < 24; i++) {
        // Two waves, so that the deadlines of the same timeout lie well apart. Not a
        // handshake: nothing asserted depends on the pause's length, which is measured.
        if (i === 12) await new Promise((resolve) => setTimeout(resolve, 120));
        // Two timeouts, interleaved; runs 0, 5, 10, ... are cancelled, the first of all among them.
        const timeoutMs = i % 2 === 0 ? 300 : 200;
        const startedAt = performance.now();
        const handle = executor.startPipeline({ nodes: [gates.node('wait')], timeouts: { pipelineTimeoutMs: timeoutMs } });
        const outcome = handle.result.then(
          () => ({ error: undefined, at: performance.now() }),
          (error: unknown) => ({ error, at: performance.now() }),
        );
        await gates.started(i + 1);
        const cancelled = i % 5 === 0;
        if (cancelled) handle.cancel('left');
        runs.push({ startedAt, timeoutMs, cancelled, outcome });
      }
      const ended = await Promise.all(runs.map((run) => run.outcome));
      const timedOut: { timeoutMs: number; deadline: number; at: number }[] = [];
      runs.forEach((run, i) => {
        const { error, at } = ended[i]!;
        if (run.cancelled) {
          expect(error, `run ${i}`).to.be.instanceOf(CancellationException);
          return;
        }
        expect(error, `run ${i}`).to.be.instanceOf(PipelineTimeoutException);
        expect((error as PipelineTimeoutException).timeoutMs).to.equal(run.timeoutMs);
        // Never early: at least its own timeout after its own start.
        expect(at - run.startedAt, `run ${i} ended after`).to.be.at.least(run.timeoutMs - 1);
        timedOut.push({ timeoutMs: run.timeoutMs, deadline: run.startedAt + run.timeoutMs, at });
      });
      expect(timedOut).to.have.length(19);
      // Each at its own deadline, not its timeout's first or last: of two runs with the same
      // timeout whose deadlines lie 80 ms apart or more, the earlier ends first.
      let pairs = 0;
      for (const a of timedOut) {
        for (const b of timedOut) {
          if (a.timeoutMs !== b.timeoutMs || b.deadline - a.deadline < 80) continue;
          pairs++;
          expect(a.at, `a run due at ${a.deadline.toFixed(0)} ms ended after one due at ${b.deadline.toFixed(0)} ms`).to.be.below(b.at);
        }
      }
      expect(pairs).to.be.at.least(20);
    });

    it('keeps watching the other runs of a timeout when a listener of a run\'s end throws', async () => {
      const executor = newExecutor({ maxConcurrentPipelines: 1, timeouts: { cleanupGraceMs: 20 } });
      await executor.ready();
      const gates = new Gates();
      // Holds the one place: the runs below wait for admission, and end inside the timer.
      const holder = executor.executePipeline({ nodes: [gates.node('wait')], timeouts: { pipelineTimeoutMs: Infinity } });
      await gates.started(1);
      const thrown: unknown[] = [];
      const mochas = process.listeners('uncaughtException');
      process.removeAllListeners('uncaughtException');
      process.on('uncaughtException', (error) => thrown.push(error));
      let ends = 0;
      executor.on('runEnd', () => {
        if (ends++ === 0) throw new Error('a listener fails');
      });
      try {
        const waiting = Array.from({ length: 3 }, () => rejection(executor.executePipeline({ nodes: [gates.node('wait')], timeouts: { pipelineTimeoutMs: 100 } })));
        // A bound for the failure only: the runs end at about 100 ms.
        const bound = new Promise((resolve) => setTimeout(resolve, 10_000, 'still waiting'));
        const errors = await Promise.race([Promise.all(waiting), bound]);
        expect(errors, 'every waiting run timed out').to.be.an('array').with.length(3);
        for (const error of errors as unknown[]) expect(error).to.be.instanceOf(PipelineTimeoutException);
        expect(thrown.map((error) => (error as Error).message)).to.deep.equal(['a listener fails']);
      } finally {
        process.removeAllListeners('uncaughtException');
        for (const listener of mochas) process.on('uncaughtException', listener);
        gates.open();
        await holder;
      }
    });

    it('times out a run at its deadline when a run started by a listener of its start joins the watch first', async () => {
      const executor = newExecutor({ timeouts: { cleanupGraceMs: 20 } });
      await executor.ready();
      const gates = new Gates();
      const ended: string[] = [];
      let inner: Promise<unknown> | undefined;
      let once = false;
      executor.on('runStart', () => {
        if (once) return;
        once = true;
        // 100 ms of this listener, then another run with the same timeout: it is watched
        // before the outer run, whose deadline is 100 ms earlier.
        const until = performance.now() + 100;
        while (performance.now() < until);
        inner = executor.executePipeline({ nodes: [gates.node('wait')], timeouts: { pipelineTimeoutMs: 200 } }).catch((error: unknown) => {
          ended.push('inner');
          return error;
        });
      });
      const outer = executor.executePipeline({ nodes: [gates.node('wait')], timeouts: { pipelineTimeoutMs: 200 } }).catch((error: unknown) => {
        ended.push('outer');
        return error;
      });
      expect(await outer).to.be.instanceOf(PipelineTimeoutException);
      expect(await inner).to.be.instanceOf(PipelineTimeoutException);
      expect(ended).to.deep.equal(['outer', 'inner']);
    });
  });

  describe('overrides', () => {
    it("replace the executor's timeouts field by field", async () => {
      const executor = newExecutor({ timeouts: { nodeTimeoutMs: 100, pipelineTimeoutMs: 100 } });
      await executor.ready();
      const slowNode: NodeDefinition[] = [{ id: 'slow', module: sleepAdd, params: { ms: 300 } }];
      // Only the pipeline deadline is lifted: the node deadline of 100 ms still holds.
      const error = await rejection(
        executor.executePipeline({ nodes: slowNode, initialInput: 0, timeouts: { pipelineTimeoutMs: 10_000 } }),
      );
      expect(error).to.be.instanceOf(NodeTimeoutException);
      expect(error).to.include({ timeoutMs: 100 });
      // Infinity lifts a deadline.
      const result = await executor.executePipeline({
        nodes: slowNode,
        initialInput: 0,
        timeouts: { nodeTimeoutMs: Infinity, pipelineTimeoutMs: Infinity },
      });
      expect(result).to.equal(1);
    });
  });
});
