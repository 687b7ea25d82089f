'use strict';
// An executor in a process of its own, for tests that kill it: runs `COUNT` pipelines
// of one long `timed.js` node each through the BullMQ backend (built dist), writing to
// probe files `<PROBES>-<i>`, and prints `running <i>` as each node reports its start.
// Environment: REDIS_URL, QUEUE, LUKHAS_SECRET, PROBES, COUNT, MS.
const { join } = require('node:path');
const { PipelineExecutor, bullmqBackend } = require('../../dist/src/index.js');

const { REDIS_URL, QUEUE, PROBES, COUNT = '3', MS = '60000' } = process.env;
const executor = new PipelineExecutor({
  timeouts: { nodeTimeoutMs: 120_000, pipelineTimeoutMs: 120_000, cleanupGraceMs: 100 },
  backend: bullmqBackend({ connection: REDIS_URL, queue: QUEUE }),
});
const timed = join(__dirname, '..', 'fixtures', 'timed.js');
executor.ready().then(() => {
  for (let i = 0; i < Number(COUNT); i++) {
    const node = { id: 'long', module: timed, params: { probe: `${PROBES}-${i}`, ms: Number(MS) } };
    executor
      .executePipeline({ nodes: [node], initialInput: i, onProgress: () => process.stdout.write(`running ${i}\n`) })
      .then((result) => process.stdout.write(`result ${i} ${result}\n`), (error) => process.stdout.write(`error ${i} ${error.name}\n`));
  }
});
