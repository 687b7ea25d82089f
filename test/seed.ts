/**
 * The seed's stress scenarios (LUKHAS "Orchestrator Stress Testing"), shared by the suite
 * on the embedded pool (`load/orchestrator-stress.test.ts`) and the one through the
 * BullMQ backend (`remote.test.ts`): the requests, and the checks both make of them.
 */
import { expect } from 'chai';
import { NodeTimeoutException, PipelineTimeoutException, type NodeDefinition, type PipelineRequest } from '../src/index';
import { fixture } from './helpers';

export const SEED_TIMEOUTS = { nodeTimeoutMs: 500, pipelineTimeoutMs: 1500, cleanupGraceMs: 50 };
export const sleepAdd = fixture('sleep-add.js');

/** Three nodes that each wait 10 ms and add 1. */
export function threeNodes(): NodeDefinition[] {
  return [
    { id: 'node1', module: sleepAdd },
    { id: 'node2', module: sleepAdd },
    { id: 'node3', module: sleepAdd },
  ];
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** 2a: node2 waits 600 ms against the 500 ms node timeout, marking `probe` (a buffer, or a file's path). */
export function nodeTimeoutRequest(probe: SharedArrayBuffer | string): PipelineRequest {
  return {
    pipelineId: 'node-timeout',
    nodes: [
      { id: 'node1', module: sleepAdd },
      { id: 'node2', module: fixture('notify-then-wait.js'), params: { ms: 600, probe } },
      { id: 'node3', module: sleepAdd },
    ],
    initialInput: 0,
  };
}

export function expectNodeTimeout(error: unknown): NodeTimeoutException {
  expect(error).to.be.instanceOf(NodeTimeoutException);
  const timeout = error as NodeTimeoutException;
  expect(timeout.nodeId).to.equal('node2');
  expect(timeout.pipelineId).to.equal('node-timeout');
  expect(timeout.timeoutMs).to.equal(500);
  return timeout;
}

/** 2b: four 400 ms nodes against the 1500 ms pipeline timeout. */
export function pipelineTimeoutRequest(): PipelineRequest {
  const slow = (id: string): NodeDefinition => ({ id, module: sleepAdd, params: { ms: 400 } });
  return { pipelineId: 'pipeline-timeout', nodes: [slow('node1'), slow('node2'), slow('node3'), slow('node4')], initialInput: 0 };
}

export function expectPipelineTimeout(error: unknown): PipelineTimeoutException {
  expect(error).to.be.instanceOf(PipelineTimeoutException);
  const timeout = error as PipelineTimeoutException;
  expect(timeout.timeoutMs).to.equal(1500);
  expect(timeout.completedNodes).to.deep.equal(['node1', 'node2', 'node3']);
  expect(timeout.partialResults).to.deep.equal({ node1: 1, node2: 2, node3: 3 });
  return timeout;
}

/** 4: node2 raises an error. */
export function errorRequest(): PipelineRequest {
  return {
    pipelineId: 'error',
    nodes: [
      { id: 'node1', module: sleepAdd },
      { id: 'node2', module: fixture('throw-custom.js'), export: 'nodeFailed' },
      { id: 'node3', module: sleepAdd },
    ],
    initialInput: 0,
  };
}

export function expectNodeError(error: unknown): void {
  expect(error).to.be.instanceOf(Error);
  expect((error as Error).message).to.equal('Node failed');
  expect((error as Error & { nodeId: string }).nodeId).to.equal('node2');
  expect((error as Error & { pipelineId: string }).pipelineId).to.equal('error');
}
