import { expect } from 'chai';
import {
  CancellationException,
  MapElementsFailedException,
  MapInputError,
  NodeTimeoutException,
  PipelineDefinitionError,
  PipelineFailedException,
  WorkerCrashedException,
  type ProgressEvent,
} from '../src/index';
import { ABORTED, CLEANUP, Probe, STARTED, fixture, rejection, useExecutors } from './helpers';

const elements = fixture('map-element.js');
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

interface Described {
  input: number;
  index: number;
  attempt: number;
  thread: number;
}

describe('map nodes', () => {
  const newExecutor = useExecutors();

  it('runs the function once per element, gives the results in input order with ctx.index, in parallel on the threads', async () => {
    const executor = newExecutor({ threads: 2 });
    const output = (await executor.executePipeline({
      nodes: [{ id: 'each', module: elements, export: 'describe', map: true }],
      initialInput: range(200).map((i) => i * 10),
    })) as Described[];
    expect(output).to.have.length(200);
    output.forEach((entry, i) => expect(entry).to.include({ input: i * 10, index: i, attempt: 1 }));
    // Elements that must meet run at once, on both threads.
    const probe = new SharedArrayBuffer(4);
    const met = (await executor.executePipeline({
      nodes: [{ id: 'meet', module: fixture('rendezvous.js'), params: { probe, parties: 2 }, map: true }],
      initialInput: [0, 1],
    })) as string[];
    expect(met).to.deep.equal(['meet', 'meet']);
  });

  it('fails with MapInputError naming the node when its input is no array', async () => {
    const executor = newExecutor();
    const chain = await executor.executePipeline({
      nodes: [
        { id: 'add', module: fixture('increment.js') },
        { id: 'double', module: elements, export: 'failSome', params: { fail: [] }, map: { concurrency: 3 } },
      ],
      initialInput: 1,
    }).catch((error: unknown) => error);
    // increment gives a number: a map over it fails, naming the node.
    expect(chain).to.be.instanceOf(MapInputError);
    expect(chain).to.include({ nodeId: 'double', code: 'ERR_MAP_INPUT' });
    expect((chain as Error).message).to.contain('"double"').and.contain('takes an array, got a number');
  });

  it('takes the output of the node before and gives its array on to the next', async () => {
    const executor = newExecutor();
    const chain = await executor.executePipeline({
      nodes: [
        { id: 'parse', module: fixture('identity.js') },
        { id: 'double', module: elements, export: 'failSome', params: { fail: [] }, map: { concurrency: 2 } },
        { id: 'last', module: fixture('identity.js') },
      ],
      initialInput: [5, 6, 7],
    });
    expect(chain).to.deep.equal([10, 12, 14]);
    const dag = await executor.executePipeline({
      nodes: [
        { id: 'doubled', module: elements, export: 'failSome', params: { fail: [] }, map: true },
        { id: 'again', module: elements, export: 'failSome', params: { fail: [] }, map: true, dependsOn: ['doubled'] },
        { id: 'count', module: fixture('identity.js'), dependsOn: ['again', 'doubled'] },
      ],
      initialInput: [1, 2, 3],
    });
    expect(dag).to.deep.equal({ again: [4, 8, 12], doubled: [2, 4, 6] });
  });

  it('gives [] for an empty array without running the function', async () => {
    const executor = newExecutor();
    const output = await executor.executePipeline({ nodes: [{ id: 'each', module: elements, export: 'spinOne', params: { spin: 0 }, map: true }], initialInput: [] });
    expect(output).to.deep.equal([]);
  });

  it('retries each element on its own, as retries and retryOn say', async () => {
    const executor = newExecutor();
    const output = (await executor.executePipeline({
      nodes: [{ id: 'each', module: elements, export: 'failSome', params: { fail: [1, 4], times: 2 }, map: true, retries: 2, backoff: { baseMs: 1, maxMs: 1 } }],
      initialInput: [1, 2, 3, 4, 5],
    })) as number[];
    expect(output).to.deep.equal([2, 4, 6, 8, 10]);

    const asked: [number, number][] = [];
    const error = await rejection(
      executor.executePipeline({
        nodes: [
          {
            id: 'each',
            module: elements,
            export: 'failSome',
            params: { fail: [3], times: 5 },
            map: true,
            retries: 5,
            backoff: { baseMs: 1, maxMs: 1 },
            retryOn: (failure, attempt) => {
              asked.push([(failure as { index: number }).index, attempt]);
              return attempt < 2;
            },
          },
        ],
        initialInput: [1, 2, 3, 4],
      }),
    );
    expect(error).to.be.instanceOf(Error).and.include({ index: 3, code: 'E_ELEMENT', nodeId: 'each' });
    expect((error as Error).message).to.equal('element 3 failed on attempt 2');
    expect(asked).to.deep.equal([
      [3, 1],
      [3, 2],
    ]);
  });

  it('without failFast, the other elements run to their end and PipelineFailedException says which elements failed', async () => {
    const executor = newExecutor();
    const error = (await rejection(
      executor.executePipeline({
        pipelineId: 'batch',
        nodes: [
          { id: 'each', module: elements, export: 'failSome', params: { fail: [4, 1] }, map: true },
          { id: 'side', module: fixture('increment.js'), dependsOn: [] },
        ],
        initialInput: 1,
        failFast: false,
      }),
    )) as PipelineFailedException;
    // `each` takes the input 1: not an array.
    expect(error).to.be.instanceOf(PipelineFailedException);
    expect(error.errors['each']).to.be.instanceOf(MapInputError);

    const failed = (await rejection(
      executor.executePipeline({
        pipelineId: 'batch',
        nodes: [{ id: 'each', module: elements, export: 'failSome', params: { fail: [4, 1] }, map: true }],
        initialInput: range(8),
        failFast: false,
      }),
    )) as PipelineFailedException;
    expect(failed).to.be.instanceOf(PipelineFailedException);
    expect(failed.failedNodes).to.deep.equal(['each']);
    expect(failed.failedElements).to.deep.equal({ each: [1, 4] });
    const mapError = failed.errors['each'] as MapElementsFailedException;
    expect(mapError).to.be.instanceOf(MapElementsFailedException);
    expect(mapError).to.include({ code: 'ERR_MAP_ELEMENTS_FAILED', nodeId: 'each', elements: 8 });
    expect(mapError.failedIndexes).to.deep.equal([1, 4]);
    expect(mapError.errors.map((e) => (e as { index: number }).index)).to.deep.equal([1, 4]);
    expect(failed.message).to.contain('2 of 8 element(s)').and.contain('index 1, 4');
  });

  it('stops a CPU loop past the node timeout: the run rejects with the timeout naming the element, and the others are stopped', async () => {
    const executor = newExecutor({ threads: 2, timeouts: { cleanupGraceMs: 20 } });
    const probe = new Probe();
    const error = (await rejection(
      executor.executePipeline({
        nodes: [{ id: 'each', module: elements, export: 'spinOne', params: { spin: 5, probe: probe.buffer }, map: true, timeoutMs: 100 }],
        initialInput: range(10),
      }),
    )) as NodeTimeoutException & { index: number };
    expect(error).to.be.instanceOf(NodeTimeoutException);
    expect(error).to.include({ nodeId: 'each', index: 5, timeoutMs: 100 });
    expect(probe.get(STARTED)).to.equal(1);
    // The spinning thread was terminated; the pool serves the next run.
    expect(executor.stats().terminations).to.be.at.least(1);
    expect(await executor.executePipeline({ nodes: [{ id: 'one', module: fixture('increment.js') }], initialInput: 1 })).to.equal(2);
  });

  it('retries an element that took its thread down, or fails the run with WorkerCrashedException naming it', async () => {
    const executor = newExecutor({ threads: 2, timeouts: { cleanupGraceMs: 20 } });
    const output = await executor.executePipeline({
      nodes: [{ id: 'each', module: elements, export: 'exitOnce', params: { index: 2 }, map: true, retries: 1, backoff: { baseMs: 1, maxMs: 1 } }],
      initialInput: [10, 11, 12, 13],
    });
    expect(output).to.deep.equal([10, 11, 12, 13]);
    const crash = await rejection(
      executor.executePipeline({
        nodes: [{ id: 'each', module: elements, export: 'exitOnce', params: { index: 1 }, map: true }],
        initialInput: [10, 11, 12],
      }),
    );
    expect(crash).to.be.instanceOf(WorkerCrashedException).and.include({ nodeId: 'each', index: 1, exitCode: 7 });
  });

  it('cancellation stops every element in flight (two-phase) before the run rejects', async () => {
    const executor = newExecutor({ timeouts: { cleanupGraceMs: 5_000 } });
    const probe = new Probe();
    const controller = new AbortController();
    const run = executor.executePipeline({
      nodes: [{ id: 'each', module: fixture('honour-signal.js'), params: { probe: probe.buffer }, map: true }],
      initialInput: range(6),
      signal: controller.signal,
    });
    await probe.until(STARTED, 6);
    controller.abort(new Error('enough'));
    const error = (await rejection(run)) as CancellationException;
    expect(error).to.be.instanceOf(CancellationException);
    expect(probe.get(ABORTED)).to.equal(6);
    expect(probe.get(CLEANUP)).to.equal(6);
    expect(executor.stats().terminations).to.equal(0);
  });

  it('cancellation terminates the threads of elements that ignore their signal', async () => {
    const executor = newExecutor({ threads: 2, timeouts: { cleanupGraceMs: 20 } });
    const probe = new Probe();
    const controller = new AbortController();
    const run = executor.executePipeline({
      nodes: [{ id: 'each', module: elements, export: 'spinOne', params: { spin: 0, probe: probe.buffer }, map: true }],
      initialInput: range(3),
      signal: controller.signal,
    });
    await probe.until(STARTED);
    controller.abort();
    expect(await rejection(run)).to.be.instanceOf(CancellationException);
    expect(executor.stats().terminations).to.equal(1);
  });

  it('with failFast, a failed element stops the others in flight and the run rejects with its error', async () => {
    const executor = newExecutor({ timeouts: { cleanupGraceMs: 5_000 } });
    const waiting = new Probe();
    const run = executor.executePipeline({
      nodes: [
        { id: 'wait', module: fixture('honour-signal.js'), params: { probe: waiting.buffer }, map: true },
        { id: 'fail', module: elements, export: 'failSome', params: { fail: [2], after: waiting.buffer, started: 4 }, map: true, dependsOn: [] },
      ],
      initialInput: range(4),
    });
    const error = await rejection(run);
    expect(error).to.be.instanceOf(Error).and.include({ index: 2, nodeId: 'fail', code: 'E_ELEMENT' });
    // Every waiting element was stopped through its signal.
    expect(waiting.get(STARTED)).to.equal(4);
    expect(waiting.get(ABORTED)).to.equal(4);
    expect(waiting.get(CLEANUP)).to.equal(4);
  });

  it('holds at most `concurrency` elements of a run in flight', async () => {
    const executor = newExecutor({ threads: 2 });
    const cells = new SharedArrayBuffer(4 * 64);
    const output = await executor.executePipeline({
      nodes: [{ id: 'each', module: fixture('occupancy.js'), params: { probe: cells, ms: 5 }, map: { concurrency: 3 } }],
      initialInput: range(30),
    });
    expect(output).to.deep.equal(range(30));
    const seen = new Int32Array(cells);
    expect(Atomics.load(seen, 1)).to.be.within(1, 3);
    expect(Atomics.load(seen, 2)).to.equal(30);
  });

  it('reports ctx.progress per element, with its index', async () => {
    const executor = newExecutor();
    const events: ProgressEvent[] = [];
    await executor.executePipeline({
      nodes: [{ id: 'each', module: elements, export: 'describe', params: { progress: true }, map: true }],
      initialInput: range(5),
      onProgress: (event) => events.push(event),
    });
    const byIndex = events.map((event) => [event.nodeId, event.index, event.value]).sort((a, b) => (a[1] as number) - (b[1] as number));
    expect(byIndex).to.deep.equal(range(5).map((i) => ['each', i, `element ${i}`]));
  });

  it('refuses a bad `map` option before anything runs, naming the node and what is wrong', async () => {
    const executor = newExecutor();
    const cases: [unknown, string][] = [
      ['yes', 'Expected `map` of node "each" to be a boolean or { concurrency }, got `"yes"` (string)'],
      [{ concurrency: 0 }, 'Expected `map.concurrency` of node "each" to be a positive integer or Infinity, got `0` (number)'],
      [{ concurrency: 1.5 }, 'Expected `map.concurrency` of node "each" to be a positive integer or Infinity'],
      [{ limit: 2 }, '`map` of node "each" has an unknown key `limit`; the known key is: concurrency'],
    ];
    for (const [map, message] of cases) {
      const error = await rejection(
        executor.executePipeline({ nodes: [{ id: 'each', module: elements, export: 'describe', map: map as boolean }], initialInput: [1] }),
      );
      expect(error).to.be.instanceOf(PipelineDefinitionError).and.include({ nodeId: 'each' });
      expect((error as Error).message).to.contain(message);
    }
  });
});
