/**
 * The worker process's command line, ended by a signal or failing to start, whatever
 * state Redis is in: it exits, with 0 on SIGTERM or SIGINT, within its documented bounds.
 *
 * Skipped, saying why, when redis-server cannot be started here (a failure with
 * LUKHAS_REQUIRE_REDIS=1).
 */
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { CLI, FIXTURES, RedisServer, SECRET, WorkerProcess, requireRedisServer } from './remote-env';

/** SIGTERM with Redis gone ends a worker within this: its fetch (2 s), its reports (2 s), its connections (2 s), then 1 s for a handle that lingers. */
const DOWN_BOUND_MS = 7_000;
/** SIGTERM before Redis ever answered ends it within this: nothing to wait for but 1 s for a handle that lingers, and a second of slack. */
const NEVER_BOUND_MS = 2_000;

/** Spawns the command line; resolves with its exit code, its output and how long it took from `from()` on. */
function run(args: readonly string[]) {
  const child = spawn(process.execPath, [CLI, 'worker', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LUKHAS_SECRET: SECRET } });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((resolve) => child.once('exit', (code) => resolve({ code, at: Date.now() })));
  return { child, exited, output: () => output };
}

describe('BullMQ backend: the command line ends, whatever Redis does', function () {
  this.timeout(60_000);

  before(function () {
    requireRedisServer(this);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} before Redis ever answered (it accepts connections, and says nothing): exit code 0 within its bound`, async () => {
      // A server that takes connections and never answers: the worker is connecting, and waits.
      const sockets: Socket[] = [];
      let connected!: () => void;
      const reached = new Promise<void>((resolve) => (connected = resolve));
      const silent: Server = createServer((socket) => {
        sockets.push(socket);
        connected();
      });
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const { port } = silent.address() as { port: number };
      try {
        const worker = run(['--redis', `redis://127.0.0.1:${port}`, '--module-root', FIXTURES]);
        await reached;
        const sentAt = Date.now();
        worker.child.kill(signal);
        const { code, at } = await worker.exited;
        expect(code, worker.output()).to.equal(0);
        expect(at - sentAt, 'ms from the signal to the exit').to.be.below(NEVER_BOUND_MS);
        expect(worker.output()).to.include('stopped before it was ready');
      } finally {
        for (const socket of sockets) socket.destroy();
        silent.close();
      }
    });
  }

  it('SIGTERM while Redis is down, after it answered: exit code 0 within the bound', async () => {
    const redis = await RedisServer.start();
    let worker: WorkerProcess | undefined;
    try {
      worker = await WorkerProcess.start(redis.url, ['--module-root', FIXTURES], { LUKHAS_SECRET: SECRET });
    } finally {
      await redis.stop();
    }
    const sentAt = Date.now();
    worker.kill('SIGTERM');
    const code = await worker.exited;
    expect(code, worker.output).to.equal(0);
    expect(Date.now() - sentAt, 'ms from the signal to the exit').to.be.below(DOWN_BOUND_MS);
  });

  it('a start that fails after connecting (an ACL user that may not subscribe) closes its pool and connections, and exits with 1 saying why', async () => {
    const redis = await RedisServer.start();
    try {
      const admin = new Redis(redis.url);
      await admin.acl('SETUSER', 'nosub', 'on', '>nosub-password-1234', '~*', '&*', '+@all', '-subscribe');
      await admin.quit();
      const url = new URL(redis.url);
      const worker = run(['--redis', `redis://nosub:nosub-password-1234@${url.host}`, '--module-root', FIXTURES]);
      const { code } = await worker.exited;
      expect(code, worker.output()).to.equal(1);
      expect(worker.output(), worker.output()).to.match(/NOPERM/);
      expect(worker.output()).not.to.include('worker ready');
    } finally {
      await redis.stop();
    }
  });
});
