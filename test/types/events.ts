// Checked by `npm run typecheck` (tsc --noEmit): the executor's events are typed.
import { PipelineExecutor, type RunEndEvent, type Status, type ThreadExit } from '../../src/index';

declare const executor: PipelineExecutor;

executor.on('runEnd', (event) => {
  const status: Status = event.status;
  const whole: RunEndEvent = event;
  return [status, whole];
});
executor.on('threadExit', (exit) => {
  const reason: ThreadExit['reason'] = exit.reason;
  return reason;
});
executor.once('cleanupError', (error, run) => [error, run.runId, run.pipelineId]);

// @ts-expect-error: a misspelt event name does not compile.
executor.on('runEnded', () => {});
// @ts-expect-error: a runEnd event has no nodeId.
executor.on('runEnd', (event) => event.nodeId);
