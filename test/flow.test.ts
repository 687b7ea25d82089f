import { expect } from 'chai';
import {
  CancellationException,
  NodeTimeoutException,
  PipelineFailedException,
  PipelineTimeoutException,
  QueueFullException,
  type ProgressEvent,
} from '../src/index';
import { NO_RETRY } from '../src/plan/retry';
import { backoffMs, shouldRetry } from '../src/plan/retry';
import { ABORTED, CLEANUP, Probe, RUNS, STARTED, fixture, rejection, useExecutors } from './helpers';

const sleepAdd = fixture('sleep-add.js');
const honour = fixture('honour-signal.js');
const failing = fixture('throw-custom.js');
const flaky = fixture('flaky.js');

describe('failure policy', () => {
  const newExecutor = useExecutors();

  it('by default a failing node stops its in-flight siblings and the run rejects with its error', async () => {
    const executor = newExecutor();
    const sibling = new Probe();
    const error = await rejection(
      executor.executePipeline({
        nodes: [
          { id: 'root', module: sleepAdd, params: { ms: 1 } },
          { id: 'slow', module: honour, params: { probe: sibling.buffer }, dependsOn: ['root'] },
          // Fails once its sibling is running: a sibling not yet started would never start.
          { id: 'fails', module: fixture('flaky.js'), params: { failures: 1, after: sibling.buffer }, dependsOn: ['root'] },
        ],
        initialInput: 0,
      }),
    );
    expect((error as Error).message).to.equal('attempt 1 failed');
    expect(error).to.include({ nodeId: 'fails' });
    expect(sibling.get(ABORTED), 'the sibling was not stopped').to.equal(1);
    expect(sibling.get(CLEANUP)).to.equal(1);
  });

  it('with failFast: false, independent branches run to the end, then a PipelineFailedException', async () => {
    const executor = newExecutor();
    const error = (await rejection(
      executor.executePipeline({
        pipelineId: 'report',
        failFast: false,
        nodes: [
          { id: 'root', module: sleepAdd, params: { ms: 1 } },
          { id: 'broken', module: failing, export: 'nodeFailed', dependsOn: ['root'] },
          { id: 'after-broken', module: sleepAdd, dependsOn: ['broken'] },
          { id: 'left', module: sleepAdd, params: { ms: 50 }, dependsOn: ['root'] },
          { id: 'left-2', module: sleepAdd, params: { ms: 20 }, dependsOn: ['left'] },
          { id: 'join', module: fixture('ops.mjs'), export: 'sum', dependsOn: ['left-2', 'after-broken'] },
        ],
        initialInput: 0,
      }),
    )) as PipelineFailedException;
    expect(error).to.be.instanceOf(PipelineFailedException);
    expect(error.code).to.equal('ERR_PIPELINE_FAILED');
    expect(error.failedNodes).to.deep.equal(['broken']);
    expect((error.errors.broken as Error).message).to.equal('Node failed');
    expect(error.skippedNodes).to.deep.equal(['after-broken', 'join']);
    expect(error.completedNodes).to.deep.equal(['root', 'left', 'left-2']);
    expect(error.partialResults).to.deep.equal({ root: 1, left: 2, 'left-2': 3 });
    expect(error.message).to.equal('Pipeline "report" failed: 1 node(s) failed (broken: Error: Node failed)');
  });

  it('with failFast: false, a node timeout ends only its own branch', async () => {
    const executor = newExecutor({ timeouts: { cleanupGraceMs: 20 } });
    const error = (await rejection(
      executor.executePipeline({
        failFast: false,
        nodes: [
          { id: 'stuck', module: fixture('notify-then-wait.js'), params: { ms: 5_000 }, timeoutMs: 100 },
          { id: 'fine', module: sleepAdd, params: { ms: 150 } },
        ].map((node) => ({ ...node, dependsOn: [] })),
        initialInput: 0,
      }),
    )) as PipelineFailedException;
    expect(error).to.be.instanceOf(PipelineFailedException);
    expect(error.errors.stuck).to.be.instanceOf(NodeTimeoutException);
    expect(error.partialResults).to.deep.equal({ fine: 1 });
  });
});

describe('retries', () => {
  const newExecutor = useExecutors();

  it('retry a failing node, telling it which attempt it is', async () => {
    const executor = newExecutor();
    const runs = new Probe();
    const result = await executor.executePipeline({
      nodes: [{ id: 'flaky', module: flaky, params: { failures: 2, probe: runs.buffer }, retries: 2, backoff: { baseMs: 5 } }],
      initialInput: 'x',
    });
    expect(result).to.deep.equal({ input: 'x', attempt: 3 });
    expect(runs.get(RUNS)).to.equal(3);
  });

  it('retry only the failed node of a chain, resuming with its input', async () => {
    const executor = newExecutor();
    const [before, middle, after] = [new Probe(), new Probe(), new Probe()];
    const result = await executor.executePipeline({
      nodes: [
        { id: 'before', module: sleepAdd, params: { ms: 1, probe: before.buffer } },
        { id: 'middle', module: flaky, params: { failures: 1, probe: middle.buffer }, retries: 1, backoff: { baseMs: 1 } },
        { id: 'after', module: fixture('ops.mjs'), export: 'describe' },
      ],
      initialInput: 41,
    });
    expect((result as { input: unknown }).input).to.deep.equal({ input: 42, attempt: 2 });
    expect([before.get(RUNS), middle.get(RUNS)]).to.deep.equal([1, 2]);
    expect(after.get(RUNS)).to.equal(0); // `after` has no probe: it ran once, as its output shows
  });

  it('give up after the last attempt, with its error', async () => {
    const executor = newExecutor();
    const runs = new Probe();
    const error = await rejection(
      executor.executePipeline({
        nodes: [{ id: 'flaky', module: flaky, params: { failures: 10, probe: runs.buffer }, retries: 2, backoff: { baseMs: 1 } }],
      }),
    );
    expect((error as Error).message).to.equal('attempt 3 failed');
    expect(runs.get(RUNS)).to.equal(3);
  });

  it('ask retryOn on the main thread, with the error and the attempt', async () => {
    const executor = newExecutor();
    const runs = new Probe();
    const asked: [string, number][] = [];
    const error = await rejection(
      executor.executePipeline({
        nodes: [
          {
            id: 'flaky',
            module: flaky,
            params: { failures: 10, code: 'E_FATAL', probe: runs.buffer },
            retries: 5,
            backoff: { baseMs: 1 },
            retryOn: (failure, attempt) => {
              asked.push([(failure as { code: string }).code, attempt]);
              return attempt < 2;
            },
          },
        ],
      }),
    );
    expect((error as Error).message).to.equal('attempt 2 failed');
    expect(asked).to.deep.equal([
      ['E_FATAL', 1],
      ['E_FATAL', 2],
    ]);
    expect(runs.get(RUNS)).to.equal(2);
  });

  it('retry a timed-out node only with retryTimeouts', async () => {
    const executor = newExecutor({ timeouts: { cleanupGraceMs: 50 } });
    const node = { id: 'slow-first', module: fixture('slow-first.js'), timeoutMs: 80, retries: 1, backoff: { baseMs: 1 } };
    const error = await rejection(executor.executePipeline({ nodes: [node], initialInput: 1 }));
    expect(error).to.be.instanceOf(NodeTimeoutException);
    const runs = new Probe();
    const result = await executor.executePipeline({
      nodes: [{ ...node, retryTimeouts: true, params: { probe: runs.buffer } }],
      initialInput: 1,
    });
    expect(result).to.equal(2);
    expect(runs.get(RUNS)).to.equal(2);
    expect(executor.stats().terminations).to.equal(0);
  });

  it('stop retrying at the pipeline timeout', async () => {
    const executor = newExecutor();
    await executor.ready();
    const error = (await rejection(
      executor.executePipeline({
        nodes: [{ id: 'flaky', module: flaky, params: { failures: 1e9 }, retries: 1e6, backoff: { baseMs: 10, maxMs: 20 } }],
        timeouts: { pipelineTimeoutMs: 200 },
      }),
    )) as PipelineTimeoutException;
    expect(error).to.be.instanceOf(PipelineTimeoutException);
    expect(error.completedNodes).to.deep.equal([]);
  });

  it('back off exponentially with full jitter, up to the cap', () => {
    const policy = { ...NO_RETRY, retries: 10, baseMs: 100, maxMs: 1_000 };
    for (let attempt = 1; attempt <= 6; attempt++) {
      const ceiling = Math.min(1_000, 100 * 2 ** (attempt - 1));
      for (let i = 0; i < 200; i++) expect(backoffMs(policy, attempt)).to.be.within(0, ceiling);
    }
    const waits = Array.from({ length: 200 }, () => backoffMs(policy, 4));
    expect(Math.max(...waits) - Math.min(...waits), 'no jitter').to.be.above(100);
    expect(shouldRetry(policy, 'fatal', new Error(), 1)).to.equal(false);
    expect(shouldRetry(policy, 'timeout', new Error(), 1)).to.equal(false);
    expect(shouldRetry({ ...policy, retryTimeouts: true }, 'timeout', new Error(), 1)).to.equal(true);
    expect(shouldRetry(policy, 'error', new Error(), 11)).to.equal(false);
  });
});

describe('progress', () => {
  const newExecutor = useExecutors();

  it("reaches the caller throttled, latest value last, through onProgress and the 'progress' event", async () => {
    const executor = newExecutor({ progressIntervalMs: 50 });
    const seen: ProgressEvent[] = [];
    const events: unknown[] = [];
    executor.on('progress', (event: ProgressEvent) => events.push(event.value));
    const handle = executor.startPipeline({
      pipelineId: 'upload',
      nodes: [{ id: 'chatty', module: fixture('chatty.js'), params: { count: 20_000, ms: 200 } }],
      onProgress: (event) => seen.push(event),
    });
    expect(await handle.result).to.equal(20_000);
    expect(seen.length, 'not throttled').to.be.within(1, 20);
    expect(seen.at(-1)).to.deep.equal({ runId: handle.runId, pipelineId: 'upload', nodeId: 'chatty', value: 19_999 });
    const values = seen.map((event) => event.value as number);
    expect(values).to.deep.equal([...values].sort((a, b) => a - b));
    expect(events).to.deep.equal(values);
  });
});

describe('admission', () => {
  const newExecutor = useExecutors();

  it('maxConcurrentPipelines bounds the runs in flight; the others wait in order', async () => {
    // One thread, so the order runs are admitted in is the order their nodes start in.
    const executor = newExecutor({ threads: 1, maxConcurrentPipelines: 2 });
    const cells = new SharedArrayBuffer(4 * 16);
    const runs = Array.from({ length: 8 }, (_, i) =>
      executor.executePipeline({ nodes: [{ id: 'n', module: fixture('occupancy.js'), params: { probe: cells, ms: 30 } }], initialInput: i }),
    );
    expect(executor.stats().runsQueued).to.equal(6);
    expect(await Promise.all(runs)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7]);
    const view = new Int32Array(cells);
    expect(Atomics.load(view, 1), 'most runs at once').to.equal(2);
    expect([...view.slice(3, 11)]).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('maxQueuedPipelines refuses a run at once with QueueFullException', async () => {
    const executor = newExecutor({ maxConcurrentPipelines: 1, maxQueuedPipelines: 1 });
    const probe = new Probe();
    const running = executor.startPipeline({ nodes: [{ id: 'n', module: honour, params: { probe: probe.buffer } }] });
    const waiting = executor.startPipeline({ nodes: [{ id: 'n', module: sleepAdd }], initialInput: 0 });
    expect(() => executor.startPipeline({ pipelineId: 'third', nodes: [{ id: 'n', module: sleepAdd }] })).to.throw(
      QueueFullException,
      'Pipeline "third" was refused: 1 run(s) are in flight and 1 waiting',
    );
    expect(await rejection(executor.executePipeline({ nodes: [{ id: 'n', module: sleepAdd }] }))).to.be.instanceOf(QueueFullException);
    await probe.until(STARTED);
    running.cancel();
    expect(await rejection(running.result)).to.be.instanceOf(CancellationException);
    expect(await waiting.result).to.equal(1);
  });

  it('a waiting run can be cancelled; it never starts', async () => {
    const executor = newExecutor({ maxConcurrentPipelines: 1 });
    const first = new Probe();
    const second = new Probe();
    const running = executor.startPipeline({ nodes: [{ id: 'n', module: honour, params: { probe: first.buffer } }] });
    const controller = new AbortController();
    const waiting = executor.executePipeline({ nodes: [{ id: 'n', module: sleepAdd, params: { probe: second.buffer } }], signal: controller.signal });
    await first.until(STARTED);
    controller.abort('no longer needed');
    expect(await rejection(waiting)).to.be.instanceOf(CancellationException);
    expect(executor.stats().runsQueued).to.equal(0);
    expect(executor.cancel(running.runId)).to.equal(1);
    await rejection(running.result);
    expect(second.get(RUNS)).to.equal(0);
  });

  it('the pipeline timeout counts the wait', async () => {
    const executor = newExecutor({ maxConcurrentPipelines: 1 });
    const probe = new Probe();
    const running = executor.startPipeline({ nodes: [{ id: 'n', module: honour, params: { probe: probe.buffer } }] });
    await probe.until(STARTED);
    const error = (await rejection(
      executor.executePipeline({ nodes: [{ id: 'n', module: sleepAdd }], timeouts: { pipelineTimeoutMs: 50 } }),
    )) as PipelineTimeoutException;
    expect(error).to.be.instanceOf(PipelineTimeoutException);
    expect(error.completedNodes).to.deep.equal([]);
    running.cancel();
    await rejection(running.result);
  });
});
