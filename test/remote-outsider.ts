/**
 * The suites of an outsider who writes to Redis directly (BullMQ's own `Queue.add`, raw
 * commands): a redis-server for the suite, worker processes and executors each on a
 * queue of its own, an outsider's clients; all closed after each test.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bullmqBackend, type PipelineExecutor, type ProgressEvent, type TimeoutOptions } from '../src/index';
import { decode } from '../src/remote/wire';
import { fixture, useExecutors } from './helpers';
import { FIXTURES, RedisServer, SECRET, WorkerProcess, requireRedisServer } from './remote-env';

/** A log that tests can wait on: resolves once a line matches. */
export class Lines {
  readonly lines: string[] = [];
  private readonly waiters: { pattern: RegExp; found: () => void }[] = [];
  readonly log = (line: string): void => {
    this.lines.push(line);
    for (const waiter of [...this.waiters]) {
      if (waiter.pattern.test(line)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.found();
      }
    }
  };

  logged(pattern: RegExp): Promise<void> {
    if (this.lines.some((line) => pattern.test(line))) return Promise.resolve();
    return new Promise((found) => this.waiters.push({ pattern, found }));
  }
}

/**
 * For a suite's body: starts a redis-server before it (skipping the suite, or failing it
 * with `LUKHAS_REQUIRE_REDIS=1`, when there is none) and a temporary directory named after
 * `name`; stops what each test started after it.
 */
export function useOutsider(name: string) {
  let redis: RedisServer | undefined;
  let dir: string | undefined;
  const workers: WorkerProcess[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  const newExecutor = useExecutors();
  let seq = 0;

  before(async function () {
    requireRedisServer(this);
    redis = await RedisServer.start();
    dir = mkdtempSync(join(tmpdir(), `lukhas-${name}-`));
  });

  afterEach(async () => {
    await Promise.all(closers.splice(0).map((close) => close()));
    await Promise.all(workers.splice(0).map((worker) => worker.stop()));
  });

  after(async () => {
    await redis?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  const suite = {
    get url(): string {
      return redis!.url;
    },
    get dir(): string {
      return dir!;
    },
    /** A name for a queue of its own. */
    queue: (): string => `${name}-${process.pid}-${++seq}`,

    /** A worker process (one thread, the fixtures' root) on `queue` (one of its own by default), with the tests' secret unless `secret: false`. */
    async worker(options: { secret?: boolean; args?: readonly string[]; queue?: string } = {}) {
      const queue = options.queue ?? suite.queue();
      const env: Record<string, string> = options.secret === false ? {} : { LUKHAS_SECRET: SECRET };
      const started = await WorkerProcess.start(redis!.url, ['--queue', queue, '--threads', '1', '--module-root', FIXTURES, ...(options.args ?? [])], env);
      workers.push(started);
      return { worker: started, queue };
    },

    /** An executor on `queue`, its log kept, with the tests' secret unless `secret: false`. */
    async executor(queue: string, options: { secret?: boolean; maxJobBytes?: number } = {}) {
      const lines = new Lines();
      const secret = options.secret === false ? {} : { secret: SECRET };
      const created = newExecutor({ backend: bullmqBackend({ connection: redis!.url, queue, log: lines.log, maxJobBytes: options.maxJobBytes, ...secret }) });
      await created.ready();
      return { executor: created, lines };
    },

    /** BullMQ's own Queue on `queue`, as any client of Redis may make one. */
    outsider(queue: string): Queue {
      const { hostname, port } = new URL(redis!.url);
      const made = new Queue(queue, { connection: { host: hostname, port: Number(port) } });
      closers.push(() => made.close());
      return made;
    },

    rawRedis(): Redis {
      const client = new Redis(redis!.url);
      closers.push(() => client.quit());
      return client;
    },

    /**
     * A run of one node (`announce-add.js`, `ms` long) under way in a worker process on
     * `queue` (its node announced itself), and the id of its job.
     */
    async runUnderWay(executor: PipelineExecutor, queue: string, input: number, ms = 1_500, timeouts?: TimeoutOptions) {
      let announced!: () => void;
      const started = new Promise<void>((resolve) => (announced = resolve));
      const handle = executor.startPipeline<number>({
        nodes: [{ id: 'slow', module: fixture('announce-add.js'), params: { ms } }],
        initialInput: input,
        onProgress: (_event: ProgressEvent) => announced(),
        ...(timeouts === undefined ? {} : { timeouts }),
      });
      await started;
      const active = await suite.outsider(queue).getActive();
      const job = active.find((candidate) => (candidate.data.s as [string, string][]).some(([, payload]) => (decode(payload) as { runId: string }).runId === handle.runId));
      return { handle, jobId: job!.id! };
    },
  };
  return suite;
}
