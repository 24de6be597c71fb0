// Runs a real redis-server for tests and the replication bench: our own
// child process on an ephemeral loopback port, with its data in a temp dir,
// so it never touches a system instance and dies with us. Tests kill and
// restart it on the same port to play the outages the store must survive.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface RedisServerOptions {
  /** Binary (default $REDIS_SERVER, else /usr/bin/redis-server, else redis-server on PATH). */
  readonly bin?: string;
  /** requirepass; the URL then carries it. */
  readonly password?: string;
  /** AOF on (default true), fsync'ed on every write so a kill -9 loses nothing in tests. */
  readonly appendonly?: boolean;
  /** Extra "--name value" arguments. */
  readonly args?: readonly string[];
  /** How long one start may take before it counts as failed (default 10 s). */
  readonly startTimeoutMs?: number;
  /** A fixed port (e.g. one a client already points at); default: a fresh ephemeral one. */
  readonly port?: number;
}

export interface RedisServer {
  readonly port: number;
  readonly host: string;
  /** redis://[:password@]127.0.0.1:port/0 */
  readonly url: string;
  /** Data directory (AOF/RDB), removed by stop(). */
  readonly dir: string;
  /** The server's stdout and stderr so far, for diagnostics. */
  log(): string;
  /** True while the process runs. */
  running(): boolean;
  /** SIGTERM, wait for exit, remove the data directory. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL (no save, no goodbye to clients), wait for exit. The data directory stays. */
  kill(): Promise<void>;
  /** Kill if running, then start again on the same port with no data at all. */
  restartEmpty(): Promise<void>;
  /** Kill if running, then start again on the same port from what the data directory holds (AOF). */
  restartKeepingData(): Promise<void>;
  /** restartEmpty() when `empty`, else restartKeepingData(). */
  restart(opts: { readonly empty: boolean }): Promise<void>;
}

/** The name test/multinode.test.ts uses. */
export type RedisProcess = RedisServer;

function findBin(bin?: string): string {
  const candidates = [bin, process.env['REDIS_SERVER'], '/usr/bin/redis-server', '/usr/local/bin/redis-server'];
  for (const c of candidates) if (c !== undefined && c !== '' && fs.existsSync(c)) return c;
  return 'redis-server';
}

/** A TCP port that was free on 127.0.0.1 a moment ago (the caller retries if it is taken by then). */
export async function freeTcpPort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** PING over a raw socket: the server answers +PONG (or -NOAUTH, which also means it is up). */
function ping(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let buf = '';
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('error', () => done(false));
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG') || buf.startsWith('-NOAUTH'));
    });
    s.once('connect', () => s.write('PING\r\n'));
  });
}

class Server implements RedisServer {
  readonly host = '127.0.0.1';
  private child: ChildProcess | undefined;
  private output = '';
  private stopped = false;
  // If the test process dies without teardown, the server and its files must not outlive it.
  private readonly onExit = (): void => {
    this.child?.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
  };

  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly bin: string,
    private readonly opts: RedisServerOptions,
  ) {
    process.once('exit', this.onExit);
  }

  get url(): string {
    const auth = this.opts.password !== undefined ? `:${encodeURIComponent(this.opts.password)}@` : '';
    return `redis://${auth}${this.host}:${this.port}/0`;
  }

  log(): string {
    return this.output;
  }

  running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** One start attempt; resolves 'ok', 'inuse' (port taken) or throws for anything else. */
  async launch(): Promise<'ok' | 'inuse'> {
    const args = [
      '--port', String(this.port),
      '--bind', this.host,
      '--dir', this.dir,
      '--daemonize', 'no',
      '--save', '',
      '--appendonly', this.opts.appendonly === false ? 'no' : 'yes',
      '--appendfsync', 'always',
      '--protected-mode', 'no',
      '--loglevel', 'notice',
      ...(this.opts.password !== undefined ? ['--requirepass', this.opts.password] : []),
      ...(this.opts.args ?? []),
    ];
    const child = spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 10_000);
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        if (/Address already in use|EADDRINUSE/i.test(this.output)) return 'inuse';
        throw new Error(`redis-server exited (${String(child.exitCode ?? child.signalCode)}):\n${this.output}`);
      }
      // The log line comes after the listener is up; PING proves it answers.
      if (/Ready to accept connections/.test(this.output) && (await ping(this.host, this.port, 1000))) return 'ok';
      await sleep(25);
    }
    child.kill('SIGKILL');
    await waitExit(child, 5000);
    throw new Error(`redis-server on port ${this.port} not ready within the start timeout:\n${this.output}`);
  }

  /** Same port again: it was ours a moment ago, so retry a little while something else holds it. */
  private async relaunch(): Promise<void> {
    if (this.stopped) throw new Error('redis-server was stopped (its data directory is gone); start a new one');
    for (let i = 0; i < 40; i++) {
      if ((await this.launch()) === 'ok') return;
      await sleep(250);
    }
    throw new Error(`port ${this.port} stayed in use; cannot restart redis-server there`);
  }

  async kill(): Promise<void> {
    const c = this.child;
    if (c === undefined || !this.running()) return;
    c.kill('SIGKILL');
    await waitExit(c, 5000);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const c = this.child;
    if (c !== undefined && this.running()) {
      c.kill('SIGTERM');
      if (!(await waitExit(c, 5000))) {
        c.kill('SIGKILL');
        await waitExit(c, 5000);
      }
    }
    process.removeListener('exit', this.onExit);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  async restartEmpty(): Promise<void> {
    await this.kill();
    for (const f of fs.readdirSync(this.dir)) fs.rmSync(path.join(this.dir, f), { recursive: true, force: true });
    await this.relaunch();
  }

  async restartKeepingData(): Promise<void> {
    await this.kill();
    await this.relaunch();
  }

  async restart(opts: { readonly empty: boolean }): Promise<void> {
    await (opts.empty ? this.restartEmpty() : this.restartKeepingData());
  }
}

/** Starts redis-server on a fresh ephemeral port (retrying on another port if one is taken meanwhile). */
export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const bin = findBin(opts.bin);
  let last = '';
  for (let attempt = 0; attempt < (opts.port !== undefined ? 1 : 8); attempt++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-redis-'));
    const port = opts.port ?? (await freeTcpPort());
    const s = new Server(port, dir, bin, opts);
    try {
      if ((await s.launch()) === 'ok') return s;
      last = `port ${port} in use`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await s.stop();
  }
  throw new Error(`could not start redis-server: ${last}`);
}
