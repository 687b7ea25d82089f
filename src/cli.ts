#!/usr/bin/env node
/**
 * The command line: `lukhas-orchestrator worker --redis <url>` runs a worker process of
 * the BullMQ backend. It stops taking jobs on SIGTERM or SIGINT, lets the running ones
 * finish, and exits.
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { describe } from './shared/thrown';
import { startWorker, type RemoteWorker, type WorkerProcessOptions } from './remote/worker';

const USAGE = `Usage: lukhas-orchestrator worker --redis <url> [options]

Runs pipeline nodes for executors created with bullmqBackend({ connection, queue }).

Options:
  --redis <url>            Redis to take jobs from (redis://host:6379/0)          [required]
  --queue <name>           the queue's name, as the executors give it            [lukhas]
  --prefix <prefix>        BullMQ's key prefix                                   [bull]
  --threads <n>            worker threads of this process's pool                 [cores: ${availableParallelism()}]
  --concurrency <n>        jobs (up to 64 segments each) run at once, at most    [threads * 64]
  --prefetch <n>           segments per thread that may wait here while every    [32]
                           thread is busy; beyond that, no other job is taken
  --lock-ms <ms>           a job's lock: a dead process's jobs move on after     [10000]
                           at most lock-ms + stalled-ms
  --stalled-ms <ms>        how often stalled jobs are looked for                 [5000]
  --max-stalled <n>        recoveries of a job before it fails                   [3]
  --max-old-space-mb <n>   heap limit of each thread                             [Node's]
`;

function count(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new Error(`--${name} must be a positive integer, got "${value}"`);
  return number;
}

/** Host and port of a Redis URL, without its password. */
function where(url: string): string {
  try {
    return new URL(url).host || url;
  } catch {
    return url;
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'worker') {
    const help = command === undefined || command === '--help' || command === '-h';
    if (!help) process.stderr.write(`lukhas-orchestrator: unknown command "${command}"\n\n`);
    process.stderr.write(USAGE);
    return help ? 0 : 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      redis: { type: 'string' },
      queue: { type: 'string' },
      prefix: { type: 'string' },
      threads: { type: 'string' },
      concurrency: { type: 'string' },
      prefetch: { type: 'string' },
      'lock-ms': { type: 'string' },
      'stalled-ms': { type: 'string' },
      'max-stalled': { type: 'string' },
      'max-old-space-mb': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true || values.redis === undefined) {
    if (values.help !== true) process.stderr.write('lukhas-orchestrator: --redis <url> is required\n\n');
    process.stderr.write(USAGE);
    return values.help === true ? 0 : 2;
  }
  const heap = count(values['max-old-space-mb'], 'max-old-space-mb');
  const options: WorkerProcessOptions = {
    connection: values.redis,
    queue: values.queue,
    prefix: values.prefix,
    threads: count(values.threads, 'threads'),
    concurrency: count(values.concurrency, 'concurrency'),
    prefetch: count(values.prefetch, 'prefetch'),
    lockDurationMs: count(values['lock-ms'], 'lock-ms'),
    stalledIntervalMs: count(values['stalled-ms'], 'stalled-ms'),
    maxStalledCount: count(values['max-stalled'], 'max-stalled'),
    ...(heap === undefined ? {} : { resourceLimits: { maxOldGenerationSizeMb: heap } }),
  };
  // Redis may be down or the address wrong: say so rather than wait in silence.
  const waiting = setTimeout(() => {
    process.stderr.write(`lukhas-orchestrator worker: still waiting for Redis at ${where(values.redis!)}\n`);
  }, 5_000);
  let worker: RemoteWorker;
  try {
    worker = await startWorker(options);
  } finally {
    clearTimeout(waiting);
  }
  process.stdout.write(`lukhas-orchestrator worker ready: queue "${values.queue ?? 'lukhas'}" on ${where(values.redis)}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  process.stdout.write('lukhas-orchestrator worker: finishing the running jobs\n');
  await worker.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`lukhas-orchestrator: ${describe(error)}\n`);
    process.exitCode = 1;
  },
);
