/**
 * What the BullMQ backend runs against, for its tests and the benchmark: a real
 * `redis-server` on loopback, in a temporary directory, and real worker processes
 * started with the built command line (`dist/src/cli.js worker`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The built command line the worker processes run. */
export const CLI = resolve(__dirname, '..', 'dist', 'src', 'cli.js');
/** The tests' node modules: the worker processes' module root. */
export const FIXTURES = resolve(__dirname, 'fixtures');
/** The secret the tests' executors and worker processes share. */
export const SECRET = 'lukhas-test-secret-0123456789';
/** The environment of a worker process that takes signed jobs only. */
export const SIGNED = { LUKHAS_SECRET: SECRET };

/** Whether `redis-server` can be started here, and if not, why. */
export function redisServerMissing(): string | undefined {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined) return `redis-server cannot be started (${probe.error.message}); install it: apt-get install redis-server`;
  return undefined;
}

/**
 * For a suite's `before()`: skips the suite, with a message, when `redis-server` cannot be
 * started, unless `LUKHAS_REQUIRE_REDIS=1` (as in CI), which makes it a failure.
 */
export function requireRedisServer(context: Mocha.Context): void {
  const missing = redisServerMissing();
  if (missing === undefined) return;
  if (process.env.LUKHAS_REQUIRE_REDIS === '1') throw new Error(missing);
  console.log(`      skipped: ${missing}`);
  context.skip();
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

/** Resolves once the child prints `ready`; rejects, with what it printed, if it exits first. */
export function untilReady(child: ChildProcess, ready: RegExp, what: string): Promise<void> {
  return new Promise((resolveReady, reject) => {
    let output = '';
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (ready.test(output)) {
        cleanup();
        resolveReady();
      }
    };
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup();
      reject(new Error(`${what} exited (code ${code}, signal ${signal}) before it was ready:\n${output}`));
    };
    const cleanup = (): void => {
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      // Keep draining, so that a chatty child never blocks on a full pipe.
      child.stdout?.resume();
      child.stderr?.resume();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Resolves with the exit code once the child has exited. */
export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolveExit) => child.once('exit', (code) => resolveExit(code)));
}

export class RedisServer {
  private constructor(
    private child: ChildProcess,
    private readonly dir: string,
    readonly url: string,
    private readonly args: readonly string[],
  ) {}

  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Starts a server with no persistence on a free loopback port; with `tls`, one that
   * takes only TLS connections, with that certificate (clients need not show one); with
   * `aof`, one that keeps an append-only file synced every second (`appendfsync everysec`).
   */
  static async start(tls?: { readonly cert: string; readonly key: string }, aof = false): Promise<RedisServer> {
    let lastError: unknown;
    // The port is free when chosen; another process may take it before the server does.
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const dir = mkdtempSync(join(tmpdir(), 'lukhas-redis-'));
      const listen =
        tls === undefined
          ? ['--port', String(port)]
          : ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.cert, '--tls-auth-clients', 'no'];
      const persistence = aof ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no'];
      const args = [...listen, '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', dir];
      const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        await untilReady(child, /Ready to accept connections/, 'redis-server');
        return new RedisServer(child, dir, `${tls === undefined ? 'redis' : 'rediss'}://127.0.0.1:${port}`, args);
      } catch (error) {
        lastError = error;
        rmSync(dir, { recursive: true, force: true });
      }
    }
    throw lastError;
  }

  /**
   * Ends the server with `signal` (SIGKILL: nothing more is written; SIGTERM: it syncs
   * its append-only file first), then starts it again on the same port and directory
   * once `down` resolves.
   */
  async restart(signal: NodeJS.Signals, down: () => Promise<void> = () => Promise.resolve()): Promise<void> {
    const done = exited(this.child);
    this.child.kill(signal);
    await done;
    await down();
    this.child = spawn('redis-server', this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    await untilReady(this.child, /Ready to accept connections/, 'redis-server');
  }

  async stop(): Promise<void> {
    const done = exited(this.child);
    this.child.kill('SIGTERM');
    await done;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy to Redis whose traffic can be frozen both ways, its connections left open:
 * a network partition as a client sees it (its commands go unanswered, nothing closes).
 */
export class FreezingProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private frozen = false;
  url = '';

  private constructor(target: URL) {
    this.server = createServer((client) => {
      const upstream = connect(Number(target.port), target.hostname);
      // By hand rather than pipe(), which resumes a paused stream once its destination drains.
      const forward = (from: Socket, to: Socket): void => {
        this.sockets.add(from);
        from.on('data', (chunk) => this.frozen || to.write(chunk));
        from.on('error', () => {});
        from.on('close', () => {
          this.sockets.delete(from);
          to.destroy();
        });
      };
      forward(client, upstream);
      forward(upstream, client);
    });
  }

  static async start(target: URL): Promise<FreezingProxy> {
    const proxy = new FreezingProxy(target);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    proxy.url = `redis://127.0.0.1:${(proxy.server.address() as { port: number }).port}`;
    return proxy;
  }

  /** From now on nothing passes, either way, on any connection: what is sent is lost. */
  freeze(): void {
    this.frozen = true;
  }

  close(): void {
    this.server.close();
    for (const socket of this.sockets) socket.destroy();
  }
}

export class WorkerProcess {
  /** Its exit code, once it has exited. */
  readonly exited: Promise<number | null>;
  /** What it has printed so far, stdout and stderr. */
  output = '';
  /** The same, line by line, each with the time it was read (`Date.now()`). */
  readonly lines: string[] = [];
  private readonly waiters: { readonly pattern: RegExp; readonly found: () => void }[] = [];

  private constructor(private readonly child: ChildProcess) {
    this.exited = exited(child);
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString();
      this.output += text;
      const at = Date.now();
      for (const line of text.split('\n')) if (line !== '') this.lines.push(`${at} ${line}`);
      for (const waiter of [...this.waiters]) {
        if (!waiter.pattern.test(this.output)) continue;
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.found();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Starts `lukhas-orchestrator worker --redis <url> ...args` (no --redis when `url` is
   * undefined) with `env` added to the environment, and waits until it takes jobs.
   */
  static async start(url: string | undefined, args: readonly string[] = [], env: Record<string, string> = {}): Promise<WorkerProcess> {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    const redis = url === undefined ? [] : ['--redis', url];
    const child = spawn(process.execPath, [CLI, 'worker', ...redis, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    const worker = new WorkerProcess(child);
    await untilReady(child, /worker ready/, 'the worker process');
    return worker;
  }

  /** Resolves once what it printed matches `pattern`; rejects if it exits first. */
  printed(pattern: RegExp): Promise<void> {
    if (pattern.test(this.output)) return Promise.resolve();
    return new Promise((resolveFound, reject) => {
      this.waiters.push({ pattern, found: resolveFound });
      void this.exited.then(() => {
        if (!pattern.test(this.output)) reject(new Error(`the worker process exited without printing ${pattern}:\n${this.output}`));
      });
    });
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Asks it to finish (SIGTERM) and waits until it has. */
  async stop(): Promise<number | null> {
    this.child.kill('SIGTERM');
    return this.exited;
  }
}

/** One execution of a node, as its probe file tells it. */
interface Execution {
  readonly pid: number;
  readonly start: number;
  readonly end: number | undefined;
  readonly how: string | undefined;
}

/** The executions a probe file records, in the order they started. */
export function executions(path: string): Execution[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const open = new Map<number, { pid: number; start: number }>();
  const done: Execution[] = [];
  for (const line of text.split('\n')) {
    const [kind, pid, at, how] = line.split(' ');
    if (kind === 'start') open.set(Number(pid), { pid: Number(pid), start: Number(at) });
    else if (kind === 'end') {
      const started = open.get(Number(pid))!;
      open.delete(Number(pid));
      done.push({ ...started, end: Number(at), how });
    }
  }
  for (const started of open.values()) done.push({ ...started, end: undefined, how: undefined });
  return done.sort((a, b) => a.start - b.start);
}

/** Resolves once `check` holds, looking every 20 ms; rejects after `ms`. */
export async function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
