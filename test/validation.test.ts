import { expect } from 'chai';
import { pathToFileURL } from 'node:url';
import {
  ExecutorClosedException,
  NodeOutputError,
  PipelineDefinitionError,
  PipelineExecutor,
  WorkerCrashedException,
  type NodeDefinition,
  type PipelineRequest,
} from '../src/index';
import { planPipeline } from '../src/plan/plan';
import { Probe, RUNS, fixture, rejection, useExecutors } from './helpers';

const sleepAdd = fixture('sleep-add.js');

describe('bad input', () => {
  const newExecutor = useExecutors();

  describe('pipeline definitions are checked before any node runs', () => {
    let executor: PipelineExecutor;
    beforeEach(() => {
      executor = newExecutor({ threads: 1 });
    });

    async function definitionError(request: PipelineRequest, probe?: Probe): Promise<PipelineDefinitionError> {
      const error = await rejection(executor.executePipeline(request));
      expect(error).to.be.instanceOf(PipelineDefinitionError);
      expect(error).to.have.property('code', 'ERR_PIPELINE_DEFINITION');
      if (probe !== undefined) expect(probe.get(RUNS), 'a node ran').to.equal(0);
      return error as PipelineDefinitionError;
    }

    const node = (id: string, extra: Partial<NodeDefinition> = {}, probe?: Probe): NodeDefinition => ({
      id,
      module: sleepAdd,
      params: probe === undefined ? undefined : { probe: probe.buffer },
      ...extra,
    });

    it('no nodes', async () => {
      const error = await definitionError({ pipelineId: 'empty', nodes: [] });
      expect(error.message).to.equal('Pipeline "empty" has no nodes');
    });

    it('a duplicate id', async () => {
      const probe = new Probe();
      const error = await definitionError({ nodes: [node('a', {}, probe), node('b'), node('a')] }, probe);
      expect(error.message).to.include('two nodes with the id "a"');
      expect(error.nodeId).to.equal('a');
    });

    it('an unknown dependency', async () => {
      const probe = new Probe();
      const error = await definitionError({ nodes: [node('a', {}, probe), node('b', { dependsOn: ['ghost'] })] }, probe);
      expect(error.message).to.equal('Node "b" depends on "ghost", which is not a node of pipeline "pipeline"');
    });

    it('a cycle, naming the nodes in it', async () => {
      const probe = new Probe();
      const error = await definitionError(
        {
          nodes: [
            node('root', {}, probe),
            node('a', { dependsOn: ['root', 'c'] }),
            node('b', { dependsOn: ['a'] }),
            node('c', { dependsOn: ['b'] }),
          ],
        },
        probe,
      );
      expect(error.message).to.match(/dependency cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)$/);
    });

    it('a node depending on itself', async () => {
      const error = await definitionError({ nodes: [node('self', { dependsOn: ['self'] })] });
      expect(error.message).to.include('dependency cycle: self -> self');
    });

    it('a module file that does not exist, naming the path', async () => {
      const error = await definitionError({ nodes: [node('a', { module: '/nowhere/decode.js' })] });
      expect(error.message).to.equal('Module of node "a" does not exist: /nowhere/decode.js');
    });

    it('a module given by a relative path', async () => {
      const error = await definitionError({ nodes: [node('a', { module: './decode.js' })] });
      expect(error.message).to.include('give an absolute path or a file: URL');
    });

    it('a module that is not a string', async () => {
      const error = await definitionError({ nodes: [node('a', { module: 42 as unknown as string })] });
      expect(error.message).to.include('got `42` (number)');
    });

    for (const [timeoutMs, shown] of [
      [-1, '`-1` (number)'],
      [Number.NaN, '`NaN` (number)'],
      ['100', '`"100"` (string)'],
    ] as const) {
      it(`a bad timeout: ${shown}`, async () => {
        const error = await definitionError({ nodes: [node('a', { timeoutMs: timeoutMs as number })] });
        expect(error.message).to.include(shown);
        expect(error.message).to.include('Node "a"');
      });
    }

    it('bad run timeouts', async () => {
      const error = await rejection(
        executor.executePipeline({ nodes: [node('a')], timeouts: { pipelineTimeoutMs: -5 } }),
      );
      // A mistake in the request like any other, its check's error as the cause.
      expect(error).to.be.instanceOf(PipelineDefinitionError);
      expect((error as Error).cause).to.be.instanceOf(RangeError);
      expect((error as Error).message).to.include('`timeouts.pipelineTimeoutMs`');
    });

    it('params that cannot cross threads', async () => {
      const error = await definitionError({ nodes: [node('a', { params: { callback: () => 1 } })] });
      expect(error.message).to.include('`params` of node "a" cannot be sent to a worker thread');
    });

    it('an unknown key in a node', async () => {
      const error = await definitionError({ nodes: [{ ...node('a'), depends: ['x'] } as unknown as NodeDefinition] });
      expect(error.message).to.include('unknown key `depends`');
    });

    it('fields a definition does not enumerate or inherits, and a URL where only a module may be one', async () => {
      // Not enumerable: asked for by name, as an absent field is.
      const hidden = Object.defineProperty(node('a'), 'retries', { value: -1, enumerable: false });
      const notEnumerated = await definitionError({ pipelineId: 'hidden-field', nodes: [hidden] });
      expect(notEnumerated.message).to.include('Expected `retries` of node "a" to be a non-negative integer');
      const inherited = Object.assign(Object.create({ timeoutMs: -1 }) as object, node('b')) as NodeDefinition;
      expect((await definitionError({ nodes: [inherited] })).message).to.include('Node "b": Expected `timeoutMs`');
      // A field it does not enumerate is no reason to take the plan of a definition without it.
      const plain = planPipeline({ pipelineId: 'hidden-timeout', nodes: [node('h')] });
      const withHidden = planPipeline({ pipelineId: 'hidden-timeout', nodes: [Object.defineProperty(node('h'), 'timeoutMs', { value: 50, enumerable: false })] });
      expect(plain.plan.nodes[0]!.timeoutMs).to.equal(undefined);
      expect(withHidden.plan.nodes[0]!.timeoutMs).to.equal(50);
      // A field whose name reads as two fields is no reason to take a valid definition's plan.
      planPipeline({ pipelineId: 'crafted-key', nodes: [node('k', { timeoutMs: 5, retries: 1 })] });
      const crafted = { ...node('k'), 'timeoutMs=number:5;retries': 1 } as unknown as NodeDefinition;
      expect(() => planPipeline({ pipelineId: 'crafted-key', nodes: [crafted] })).to.throw(PipelineDefinitionError, 'unknown key');
      // A plan of the same definition with a string is no plan for one with a URL.
      const href = pathToFileURL(sleepAdd).href;
      const plan = (exportName: unknown) => () => planPipeline({ pipelineId: 'url-export', nodes: [node('c', { export: exportName as string })] });
      expect(plan(href)).not.to.throw();
      expect(plan(new URL(href))).to.throw(PipelineDefinitionError, 'Expected `export` of node "c" to be a non-empty string');
    });

    it('an input that cannot cross threads', async () => {
      const error = await definitionError({ nodes: [node('a')], initialInput: { fn: () => 1 } });
      expect(error.message).to.equal('The input of pipeline "pipeline" (for "a") cannot cross threads: it is a function (fn) at .fn');
    });
  });

  describe('modules that fail in the worker fail their run with a definition error', () => {
    it('a module that throws while loading, naming the path and the cause', async () => {
      const executor = newExecutor({ threads: 1 });
      const later = new Probe();
      const error = (await rejection(
        executor.executePipeline({
          nodes: [
            { id: 'codec', module: fixture('throws-on-load.js') },
            { id: 'later', module: sleepAdd, params: { probe: later.buffer } },
          ],
        }),
      )) as PipelineDefinitionError;
      expect(error).to.be.instanceOf(PipelineDefinitionError);
      expect(error.nodeId).to.equal('codec');
      expect(error.message).to.include(fixture('throws-on-load.js'));
      expect(error.message).to.include('cannot initialise the codec');
      expect((error.cause as Error).message).to.equal('cannot initialise the codec');
      expect(later.get(RUNS)).to.equal(0);
    });

    it('a missing export', async () => {
      const executor = newExecutor({ threads: 1 });
      const error = (await rejection(
        executor.executePipeline({ nodes: [{ id: 'x', module: pathToFileURL(fixture('ops.mjs')).href, export: 'triple' }] }),
      )) as PipelineDefinitionError;
      expect(error).to.be.instanceOf(PipelineDefinitionError);
      expect(error.message).to.include('does not have an export "triple" that is a function: it exports default, describe, double, keys, sum');
    });

    it('an export that is not a function', async () => {
      const executor = newExecutor({ threads: 1 });
      const error = (await rejection(
        executor.executePipeline({ nodes: [{ id: 'x', module: fixture('not-a-function.js') }] }),
      )) as PipelineDefinitionError;
      expect(error).to.be.instanceOf(PipelineDefinitionError);
      expect(error.message).to.include('does not have a default export that is a function: it exports answer');
    });
  });

  describe('nodes that break the rules', () => {
    it('a node returning a value that cannot cross threads fails with an error naming it', async () => {
      const executor = newExecutor({ threads: 1 });
      const error = (await rejection(
        executor.executePipeline({ pipelineId: 'p', nodes: [{ id: 'fn', module: fixture('faults.js'), export: 'returnFunction' }] }),
      )) as NodeOutputError;
      expect(error).to.be.instanceOf(NodeOutputError);
      expect(error.nodeId).to.equal('fn');
      expect(error.message).to.include('Node "fn" of pipeline "p" returned a value that cannot be sent between threads');
    });

    it('a node calling process.exit() fails its run with WorkerCrashedException; others are unharmed', async () => {
      const executor = newExecutor({ threads: 1 });
      const healthy = new Probe();
      const bystanders = Array.from({ length: 5 }, (_, i) =>
        executor.executePipeline({ nodes: [{ id: 'ok', module: sleepAdd, params: { ms: 100, probe: healthy.buffer } }], initialInput: i }),
      );
      await healthy.until(0, 5);
      const error = (await rejection(
        executor.executePipeline({ nodes: [{ id: 'quits', module: fixture('faults.js'), export: 'exitProcess', params: { code: 7 } }] }),
      )) as WorkerCrashedException;
      expect(error).to.be.instanceOf(WorkerCrashedException);
      expect(error.nodeId).to.equal('quits');
      expect(error.exitCode).to.equal(7);
      expect(await Promise.all(bystanders)).to.deep.equal([1, 2, 3, 4, 5]);
    });
  });

  describe('the executor', () => {
    it('rejects unknown options and bad values, naming the option, the value and its type', () => {
      expect(() => new PipelineExecutor({ thread: 2 } as never)).to.throw(TypeError, 'Unknown option `options.thread`');
      expect(() => new PipelineExecutor({ threads: 0 })).to.throw(RangeError, 'Expected `threads` to be an integer of at least 1, got `0` (number)');
      expect(() => new PipelineExecutor({ threads: 1.5 })).to.throw(TypeError, 'got `1.5` (number)');
      expect(() => new PipelineExecutor({ timeouts: { nodeTimeoutMs: -1 } })).to.throw(
        RangeError,
        'Expected `timeouts.nodeTimeoutMs` to be a number of milliseconds from 0 to 2147483647 (about 24.8 days), or Infinity, got `-1` (number)',
      );
      expect(() => new PipelineExecutor({ timeouts: { nodeTimeout: 5 } } as never)).to.throw(TypeError, 'Unknown option `timeouts.nodeTimeout`');
      expect(() => new PipelineExecutor({ resourceLimits: { maxOldGenerationSizeMb: 'big' } } as never)).to.throw(
        TypeError,
        '`resourceLimits.maxOldGenerationSizeMb`',
      );
    });

    it('refuses runs once closed', async () => {
      const executor = newExecutor({ threads: 1 });
      await executor.close();
      const error = await rejection(executor.executePipeline({ nodes: [{ id: 'a', module: sleepAdd }] }));
      expect(error).to.be.instanceOf(ExecutorClosedException);
    });
  });
});
