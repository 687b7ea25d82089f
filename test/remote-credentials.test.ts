/**
 * The BullMQ backend's credentials and start-up refusals: a Redis ACL user with a
 * password (from the environment or a file, never on the command line, in `ps`, in a
 * message or a log line), TLS against a redis-server with a self-signed certificate, and
 * the worker process's refusals to start.
 */
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackendUnavailableException, bullmqBackend, startWorker } from '../src/index';
import { fixture, rejection, useExecutors } from './helpers';
import { CLI, FIXTURES, RedisServer, SECRET, WorkerProcess, requireRedisServer } from './remote-env';

const PASSWORD = 'hunter2-acl-password';
const USER = 'lukhas-user';
const sleepAdd = fixture('sleep-add.js');

/** What Redis answers a PING from a client that does not authenticate. */
function anonymousPing(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString());
    });
    socket.once('error', reject);
  });
}

/** `ps`'s view of a process's command line. */
function commandLine(pid: number): string {
  return spawnSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' }).stdout;
}

describe('BullMQ backend: credentials (redis-server with an ACL user, and with TLS)', function () {
  this.timeout(60_000);
  let dir: string;
  const workers: WorkerProcess[] = [];
  const newExecutor = useExecutors();

  before(function () {
    requireRedisServer(this);
    dir = mkdtempSync(join(tmpdir(), 'lukhas-credentials-'));
  });

  afterEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.stop()));
  });

  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  describe('an ACL user with a password', () => {
    let redis: RedisServer;
    let url: string;

    before(async () => {
      redis = await RedisServer.start();
      const admin = new Redis(redis.url);
      await admin.acl('SETUSER', USER, 'on', `>${PASSWORD}`, '~*', '&*', '+@all');
      // Only the ACL user can connect from now on.
      await admin.acl('SETUSER', 'default', 'off');
      admin.disconnect();
      const { port } = new URL(redis.url);
      url = `redis://${USER}:${PASSWORD}@127.0.0.1:${port}`;
    });

    after(() => redis?.stop());

    it('worker processes (URL from LUKHAS_REDIS_URL, from --redis-file) and an executor (connectionFile) run as the ACL user; the password is in no ps output nor any line they print', async () => {
      expect(await anonymousPing(redis.url)).to.match(/^-NOAUTH/);
      const file = join(dir, 'redis-url');
      writeFileSync(file, `${url}\n`, { mode: 0o600 });
      const queue = 'acl';
      const args = ['--queue', queue, '--threads', '1', '--module-root', FIXTURES];
      const fromEnv = await WorkerProcess.start(undefined, args, { LUKHAS_REDIS_URL: url, LUKHAS_SECRET: SECRET });
      const fromFile = await WorkerProcess.start(undefined, ['--redis-file', file, ...args], { LUKHAS_SECRET: SECRET });
      workers.push(fromEnv, fromFile);
      const executor = newExecutor({ backend: bullmqBackend({ connectionFile: file, queue, secret: SECRET }) });
      await executor.ready();
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => executor.executePipeline({ nodes: [{ id: 'add', module: sleepAdd }], initialInput: i })));
      expect(results).to.deep.equal(Array.from({ length: 20 }, (_, i) => i + 1));
      for (const worker of [fromEnv, fromFile]) {
        expect(commandLine(worker.pid)).to.include('worker').and.not.include(PASSWORD);
        expect(worker.output).to.include(`on ${USER}@127.0.0.1:`).and.not.include(PASSWORD);
      }
    });

    it('a wrong password: ready() rejects with BackendUnavailableException naming the user and host, never the password', async () => {
      const wrong = url.replace(PASSWORD, 'not-the-password-42');
      const lines: string[] = [];
      const executor = newExecutor({ backend: bullmqBackend({ connection: wrong, connectTimeoutMs: 1_000, secret: SECRET, log: (line) => lines.push(line) }) });
      const error = await rejection(executor.ready());
      expect(error).to.be.instanceOf(BackendUnavailableException);
      const message = (error as Error).message;
      expect(message).to.match(new RegExp(`could not reach Redis at ${USER}@127\\.0\\.0\\.1:\\d+ within 1000 ms: WRONGPASS`));
      for (const text of [message, String((error as Error).cause), ...lines]) expect(text).to.not.include('not-the-password-42');
    });

    it('--redis with a password works, and warns that ps shows it (without printing it)', async () => {
      const worker = await WorkerProcess.start(url, ['--queue', 'acl-cli', '--threads', '1', '--module-root', FIXTURES], { LUKHAS_SECRET: SECRET });
      workers.push(worker);
      expect(worker.output).to.match(/warning: the password in --redis shows in `ps`; give the URL in --redis-file or LUKHAS_REDIS_URL instead/);
      expect(worker.output).to.not.include(PASSWORD);
    });
  });

  describe('TLS (rediss://) against a redis-server with a self-signed certificate', () => {
    let redis: RedisServer;
    let cert: string;

    before(async function () {
      cert = join(dir, 'cert.pem');
      const key = join(dir, 'key.pem');
      const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
      if (made.status !== 0) throw new Error(`openssl could not make a certificate: ${made.stderr}`);
      redis = await RedisServer.start({ cert, key });
    });

    after(() => redis?.stop());

    it('a worker process (rediss:// URL, the CA in NODE_EXTRA_CA_CERTS) and an executor (ioredis tls options) run over TLS', async () => {
      const queue = 'tls';
      const worker = await WorkerProcess.start(undefined, ['--queue', queue, '--threads', '1', '--module-root', FIXTURES], {
        LUKHAS_REDIS_URL: redis.url,
        NODE_EXTRA_CA_CERTS: cert,
        LUKHAS_SECRET: SECRET,
      });
      workers.push(worker);
      expect(worker.output).to.match(/on 127\.0\.0\.1:\d+ \(TLS\)/);
      const { port } = new URL(redis.url);
      const executor = newExecutor({ backend: bullmqBackend({ connection: { host: '127.0.0.1', port: Number(port), tls: { ca: readFileSync(cert) } }, queue, secret: SECRET }) });
      await executor.ready();
      expect(await executor.executePipeline({ nodes: [{ id: 'a', module: sleepAdd }, { id: 'b', module: sleepAdd }], initialInput: 1 })).to.equal(3);
    });

    it('rediss:// checks the certificate: an unknown CA is refused', async () => {
      const executor = newExecutor({ backend: bullmqBackend({ connection: redis.url, connectTimeoutMs: 1_000, secret: SECRET, log: () => {} }) });
      expect(await rejection(executor.ready())).to.be.instanceOf(BackendUnavailableException).with.property('message').that.matches(/self.signed certificate/);
    });
  });
});

describe('BullMQ backend: the command line and refusals at start, with no Redis', () => {
  it('a worker process without --module-root refuses to start, exits with 2 and says why', () => {
    const result = spawnSync(process.execPath, [CLI, 'worker', '--redis', 'redis://127.0.0.1:1'], { encoding: 'utf8' });
    expect(result.status).to.equal(2);
    expect(result.stderr).to.match(/--module-root <dir> is required: a worker process runs only the node modules inside the directories it is given/);
    const empty = spawnSync(process.execPath, [CLI, 'worker', '--redis', 'redis://127.0.0.1:1', '--module-root', ''], { encoding: 'utf8', timeout: 10_000 });
    expect(empty.status).to.equal(2);
    expect(empty.stderr).to.match(/--module-root needs a directory: an empty one is refused/);
  });

  it('startWorker() without moduleRoots, or with a missing one, rejects before it connects', async () => {
    const connection = 'redis://127.0.0.1:1';
    expect(await rejection(startWorker({ connection } as never))).to.be.instanceOf(TypeError).with.property('message').that.matches(/give `moduleRoots`/);
    expect(await rejection(startWorker({ connection, moduleRoots: ['/no/such/dir'] }))).to.be.instanceOf(TypeError).with.property('message').that.matches(/does not exist/);
  });

  it('a secret shorter than 16 bytes, or a secret file that cannot be read, is refused without showing it', async () => {
    expect(() => bullmqBackend({ connection: 'redis://127.0.0.1:1', secret: 'short-secret' })).to.throw(RangeError, /`secret` to be at least 16 bytes long.*got 12$/);
    const missing = spawnSync(process.execPath, [CLI, 'worker', '--redis', 'redis://127.0.0.1:1', '--module-root', FIXTURES, '--secret-file', '/no/such/secret'], { encoding: 'utf8' });
    expect(missing.status).to.equal(1);
    expect(missing.stderr).to.match(/Cannot read the secret file "\/no\/such\/secret"/);
    expect(await rejection(startWorker({ connection: 'redis://127.0.0.1:1', moduleRoots: [FIXTURES], secret: 'short-secret' }))).to.be.instanceOf(RangeError);
  });

  it('a URL that is wrong shows without its password, in bullmqBackend(), startWorker() and the command line', async () => {
    for (const url of ['redis://user:hunter2-secret@127.0.0.1:6379/not-a-db', 'redis://user:hunter2-secret@127.0.0.1:port']) {
      let message = '';
      try {
        bullmqBackend({ connection: url });
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).to.match(/Expected/).and.include('***').and.not.include('hunter2');
      const rejected = (await rejection(startWorker({ connection: url, moduleRoots: [FIXTURES] }))) as Error;
      expect(rejected.message).to.include('***').and.not.include('hunter2');
      const cli = spawnSync(process.execPath, [CLI, 'worker', '--module-root', FIXTURES], { encoding: 'utf8', env: { ...process.env, LUKHAS_REDIS_URL: url } });
      expect(cli.status).to.equal(1);
      expect(cli.stderr).to.include('***').and.not.include('hunter2');
    }
  });

  it('the command line names a bad option and exits with 1, before it connects', () => {
    const result = spawnSync(process.execPath, [CLI, 'worker', '--redis', 'redis://127.0.0.1:6379', '--module-root', FIXTURES, '--threads', 'two'], { encoding: 'utf8' });
    expect(result.status).to.equal(1);
    expect(result.stderr).to.match(/--threads must be a positive integer, got "two"/);
  });

  it('the command line names a missing --redis, and exits with 2', () => {
    const result = spawnSync(process.execPath, [CLI, 'worker'], { encoding: 'utf8' });
    expect(result.status).to.equal(2);
    expect(result.stderr).to.match(/--redis <url> is required/);
  });

  it('the command line names an unknown command, and exits with 2', () => {
    const result = spawnSync(process.execPath, [CLI, 'wrker'], { encoding: 'utf8' });
    expect(result.status).to.equal(2);
    expect(result.stderr).to.match(/unknown command "wrker"/);
  });
});
