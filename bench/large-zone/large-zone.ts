// Load time and memory of a large zone, and whether loading it stops answers
// for the other zones. Generates `big.test.` with N records next to the
// example zone, times loadConfig() and the daemon's start to its first answer,
// then reloads the running daemon while a separate process asks
// `example.test. SOA` every 10 ms and reports the longest silence it saw.
// A measuring tool, not a test: nothing asserts on the numbers. See README.md.
//
//   npm run build && node --expose-gc dist/bench/large-zone/large-zone.js [--records 1000000]

import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { startDaemon, type Daemon } from '../../server/daemon.js';
import { lowerKey, parseName } from '../../server/wire/name.js';
import { loadConfig, type LoadResult } from '../../zones/load.js';
import { repoRoot } from '../churn/setup.js';
import { QTYPE, queryOnce } from './dnsquery.js';
import type { PingStats } from './pinger.js';
import { BIG_ORIGIN, hostName, writeBigZone } from './zone-gen.js';
import { intArg, UsageError } from '../args.js';

class PingerFailed extends Error {
  override name = 'PingerFailed';
}

const USAGE = `usage: node --expose-gc dist/bench/large-zone/large-zone.js [options]
  --records N   records in big.test., SOA and NS included (1000000)
  --port P      DNS port on 127.0.0.1 (0: any free port)
  --every MS    the other process's query interval during reloads (10)
  --workers N   serve with \`vigil serve --workers N\` (a child process) instead of in this process`;

const MB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc;

interface Mem {
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
}

/** Memory now; after two full collections when run with --expose-gc, so it is what is retained. */
function mem(collect: boolean): Mem {
  if (collect && gc !== undefined) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external + m.arrayBuffers };
}

const fmtMem = (m: Mem): string => `rss ${(m.rss / MB).toFixed(0)} MB, heapUsed ${(m.heapUsed / MB).toFixed(0)} MB, external ${(m.external / MB).toFixed(0)} MB`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const out = (line: string): void => void process.stdout.write(`${line}\n`);

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(v: T): void;
  reject(e: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** pinger.ts beside this file, run the way this file runs (dist .js, or .ts under a loader). */
function startPinger(port: number, every: number, children: Set<ChildProcess>): { child: ChildProcess; ready: Promise<void>; stats: Promise<PingStats> } {
  const here = fileURLToPath(import.meta.url);
  const script = join(here, '..', `pinger${extname(here)}`);
  const child = spawn(process.execPath, [...process.execArgv.filter((a) => a !== '--expose-gc'), script, '--port', String(port), '--every', String(every)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const lines = createInterface({ input: child.stdout! });
  const ready = deferred<void>();
  const stats = deferred<PingStats>();
  // Either promise may never be awaited when the other fails first.
  ready.promise.catch(() => undefined);
  stats.promise.catch(() => undefined);
  const fail = (e: Error): void => {
    ready.reject(e);
    stats.reject(e);
  };
  lines.on('line', (line) => {
    if (line === 'ready') ready.resolve();
    else if (line.startsWith('{')) stats.resolve(JSON.parse(line) as PingStats);
  });
  child.once('error', (e) => fail(new PingerFailed(`cannot start pinger: ${e.message}`)));
  // 'close' comes after its stdout has ended, so a stats line already printed has been read.
  child.once('close', (code) => fail(new PingerFailed(`pinger exited with code ${code} before reporting`)));
  return { child, ready: ready.promise, stats: stats.promise };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      records: { type: 'string' },
      port: { type: 'string' },
      every: { type: 'string' },
      workers: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help === true) {
    out(USAGE);
    return;
  }
  const records = intArg(values.records, 'records', 1_000_000, 6);
  const port = intArg(values.port, 'port', 0, 0);
  const every = intArg(values.every, 'every', 10, 1);
  const workers = intArg(values.workers, 'workers', 1, 1);

  const dir = mkdtempSync(join(tmpdir(), 'vigil-large-zone-'));
  const children = new Set<ChildProcess>();
  let daemon: Daemon | undefined;
  const cleanup = async (): Promise<void> => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.race([daemon?.close(), sleep(5000)]);
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', () => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: stopping\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  try {
    const bigFile = join(dir, 'big.test.zone');
    const exampleFile = join(dir, 'example.test.zone');
    const configFile = join(dir, 'vigil.yaml');
    let t = performance.now();
    const zone = writeBigZone(bigFile, records);
    const genMs = performance.now() - t;
    copyFileSync(join(repoRoot(), 'zones', 'examples', 'example.test.zone'), exampleFile);
    writeFileSync(
      configFile,
      [`listen: ["127.0.0.1:${port}"]`, 'log: { level: error }', 'zones:', '  - origin: example.test.', '    file: example.test.zone', `  - origin: ${BIG_ORIGIN}`, '    file: big.test.zone', ''].join('\n'),
    );
    const types = Object.entries(zone.byType)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    out(`large zone: ${zone.total} records in ${BIG_ORIGIN} (${types}), ${zone.names} names, ${(zone.bytes / MB).toFixed(1)} MB master file, written in ${genMs.toFixed(0)} ms`);
    if (workers > 1) {
      await clusterRun({ configFile, exampleFile, bigFile, workers, every, records: zone.total, children });
      return;
    }
    if (gc === undefined) out('(run node with --expose-gc for retained memory; the figures below include garbage)');

    // 1. loadConfig alone: time and what the compiled zones keep.
    const m0 = mem(true);
    t = performance.now();
    let loaded: LoadResult | undefined = await loadConfig(configFile);
    const loadMs = performance.now() - t;
    const mLoaded = mem(false);
    const m1 = mem(true);
    const warnings = loaded.warnings.length;
    loaded = undefined;
    out(`loadConfig: ${loadMs.toFixed(0)} ms (${((zone.total / loadMs) * 1000).toFixed(0)} records/s), ${warnings} warnings`);
    out(`  memory before: ${fmtMem(m0)}`);
    out(`  after load:    ${fmtMem(mLoaded)} (before collection)`);
    out(`  retained:      ${fmtMem(m1)}`);
    out(
      `  per record:    ${((m1.rss - m0.rss) / zone.total).toFixed(0)} bytes RSS, ${((m1.heapUsed - m0.heapUsed) / zone.total).toFixed(0)} bytes heap, ` +
        `${((m1.external - m0.external) / zone.total).toFixed(0)} bytes external (buffers)`,
    );
    mem(true);

    // 2. The daemon: start to the first answer from the example zone (the big one loads after:
    // server/daemon.ts DEFER_ZONE_BYTES), then to the first from the big zone.
    const log = pino({ level: 'error' }, process.stderr);
    t = performance.now();
    daemon = await startDaemon(configFile, log, { levelFixed: true });
    const startMs = performance.now() - t;
    const dnsPort = daemon.server.addresses.udp[0]?.port;
    if (dnsPort === undefined) throw new Error('the daemon has no UDP listener');
    const other = await queryOnce('127.0.0.1', dnsPort, 'example.test.', QTYPE.SOA);
    const otherMs = performance.now() - t;
    const probeName = hostName(zone.lastHost);
    const first = await firstAnswer(dnsPort, probeName);
    const firstMs = performance.now() - t;
    out(
      `startDaemon: ${startMs.toFixed(0)} ms; example.test. SOA (rcode ${other.rcode}) ${otherMs.toFixed(0)} ms after the start; ` +
        `first answer from the big zone (${probeName} A: rcode ${first.rcode}, ${first.answers} answer, after ${first.servfails} SERVFAIL) ${firstMs.toFixed(0)} ms after the start`,
    );
    const mServing = mem(true);
    out(`  serving:       ${fmtMem(mServing)}`);

    // 3. Reloads while another process asks the small zone every `every` ms.
    const bigKey = lowerKey(parseName(BIG_ORIGIN));
    const bigZoneNow = (): unknown => daemon!.server.snapshot().views[0]?.zones.get(bigKey);
    const reloadUnderLoad = async (label: string): Promise<void> => {
      const p = startPinger(dnsPort, every, children);
      await Promise.race([p.ready, sleep(10_000).then(() => Promise.reject(new PingerFailed('pinger got no answer within 10 s')))]);
      p.child.stdin!.write('mark\n');
      await sleep(500);
      const before = bigZoneNow();
      const t0 = performance.now();
      const res = await daemon!.reload();
      const reloadMs = performance.now() - t0;
      if (!res.ok) throw new Error(`reload refused: ${res.errors ?? ''}`);
      await sleep(500);
      p.child.stdin!.write('stop\n');
      const s = await p.stats;
      p.child.stdin!.end();
      const same = bigZoneNow() === before;
      out(`reload (${label}): ${reloadMs.toFixed(0)} ms; ${BIG_ORIGIN} re-parsed: ${same ? 'no (same compiled zone)' : 'yes (new compiled zone)'}`);
      out(
        `  example.test. SOA from another process every ${every} ms over ${(s.windowMs / 1000).toFixed(1)} s: sent ${s.sent}, answered ${s.answered}, lost ${s.lost}, ` +
          `answered >1 s late ${s.lateOver1s}, longest gap between answers ${s.maxGapMs.toFixed(0)} ms, max latency ${s.maxLatencyMs.toFixed(0)} ms`,
      );
    };
    await reloadScenarios(exampleFile, bigFile, reloadUnderLoad);

    const mEnd = mem(true);
    out(`after reloads:   ${fmtMem(mEnd)}; peak RSS of the whole run ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
  } finally {
    await cleanup();
  }
}

/** The three reloads, in order: nothing changed, only the small zone, the big zone itself. */
async function reloadScenarios(exampleFile: string, bigFile: string, reloadUnderLoad: (label: string) => Promise<void>): Promise<void> {
  await reloadUnderLoad('nothing changed');
  const text = readFileSync(exampleFile, 'utf8');
  const bumped = text.replace(/(\d+)(\s*;\s*serial)/, (_m, serial: string, rest: string) => `${Number(serial) + 1}${rest}`);
  if (bumped === text) throw new Error(`no "; serial" comment in ${exampleFile} to bump`);
  writeFileSync(exampleFile, bumped);
  await reloadUnderLoad('only example.test. changed');
  // The big zone itself changed (a new serial): it is parsed and compiled
  // again, in slices, while the old one keeps answering.
  const bigText = readFileSync(bigFile, 'utf8');
  const bigBumped = bigText.replace(/(@ IN SOA \S+ \S+ )(\d+)/, (_m, head: string, serial: string) => `${head}${Number(serial) + 1}`);
  if (bigBumped === bigText) throw new Error(`no SOA serial found in ${bigFile} to bump`);
  writeFileSync(bigFile, bigBumped);
  await reloadUnderLoad(`${BIG_ORIGIN} changed`);
}

/** VmRSS of a process and of its children (the serving workers), MB. */
function rssTree(pid: number): string {
  const rss = (p: number): number => {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : 0;
    } catch {
      return 0;
    }
  };
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    kids = [];
  }
  return `primary ${rss(pid).toFixed(0)} MB, workers ${kids.map((k) => `${rss(k).toFixed(0)} MB`).join(' + ') || 'none'}`;
}

/**
 * The same reloads against \`vigil serve --workers N\`: the primary loads,
 * the workers answer UDP from clones. A reload is done when every worker
 * says it serves the new config (the primary's debug log).
 */
async function clusterRun(o: { configFile: string; exampleFile: string; bigFile: string; workers: number; every: number; records: number; children: Set<ChildProcess> }): Promise<void> {
  const cli = join(repoRoot(), 'dist', 'cli', 'vigil.js');
  const t0 = performance.now();
  const child = spawn(process.execPath, [cli, 'serve', '--config', o.configFile, '--workers', String(o.workers), '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'inherit'] });
  o.children.add(child);
  child.once('exit', () => o.children.delete(child));
  const waiting: { match: string; left: number; done: Deferred<number> }[] = [];
  const expect = (match: string, count: number): Promise<number> => {
    const done = deferred<number>();
    waiting.push({ match, left: count, done });
    return done.promise;
  };
  let port: number | undefined;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let rec: { level?: number; msg?: string; tcp?: { port: number }[] };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      return;
    }
    if ((rec.level ?? 0) >= 40) process.stderr.write(`vigil: ${line}\n`);
    if (rec.msg === 'listening' && rec.tcp?.[0] !== undefined) port = rec.tcp[0].port;
    for (const w of waiting) if (rec.msg === w.match && --w.left === 0) w.done.resolve(performance.now());
  });
  child.once('exit', (code) => {
    for (const w of waiting) w.done.reject(new Error(`vigil serve exited (${code}) while waiting for "${w.match}"`));
  });
  await expect('listening', 1);
  if (port === undefined) throw new Error('vigil serve did not log its port');
  const other = await queryOnce('127.0.0.1', port, 'example.test.', QTYPE.SOA, 60_000);
  const otherS = (performance.now() - t0) / 1000;
  const first = await firstAnswer(port, hostName(Math.floor(o.records * 0.6)));
  out(
    `vigil serve --workers ${o.workers}: example.test. SOA (rcode ${other.rcode}) ${otherS.toFixed(1)} s after the start; ` +
      `first answer from the big zone (rcode ${first.rcode}, after ${first.servfails} SERVFAIL) ${((performance.now() - t0) / 1000).toFixed(1)} s after the start; ${rssTree(child.pid!)}`,
  );

  await reloadScenarios(o.exampleFile, o.bigFile, async (label) => {
    const p = startPinger(port!, o.every, o.children);
    await Promise.race([p.ready, sleep(10_000).then(() => Promise.reject(new PingerFailed('pinger got no answer within 10 s')))]);
    p.child.stdin!.write('mark\n');
    await sleep(500);
    const reloaded = expect('config reloaded', 1);
    const applied = expect('serving worker serves the new config', o.workers);
    const start = performance.now();
    child.kill('SIGHUP');
    const reloadedAt = await reloaded;
    const appliedAt = await applied;
    await sleep(500);
    p.child.stdin!.write('stop\n');
    const s = await p.stats;
    p.child.stdin!.end();
    out(`reload (${label}): loaded in ${((reloadedAt - start) / 1000).toFixed(2)} s, every worker serving it ${((appliedAt - start) / 1000).toFixed(2)} s after SIGHUP; ${rssTree(child.pid!)}`);
    out(
      `  example.test. SOA from another process every ${o.every} ms over ${(s.windowMs / 1000).toFixed(1)} s: sent ${s.sent}, answered ${s.answered}, lost ${s.lost}, ` +
        `answered >1 s late ${s.lateOver1s}, longest gap between answers ${s.maxGapMs.toFixed(0)} ms, max latency ${s.maxLatencyMs.toFixed(0)} ms`,
    );
  });
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}


/** Asks `name` A every 100 ms until the answer is not SERVFAIL (the zone is still loading), for at most two minutes. */
async function firstAnswer(port: number, name: string): Promise<Awaited<ReturnType<typeof queryOnce>> & { servfails: number }> {
  let servfails = 0;
  for (const end = performance.now() + 120_000; ; servfails++) {
    const r = await queryOnce('127.0.0.1', port, name, QTYPE.A, 60_000);
    if (r.rcode !== 2 || performance.now() > end) return { ...r, servfails };
    await sleep(100);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    if (err instanceof UsageError) process.stderr.write(`${err.message}\n${USAGE}\n`);
    else process.stderr.write(`large-zone bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
