// Runs Knot DNS as a reference authoritative server for differential tests.
// knotd is started as our own child process with a throw-away config, rundir
// and storage, so it never touches a system installation and dies with us.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { normalise, query } from './dnsclient.js';

export interface KnotZone {
  /** Zone origin, absolute ("example.test."). */
  origin: string;
  /** Path of the zone file; it is copied, Knot never sees the original. */
  file: string;
}

export interface KnotOptions {
  knotd?: string;
  /** How long to wait for the first SOA answer per start attempt. */
  startTimeoutMs?: number;
  /** Start attempts, each on a fresh port: another process may grab the port between our probe and Knot's bind. */
  attempts?: number;
}

export interface KnotServer {
  readonly port: number;
  readonly dir: string;
  /** Knot's log so far, for diagnostics when a comparison fails. */
  log(): string;
  /**
   * The zone as Knot parsed it, one "owner ttl type rdata" line per record,
   * read over the control socket: an independent view of what the file holds,
   * without opening zone transfers (which the tests expect to be refused).
   */
  zoneRecords(origin: string): string[];
  stop(): Promise<void>;
}

const DEFAULT_KNOTD = 'knotd';

/** The knotd binary if it can run here, else undefined (so tests can skip with a reason rather than fail). */
export function findKnotd(knotd: string = process.env['KNOTD'] ?? DEFAULT_KNOTD): string | undefined {
  const candidates = [knotd, '/usr/sbin/knotd', '/usr/local/sbin/knotd'];
  for (const c of candidates) {
    const r = spawnSync(c, ['--version'], { encoding: 'utf8', timeout: 5000 });
    if (r.status === 0 && /Knot DNS/.test(r.stdout + r.stderr)) return c;
  }
  return undefined;
}

/** knotc lives next to knotd in every packaging we know of; fall back to PATH. */
function knotc(knotd: string): string {
  const sibling = path.join(path.dirname(knotd), 'knotc');
  return path.isAbsolute(knotd) && fs.existsSync(sibling) ? sibling : 'knotc';
}

/** A port free for both UDP and TCP on 127.0.0.1 at the time of the call. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const udp = dgram.createSocket('udp4');
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve(udp.address().port));
    });
    const tcpOk = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (tcpOk) return port;
  }
  throw new Error('no port free for both UDP and TCP after 20 tries');
}

function knotConfig(dir: string, port: number, zones: readonly { origin: string; file: string }[]): string {
  // Every server-identifying answer is disabled: Vigil has none by default, and
  // an NSID option or CHAOS TXT answer would be a difference of configuration,
  // not of behaviour.
  return `server:
    rundir: "${dir}"
    pidfile: "${dir}/knot.pid"
    listen: 127.0.0.1@${port}
    identity: ""
    version: ""
    nsid: ""
    udp-max-payload: 1232
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

control:
    listen: "${dir}/knot.sock"

database:
    storage: "${dir}"

log:
  - target: stderr
    any: info

template:
  - id: default
    storage: "${dir}"
    # Load exactly what the file says, never a journal, and never write back.
    zonefile-load: whole
    zonefile-sync: -1
    journal-content: none
    semantic-checks: off
    dnssec-signing: off

zone:
${zones.map((z) => `  - domain: "${z.origin}"\n    file: "${z.file}"`).join('\n')}
`;
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
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

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if (!(await waitExit(child, 2000))) {
    child.kill('SIGKILL');
    await waitExit(child, 2000);
  }
}

export async function startKnot(zones: readonly KnotZone[], opts: KnotOptions = {}): Promise<KnotServer> {
  const knotd = findKnotd(opts.knotd);
  if (knotd === undefined) throw new Error('knotd not found (install the Debian package "knot")');
  const attempts = opts.attempts ?? 4;
  const startTimeoutMs = opts.startTimeoutMs ?? 5000;
  let lastError = '';
  for (let attempt = 0; attempt < attempts; attempt++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-knot-'));
    const copied = zones.map((z, i) => {
      const file = path.join(dir, `zone${i}.zone`);
      fs.copyFileSync(z.file, file);
      return { origin: z.origin, file };
    });
    const port = await freePort();
    const conf = path.join(dir, 'knot.conf');
    fs.writeFileSync(conf, knotConfig(dir, port, copied));
    const child = spawn(knotd, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    // If the test process dies without teardown, knotd must not outlive it.
    const onExit = (): void => {
      child.kill('SIGKILL');
    };
    process.once('exit', onExit);
    const cleanup = async (): Promise<void> => {
      await kill(child);
      process.removeListener('exit', onExit);
      fs.rmSync(dir, { recursive: true, force: true });
    };

    const deadline = Date.now() + startTimeoutMs;
    let ready = false;
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        // Every zone must be loaded, not just the server listening.
        let all = true;
        for (const z of zones) {
          const r = await query(port, { qname: z.origin, qtype: 'SOA' }, { timeoutMs: 300 });
          const n = normalise(r.raw);
          if (n.rcode !== 0 || n.answer.length !== 1) all = false;
        }
        if (all) {
          ready = true;
          break;
        }
      } catch {
        // Not listening yet.
      }
      await sleep(50);
    }
    if (ready) {
      let stopped = false;
      return {
        port,
        dir,
        log: () => log,
        zoneRecords: (origin: string) => {
          const r = spawnSync(knotc(knotd), ['-s', path.join(dir, 'knot.sock'), 'zone-read', origin], { encoding: 'utf8', timeout: 5000 });
          if (r.status !== 0) throw new Error(`knotc zone-read ${origin} failed: ${r.stderr}`);
          // Lines look like "[example.test.] www.example.test. 300 A 192.0.2.10".
          return r.stdout
            .split('\n')
            .filter((l) => l.startsWith('['))
            .map((l) => l.replace(/^\[[^\]]*\]\s+/, '').trim());
        },
        stop: async () => {
          if (stopped) return;
          stopped = true;
          await cleanup();
        },
      };
    }
    lastError = `knotd on port ${port} did not answer for all zones within ${startTimeoutMs} ms (exit ${String(child.exitCode)}):\n${log}`;
    await cleanup();
  }
  throw new Error(lastError);
}
