import { expect } from 'chai';
import {
  CancellationException,
  ExecutorClosedException,
  NodeOutputError,
  NodeTimeoutException,
  NonErrorThrownException,
  OrchestratorException,
  PipelineDefinitionError,
  PipelineTimeoutException,
  TimeoutException,
  WorkerCrashedException,
} from '../src/index';
import { fixture, rejection, useExecutors } from './helpers';

const failing = fixture('throw-custom.js');

describe('errors', () => {
  const newExecutor = useExecutors();

  describe("a node's own error", () => {
    it('arrives as the node threw it: name, message, own properties, cause, worker-side stack', async () => {
      const executor = newExecutor();
      const error = (await rejection(
        executor.executePipeline({ pipelineId: 'resize', nodes: [{ id: 'validate', module: failing, export: 'custom' }] }),
      )) as Error & Record<string, unknown>;
      expect(error).to.be.instanceOf(Error);
      expect(error.name).to.equal('ValidationError');
      expect(error.message).to.equal('width is too large');
      expect(error.code).to.equal('E_VALIDATION');
      expect(error.details).to.deep.equal({ field: 'width', limit: 4096 });
      expect(error.cause).to.be.instanceOf(RangeError);
      expect((error.cause as Error).message).to.equal('4097 > 4096');
      expect(error.stack).to.match(/^ValidationError: width is too large\n/);
      expect(error.stack).to.include('throw-custom.js');
      expect(error.nodeId).to.equal('validate');
      expect(error.pipelineId).to.equal('resize');
      expect(error.runId).to.be.a('string');
    });

    it('keeps built-in classes', async () => {
      const executor = newExecutor();
      const error = await rejection(executor.executePipeline({ nodes: [{ id: 't', module: failing, export: 'typeError' }] }));
      expect(error).to.be.instanceOf(TypeError);
      expect((error as TypeError).message).to.equal('expected a buffer');
    });

    it('keeps the errors of an AggregateError', async () => {
      const executor = newExecutor();
      const error = (await rejection(
        executor.executePipeline({ nodes: [{ id: 'agg', module: failing, export: 'aggregate' }] }),
      )) as AggregateError;
      expect(error).to.be.instanceOf(AggregateError);
      expect(error.errors).to.have.length(2);
      expect(error.errors[1]).to.be.instanceOf(TypeError);
      expect((error.errors[1] as Error).message).to.equal('second');
    });

    it('wraps a thrown non-Error value, keeping the value', async () => {
      const executor = newExecutor();
      const error = (await rejection(
        executor.executePipeline({ nodes: [{ id: 's', module: failing, export: 'string' }] }),
      )) as NonErrorThrownException;
      expect(error).to.be.instanceOf(NonErrorThrownException);
      expect(error.code).to.equal('ERR_NON_ERROR_THROWN');
      expect(error.value).to.equal('a plain string');
      expect(error.nodeId).to.equal('s');
    });

    it('stops the run: later nodes do not start', async () => {
      const executor = newExecutor();
      const error = await rejection(
        executor.executePipeline({
          nodes: [
            { id: 'fails', module: failing, export: 'nodeFailed' },
            { id: 'never', module: fixture('not-a-function.js') },
          ],
        }),
      );
      // Had `never` started, its module would have failed to load with another error.
      expect((error as Error).message).to.equal('Node failed');
    });
  });

  describe('the orchestrator errors', () => {
    it('form one hierarchy with stable codes and fixed names', () => {
      const cases: [Error, string, string][] = [
        [new NodeTimeoutException({ nodeId: 'n', pipelineId: 'p', runId: 'r', timeoutMs: 5 }), 'ERR_NODE_TIMEOUT', 'NodeTimeoutException'],
        [
          new PipelineTimeoutException({ pipelineId: 'p', runId: 'r', timeoutMs: 5, completedNodes: [], partialResults: {} }),
          'ERR_PIPELINE_TIMEOUT',
          'PipelineTimeoutException',
        ],
        [
          new CancellationException({ pipelineId: 'p', runId: 'r', reason: 'x', completedNodes: [], partialResults: {} }),
          'ERR_CANCELLED',
          'CancellationException',
        ],
        [new PipelineDefinitionError('bad'), 'ERR_PIPELINE_DEFINITION', 'PipelineDefinitionError'],
        [new WorkerCrashedException({ nodeId: 'n', pipelineId: 'p', runId: 'r', exitCode: 1 }), 'ERR_WORKER_CRASHED', 'WorkerCrashedException'],
        [new NodeOutputError({ nodeId: 'n', pipelineId: 'p', runId: 'r' }), 'ERR_NODE_OUTPUT', 'NodeOutputError'],
        [new ExecutorClosedException(), 'ERR_EXECUTOR_CLOSED', 'ExecutorClosedException'],
      ];
      for (const [error, code, name] of cases) {
        expect(error).to.be.instanceOf(OrchestratorException);
        expect(error).to.have.property('code', code);
        expect(error.name).to.equal(name);
        expect(String(error.stack)).to.match(new RegExp(`^${name}: `));
      }
      expect(cases[0]![0]).to.be.instanceOf(TimeoutException);
      expect(cases[1]![0]).to.be.instanceOf(TimeoutException);
      expect(cases[2]![0]).to.not.be.instanceOf(TimeoutException);
    });

    it('say what happened in their messages', () => {
      const timeout = new NodeTimeoutException({ nodeId: 'blur', pipelineId: 'resize', runId: 'r', timeoutMs: 500 });
      expect(timeout.message).to.equal('Node "blur" of pipeline "resize" timed out after 500 ms');
      const cancelled = new CancellationException({
        pipelineId: 'resize',
        runId: 'r',
        reason: new Error('user left'),
        completedNodes: ['decode'],
        partialResults: { decode: 1 },
      });
      expect(cancelled.message).to.equal('Pipeline "resize" was cancelled: Error: user left');
      expect(cancelled.cause).to.equal(cancelled.reason);
    });
  });
});
