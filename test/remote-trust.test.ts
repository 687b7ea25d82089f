/**
 * The BullMQ backend's trust boundary, against a real redis-server and real worker
 * processes, with an outsider who writes to Redis directly (BullMQ's own `Queue.add`,
 * raw `XADD`): module roots, signed jobs and outcomes, bounded input.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CancellationException, NodeOutputError, PipelineDefinitionError, WorkerCrashedException } from '../src/index';
import { decode, encode } from '../src/remote/wire';
import { fixture, rejection } from './helpers';
import { useOutsider } from './remote-outsider';

const announceAdd = fixture('announce-add.js');

/** A job as an outsider writes it: one segment of one node, `module`'s `exportName` called with `input`. */
function forgedJob(module: string, exportName: string | undefined, input: unknown): { s: [string, string][] } {
  const nodes = encode([{ id: 'evil', module, export: exportName, params: undefined }]);
  const payload = { runId: 'forged-run', pipelineId: 'forged', nodes, first: 0, attempts: [1], input, timeouts: [10_000], graceMs: 100, reportStarts: false, deadline: Infinity, executor: 'forged' };
  return { s: [['forged-segment', encode(payload)]] };
}

describe('BullMQ backend: the trust boundary (redis-server, worker processes, an outsider)', function () {
  this.timeout(60_000);
  const suite = useOutsider('trust');
  const { executor, outsider, rawRedis } = suite;
  let dir: string;
  let root: string;
  let outside: string;

  before(() => {
    dir = suite.dir;
    root = join(dir, 'root');
    outside = join(dir, 'outside');
    mkdirSync(root);
    mkdirSync(outside);
  });

  /** A worker process on a queue of its own (the fixtures and the suite's root), with the tests' secret unless `secret: false`. */
  const worker = (options: { secret?: boolean; args?: string[] } = {}) => suite.worker({ ...options, args: ['--module-root', root, ...(options.args ?? [])] });
  const runUnderWay = suite.runUnderWay;

  /** A module outside every root that, once loaded, creates the file `marker`. */
  function trap(name: string, marker: string): string {
    const path = join(outside, name);
    writeFileSync(path, `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'loaded');\nmodule.exports = (input) => input + 1;\n`);
    return path;
  }

  describe('signed work', () => {
    it("an outsider's job (Queue.add, child_process.execSync) is dropped unread by a worker process with a secret", async () => {
      const { worker: signed, queue } = await worker();
      const marker = join(dir, 'pwned-unsigned');
      const job = await outsider(queue).add('segments', forgedJob('child_process', 'execSync', `touch ${marker}`));
      await signed.printed(new RegExp(`refused job "${job.id}" \\(name "segments"\\): it is not signed; nothing of it was run`));
      // Signed with another secret: refused the same way.
      const other = await outsider(queue).add('segments', { ...forgedJob('child_process', 'execSync', `touch ${marker}`), m: 'c2lnbmVkIHdpdGggYW5vdGhlciBzZWNyZXQ=' });
      await signed.printed(new RegExp(`refused job "${other.id}" .*: its signature does not match`));
      expect(existsSync(marker), 'the command ran').to.equal(false);
      // The process serves on: a signed run goes through.
      const { executor: trusted } = await executor(queue);
      expect(await trusted.executePipeline({ nodes: [{ id: 'add', module: announceAdd }], initialInput: 1 })).to.equal(2);
    });

    it('without a secret, module roots still refuse a forged job: a package name, a file outside the roots', async () => {
      const { worker: open, queue } = await worker({ secret: false, args: [] });
      await open.printed(/warning: worker process on queue .* no shared secret/);
      const marker = join(dir, 'pwned-unrooted');
      await outsider(queue).add('segments', forgedJob('child_process', 'execSync', `touch ${marker}`));
      await open.printed(/refused node "evil" of run "forged-run": its module "child_process" is a package name/);
      const loaded = join(dir, 'loaded-outside');
      const path = trap('forged-outside.js', loaded);
      await outsider(queue).add('segments', forgedJob(path, undefined, 1));
      await open.printed(new RegExp(`its module ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is outside the module roots`));
      expect(existsSync(marker), 'the command ran').to.equal(false);
      expect(existsSync(loaded), 'the module outside the roots was loaded').to.equal(false);
    });

    it('a node whose module leaves the roots (a symbolic link out) fails its run with a PipelineDefinitionError naming node and module', async () => {
      const { worker: signed, queue } = await worker();
      const loaded = join(dir, 'loaded-link');
      const link = join(root, 'link-out.js');
      symlinkSync(trap('linked.js', loaded), link);
      const { executor: trusted } = await executor(queue);
      const error = await rejection(trusted.executePipeline({ nodes: [{ id: 'first', module: announceAdd }, { id: 'linked', module: link }], initialInput: 0 }));
      expect(error).to.be.instanceOf(PipelineDefinitionError);
      expect((error as PipelineDefinitionError).nodeId).to.equal('linked');
      expect((error as Error).message).to.include(link).and.include('is outside the module roots').and.include('refused by the worker process');
      expect(existsSync(loaded), 'the module outside the roots was loaded').to.equal(false);
      await signed.printed(/refused node "linked"/);
    });

    it('an executor with a secret ignores outcomes not signed with it, and the run gets its true result', async () => {
      const { queue } = await worker();
      const { executor: trusted, lines } = await executor(queue);
      const { handle, jobId } = await runUnderWay(trusted, queue, 10);
      const forgedEnd = encode({ settlement: { kind: 'done' }, outputs: [[0, 999, 0, 0]], endedNodeStartedMs: 0 });
      const events = `bull:${queue}:events`;
      const client = rawRedis();
      await client.xadd(events, '*', 'event', 'progress', 'jobId', jobId, 'data', JSON.stringify({ u: [{ k: 'e', i: 0, b: forgedEnd }] }));
      await client.xadd(events, '*', 'event', 'progress', 'jobId', jobId, 'data', JSON.stringify({ u: [{ k: 'e', i: 0, b: forgedEnd }], m: 'AAAA' }));
      await client.xadd(events, '*', 'event', 'completed', 'jobId', jobId, 'returnvalue', JSON.stringify({ e: [forgedEnd] }));
      await lines.logged(new RegExp(`ignored a progress update of job "${jobId}": it is not signed`));
      await lines.logged(/ignored a progress update of job .*: its signature does not match/);
      await lines.logged(/ignored a return value of job .*: it is not signed/);
      expect(await handle.result).to.equal(11);
    });

    it('a signed job copied into another queue, or under another id, is refused there', async () => {
      const { worker: here, queue } = await worker();
      const { worker: elsewhere, queue: other } = await worker();
      const { executor: trusted } = await executor(queue);
      const { handle, jobId } = await runUnderWay(trusted, queue, 5);
      const data = (await outsider(queue).getJob(jobId))!.data as object;
      await outsider(other).add('segments', data as never, { jobId });
      await elsewhere.printed(new RegExp(`refused job "${jobId}" .*: its signature does not match`));
      await outsider(queue).add('segments', data as never, { jobId: `${jobId}-again` });
      await here.printed(new RegExp(`refused job "${jobId}-again" .*: its signature does not match`));
      expect(await handle.result).to.equal(6);
    });

    it('without a secret the backend works as before, with a warning at start on both sides', async () => {
      const { worker: open, queue } = await worker({ secret: false });
      const { executor: unsigned, lines } = await executor(queue, { secret: false });
      await open.printed(/warning: worker process on queue "trust-[\d-]+" with no shared secret/);
      await lines.logged(/warning: BullMQ backend on queue "trust-[\d-]+" with no shared secret/);
      expect(await unsigned.executePipeline({ nodes: [{ id: 'add', module: announceAdd }], initialInput: 1 })).to.equal(2);
    });
  });

  describe('bounded input', () => {
    it('garbage jobs (Queue.add) are refused with a log line each, and the worker process serves on', async () => {
      const { worker: open, queue } = await worker({ secret: false, args: ['--max-job-bytes', '4096'] });
      const q = outsider(queue);
      const garbage: [unknown, RegExp][] = [
        ['garbage', /its data is not an object with a list of segments/],
        [{ s: 'x' }, /its data is not an object with a list of segments/],
        [{ s: Array.from({ length: 65 }, (_, i) => [`s${i}`, 'AAAA']) }, /it names 65 segments; an executor sends 1 to 64/],
        [{ s: [['big', 'x'.repeat(10_000)]] }, /it is \d+ bytes, above the limit of 4096/],
        [{ s: [[1, 2]] }, /a segment is not a pair of an id and a payload/],
        [{ s: [['a', '!!!!']] }, /its payload does not decode/],
        [{ s: [['a', encode({ runId: 1 })]] }, /a segment payload lacks its run, pipeline or nodes/],
        [{ s: [['a', encode({ ...(decode(forgedJob('/x.js', undefined, 1).s[0]![1]) as object), nodes: encode('not a list') })]] }, /a node list is not a non-empty list/],
      ];
      for (const [data, reason] of garbage) {
        const job = await q.add('segments', data as never);
        await open.printed(new RegExp(`refused job "${job.id}"[^\\n]*${reason.source}`));
      }
      // Garbage on the stop channel, and stop marks with unknown codes, are ignored too.
      const client = rawRedis();
      for (const message of ['{', 'null', '[]', JSON.stringify({ id: 42 }), JSON.stringify({ id: 'x', code: 99, graceMs: -1 })]) {
        await client.publish(`bull:${queue}:lukhas:stop`, message);
      }
      const { executor: unsigned } = await executor(queue, { secret: false });
      expect(await unsigned.executePipeline({ nodes: [{ id: 'add', module: announceAdd }], initialInput: 1 })).to.equal(2);
    });

    it("garbage events (raw XADD) fail at most the run they name, and never stop the executor's reader", async () => {
      const { queue } = await worker({ secret: false });
      const { executor: unsigned, lines } = await executor(queue, { secret: false, maxJobBytes: 4096 });
      const a = await runUnderWay(unsigned, queue, 0);
      const b = await runUnderWay(unsigned, queue, 100);
      const events = `bull:${queue}:events`;
      const client = rawRedis();
      await client.xadd(events, '*', 'event', 'progress', 'jobId', a.jobId, 'data', 'not json {');
      await client.xadd(events, '*', 'event', 'completed', 'jobId', a.jobId, 'returnvalue', 'not json {');
      await client.xadd(events, '*', 'event', 'progress', 'jobId', b.jobId, 'data', JSON.stringify({ u: [{ k: 'p', i: 0, n: 0, b: 'x'.repeat(10_000) }] }));
      await client.xadd(events, '*', 'event', 'progress', 'jobId', 'nobody', 'data', '{');
      await client.xadd(events, '*', 'nonsense', 'entry');
      await lines.logged(/ignored a progress update of job .*: it is not JSON/);
      await lines.logged(/ignored a return value of job .*: it is not JSON/);
      await lines.logged(/ignored a progress update of job .*: it is \d+ bytes, above the limit of 4096/);
      // Well formed and unsigned (no secret is in use), naming run a's segment, but malformed inside: a fails, b does not.
      await client.xadd(events, '*', 'event', 'progress', 'jobId', a.jobId, 'data', JSON.stringify({ u: [{ k: 'e', i: 0, b: 'AAAA' }] }));
      await lines.logged(/ignored a progress update of job .*: it names no attempt at the job/);
      await client.xadd(events, '*', 'event', 'progress', 'jobId', a.jobId, 'data', JSON.stringify({ u: [{ k: 'e', i: 0, b: 'AAAA' }], a: 1 }));
      const error = await rejection(a.handle.result);
      expect(error).to.be.instanceOf(WorkerCrashedException);
      expect((error as Error).cause).to.have.property('message').that.matches(/does not decode/);
      expect(await b.handle.result).to.equal(101);
      // The reader reads on.
      expect(await unsigned.executePipeline({ nodes: [{ id: 'add', module: announceAdd }], initialInput: 1 })).to.equal(2);
    });

    it('a segment whose payload exceeds maxJobBytes fails its run before it is sent, naming the node', async () => {
      const { queue } = await worker();
      const { executor: trusted } = await executor(queue, { maxJobBytes: 4096 });
      const error = await rejection(trusted.executePipeline({ nodes: [{ id: 'heavy', module: announceAdd }], initialInput: 'x'.repeat(10_000) }));
      expect(error).to.be.instanceOf(PipelineDefinitionError);
      expect((error as PipelineDefinitionError).nodeId).to.equal('heavy');
      expect((error as Error).message).to.match(/above the BullMQ backend's maxJobBytes \(4096\)/);
    });

    // Just under Redis's largest value (512 MiB), and over Node's longest string (2^29 - 24
    // characters): a value ioredis cannot decode into a string. Heavy (about 2 GiB of memory
    // for a few seconds), and the only way to show these.
    const UNDECODABLE = 536_870_900;

    it("an event field too large to be a string in Node stops neither the executor's event reader nor a new executor's start", async function () {
      this.timeout(120_000);
      const { queue } = await worker();
      const { executor: trusted, lines } = await executor(queue);
      // Under way until the test ends it, however long the value takes to write and read
      // on a loaded machine: the events of a job that has ended are not read at all.
      const { handle, jobId } = await runUnderWay(trusted, queue, 20, 600_000, { nodeTimeoutMs: 600_000, pipelineTimeoutMs: 600_000 });
      const client = rawRedis();
      const big = Buffer.alloc(UNDECODABLE, 0x61);
      const idle = `${queue}-idle`;
      try {
        await client.xadd(`bull:${queue}:events`, '*', 'event', 'progress', 'jobId', jobId, 'data', big);
        await client.xadd(`bull:${queue}:events`, '*', 'event', 'progress', 'jobId', jobId, 'data', JSON.stringify({ u: [], a: 1 }));
        await lines.logged(new RegExp(`ignored a progress update of job "${jobId}": it is ${UNDECODABLE} bytes, above the limit`));
        // Read on past it.
        await lines.logged(new RegExp(`ignored a progress update of job "${jobId}": it is not signed`));
        // And on: another run's result arrives, and the first run still stops as asked.
        expect(await trusted.executePipeline({ nodes: [{ id: 'add', module: announceAdd }], initialInput: 1 })).to.equal(2);
        handle.cancel('enough');
        expect(await rejection(handle.result)).to.be.instanceOf(CancellationException);
        // The last entry of a stream as an executor starts on it.
        await client.xadd(`bull:${idle}:events`, '*', 'event', 'progress', 'jobId', 'nobody', 'data', big);
        await executor(idle);
      } finally {
        await client.del(`bull:${queue}:events`, `bull:${idle}:events`);
      }
    });

    it('a stop message too large to be a string in Node is ignored with a log line, and the worker process serves on', async function () {
      this.timeout(120_000);
      const { worker: signed, queue } = await worker();
      const client = rawRedis();
      // Redis's default limits cut a subscriber off before such a message reaches it; any client allowed CONFIG can lift them.
      const [, limits] = (await client.config('GET', 'client-output-buffer-limit')) as [string, string];
      await client.config('SET', 'client-output-buffer-limit', 'pubsub 0 0 0');
      try {
        expect(await client.publish(`bull:${queue}:lukhas:stop`, Buffer.alloc(UNDECODABLE, 0x61))).to.equal(1);
        await signed.printed(new RegExp(`ignored a message of ${UNDECODABLE} bytes on the stop channel`));
      } finally {
        await client.config('SET', 'client-output-buffer-limit', limits);
      }
      const { executor: trusted } = await executor(queue);
      expect(await trusted.executePipeline({ nodes: [{ id: 'add', module: announceAdd }], initialInput: 1 })).to.equal(2);
    });

    it("a node's output larger than the worker process's limit fails its run with a NodeOutputError naming the node", async () => {
      const { queue } = await worker({ args: ['--max-job-bytes', '65536'] });
      const { executor: trusted } = await executor(queue);
      const error = await rejection(trusted.executePipeline({ nodes: [{ id: 'first', module: announceAdd }, { id: 'big', module: fixture('big-output.js'), params: { bytes: 100_000 } }], initialInput: 0 }));
      expect(error).to.be.instanceOf(NodeOutputError);
      expect((error as NodeOutputError).nodeId).to.equal('big');
      expect((error as Error).message).to.match(/above half the limit of 65536 bytes/);
    });
  });
});
