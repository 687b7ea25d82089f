#!/usr/bin/env node
/**
 * The command line: `lukhas-orchestrator worker --redis <url> --module-root <dir>` runs a
 * worker process of the BullMQ backend. It stops taking jobs on SIGTERM or SIGINT, lets
 * the running ones finish, and exits with 0: within `worker.ts`'s bounds once they have
 * (Redis answering or not), and at once before Redis ever answered.
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { describe } from './shared/thrown';
import { connectionOptions, where } from './remote/connection';
import { readTextFile, REDIS_URL_ENV, SECRET_ENV } from './remote/trust';
import { startWorker, type RemoteWorker, type WorkerProcessOptions } from './remote/worker';

const USAGE = `Usage: lukhas-orchestrator worker --redis-file <path> --module-root <dir> [options]

Runs pipeline nodes for executors created with bullmqBackend({ connection, queue }).

Options:
  --redis-file <path>      a file holding the URL of Redis to take jobs from      [or --redis]
                           (redis://[user:password@]host:6379/0, rediss:// for TLS)
  --redis <url>            the same on the command line (a password there shows  [or ${REDIS_URL_ENV}]
                           in \`ps\`: prefer --redis-file or ${REDIS_URL_ENV})
  --module-root <dir>      a directory whose modules nodes may name; repeat for    [required]
                           more. Any other module is refused before it is loaded
  --secret-file <path>     a file holding the secret shared with the executors:   [or ${SECRET_ENV}]
                           jobs not signed with it are dropped unread
  --max-job-bytes <n>      larger jobs are refused, larger outputs fail their node [67108864]
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

/** Says what is wrong with the command line, and how to use it; exit code 2. */
function usage(problem: string): number {
  process.stderr.write(`lukhas-orchestrator: ${problem}\n\n${USAGE}`);
  return 2;
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
      'redis-file': { type: 'string' },
      'module-root': { type: 'string', multiple: true },
      'secret-file': { type: 'string' },
      'max-job-bytes': { type: 'string' },
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
  if (values.help === true) {
    process.stderr.write(USAGE);
    return 0;
  }
  if (values.redis !== undefined && values['redis-file'] !== undefined) return usage('give either --redis or --redis-file, not both');
  const envUrl = process.env[REDIS_URL_ENV];
  const url = values.redis ?? (values['redis-file'] === undefined ? undefined : readTextFile(values['redis-file'], 'Redis URL').trim()) ?? (envUrl === '' ? undefined : envUrl);
  if (url === undefined) return usage(`--redis <url> is required (or --redis-file <path>, or the environment variable ${REDIS_URL_ENV})`);
  const roots = values['module-root'] ?? [];
  if (roots.length === 0) {
    return usage('--module-root <dir> is required: a worker process runs only the node modules inside the directories it is given, so that no one who can write to Redis can make it load anything else');
  }
  // A relative root is taken from the current directory; an empty one would be that directory, unasked.
  if (roots.some((root) => root.trim() === '')) return usage('--module-root needs a directory: an empty one is refused rather than taken as the current directory');
  const shown = where(connectionOptions(url));
  if (values.redis !== undefined && new URL(values.redis).password !== '') {
    process.stderr.write(`lukhas-orchestrator worker: warning: the password in --redis shows in \`ps\`; give the URL in --redis-file or ${REDIS_URL_ENV} instead\n`);
  }
  const heap = count(values['max-old-space-mb'], 'max-old-space-mb');
  const maxJobBytes = count(values['max-job-bytes'], 'max-job-bytes');
  const options: WorkerProcessOptions = {
    connection: url,
    moduleRoots: roots.map((root) => resolve(root)),
    ...(values['secret-file'] === undefined ? {} : { secret: readTextFile(values['secret-file'], 'secret') }),
    ...(maxJobBytes === undefined ? {} : { maxJobBytes }),
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
  // SIGTERM or SIGINT, at any time: before Redis ever answered, the start is given up.
  const stopping = new AbortController();
  const requested = new Promise<void>((resolve) => {
    const stop = (): void => {
      stopping.abort(new Error('stopped by a signal before it was ready'));
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  // Redis may be down or the address wrong: say so rather than wait in silence.
  const waiting = setTimeout(() => {
    process.stderr.write(`lukhas-orchestrator worker: still waiting for Redis at ${shown}\n`);
  }, 5_000);
  let worker: RemoteWorker;
  try {
    worker = await startWorker({ ...options, signal: stopping.signal });
  } catch (error) {
    if (!stopping.signal.aborted) throw error;
    process.stdout.write('lukhas-orchestrator worker: stopped before it was ready\n');
    return 0;
  } finally {
    clearTimeout(waiting);
  }
  const signed = options.secret !== undefined || (process.env[SECRET_ENV] ?? '') !== '' ? 'signed jobs only' : 'unsigned jobs (no secret)';
  process.stdout.write(`lukhas-orchestrator worker ready: queue "${values.queue ?? 'lukhas'}" on ${shown}; modules from ${options.moduleRoots.join(', ')}; ${signed}\n`);
  await requested;
  process.stdout.write('lukhas-orchestrator worker: finishing the running jobs\n');
  await worker.close();
  return 0;
}

/** Past this, once the worker has closed (or failed to start), the process exits even if a handle lingers. */
const EXIT_WAIT_MS = 1_000;

main(process.argv.slice(2)).then(
  (code) => exit(code),
  (error: unknown) => {
    process.stderr.write(`lukhas-orchestrator: ${describe(error)}\n`);
    exit(1);
  },
);

function exit(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), EXIT_WAIT_MS).unref();
}
