// A start beside a large zone file: the daemon answers the other zones at
// once and loads the large one after (DaemonOptions.deferZonesOver). Until it
// has, its names answer SERVFAIL without AA, which is what Knot DNS answers
// for a zone it has not loaded (knotd 3.2 with a zone file that fails to
// load: "status: SERVFAIL, flags: qr"), and /readyz says not ready. A large
// zone that fails to load leaves the rest serving, its errors logged with
// file and line, until a reload loads it. Answers are read with c-ares
// (node:dns) and checked raw for the flags.

import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';
import { pino } from 'pino';
import { startDaemon, type Daemon } from '../server/daemon.js';
import { normalise, query } from './helpers/dnsclient.js';
import { captureLog } from './helpers/log-capture.js';
import { runSliced, type Steps } from '../zones/steps.js';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const RCODE_SERVFAIL = 2;

/** A zone file of `n` A records (about 30 bytes each): big enough to take a visible while to load. */
function bigZone(n: number): string {
  const lines = ['$ORIGIN big.test.', '$TTL 300', '@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300', '@ NS ns1', 'ns1 A 127.0.0.1'];
  for (let i = 0; i < n; i++) lines.push(`h${i} A 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  return `${lines.join('\n')}\n`;
}

const YAML = `listen: ["127.0.0.1:0"]
zones:
  - origin: small.test.
    records: ["@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300", "@ 3600 IN NS ns1", "ns1 3600 IN A 127.0.0.1", "www 300 IN A 192.0.2.10"]
  - origin: big.test.
    file: big.test.zone
services:
  - name: svc.small.test.
    members:
      - { name: a, addresses: ["192.0.2.21"] }
  - name: svc.big.test.
    members:
      - { name: a, addresses: ["192.0.2.31"] }
`;

function resolverFor(d: Daemon): Resolver {
  const r = new Resolver({ timeout: 1000, tries: 1 });
  r.setServers([`127.0.0.1:${d.server.addresses.udp[0]!.port}`]);
  return r;
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'answer';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

async function until(what: string, cond: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

t.test('the other zones answer while a large zone loads; it answers SERVFAIL until loaded', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-defer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // About 6 MB: seconds to load on this machine, far longer than the first queries take.
  writeFileSync(join(dir, 'big.test.zone'), bigZone(200_000));
  writeFileSync(join(dir, 'vigil.yaml'), YAML);
  const { log, lines } = captureLog();
  const daemon = await startDaemon(join(dir, 'vigil.yaml'), log, { levelFixed: true, deferZonesOver: 1_000_000 });
  t.teardown(() => daemon.close());
  const r = resolverFor(daemon);
  const port = daemon.server.addresses.udp[0]!.port;

  // At once: the small zone and its service answer, the large zone's names SERVFAIL, others are refused.
  t.same(await r.resolve4('www.small.test'), ['192.0.2.10'], 'the small zone answers at once');
  t.same(await r.resolve4('svc.small.test'), ['192.0.2.21'], 'and its service');
  t.equal(await code(r.resolve4('h7.big.test')), 'ESERVFAIL', 'a name of the loading zone: SERVFAIL');
  t.equal(await code(r.resolve4('svc.big.test')), 'ESERVFAIL', 'its service too');
  t.equal(await code(r.resolve4('www.elsewhere.test')), 'EREFUSED', 'a name of no zone is still refused');
  const raw = normalise((await query(port, { qname: 'big.test.', qtype: 'SOA', edns: {} })).raw);
  t.same({ rcode: raw.rcode, aa: raw.flags.aa, answer: raw.answer.length }, { rcode: RCODE_SERVFAIL, aa: false, answer: 0 }, 'the apex too, without AA, as Knot answers');
  const notReady = daemon.engine.ready();
  t.same(notReady, { ready: false, reasons: ['zones not loaded yet: big.test.'] }, 'not ready, and /readyz says why');
  t.ok(lines.some((l) => l['msg'] === 'large zones load now; their names answer SERVFAIL until then'), 'the log says so');

  // While it loads, the small zone keeps answering: a query every 20 ms, each within the resolver's 1 s timeout.
  let asked = 0;
  const failures: string[] = [];
  await until('the large zone to answer', async () => {
    asked++;
    const small = await code(r.resolve4('www.small.test'));
    if (small !== 'answer') failures.push(small);
    return (await code(r.resolve4('h199999.big.test'))) === 'answer';
  });
  t.same(failures, [], `the small zone answered all ${asked} queries made while the large one loaded`);
  t.ok(asked >= 3, `the load took a while (${asked} rounds of queries)`);
  t.same(await r.resolve4('h199999.big.test'), ['10.3.13.63'], 'the last record of the large zone');
  t.same(await r.resolve4('svc.big.test'), ['192.0.2.31'], 'the service inside it');
  t.same(daemon.engine.ready(), { ready: true, reasons: [] }, 'ready once it loaded');
  t.ok(lines.some((l) => l['msg'] === 'large zones loaded'), 'the log says it loaded');
});

t.test('a large zone that fails to load: the rest keeps serving, the error names file and line, a reload loads it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-defer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const zone = join(dir, 'big.test.zone');
  const good = bigZone(60_000);
  writeFileSync(zone, good);
  appendFileSync(zone, 'broken A 10.0.0.999\n');
  const badLine = good.split('\n').length;
  writeFileSync(join(dir, 'vigil.yaml'), YAML);
  const { log, lines } = captureLog();
  const daemon = await startDaemon(join(dir, 'vigil.yaml'), log, { levelFixed: true, deferZonesOver: 100_000 });
  t.teardown(() => daemon.close());
  const r = resolverFor(daemon);

  await until('the failed load to be logged', async () => lines.some((l) => l['level'] === 50));
  const refused = lines.find((l) => l['level'] === 50)!;
  t.match(String(refused['errors']), `big.test.zone:${badLine}`, `the error names the zone file and line ${badLine}`);
  t.same(refused['pending'], ['big.test.'], 'and the zone left unloaded');
  t.same(await r.resolve4('www.small.test'), ['192.0.2.10'], 'the small zone still answers');
  t.equal(await code(r.resolve4('h7.big.test')), 'ESERVFAIL', 'the large zone answers SERVFAIL, not half a zone');
  t.equal(daemon.engine.ready().ready, false, 'not ready');

  writeFileSync(zone, good);
  t.same(await daemon.reload(), { ok: true }, 'a reload after the fix succeeds');
  t.same(await r.resolve4('h59999.big.test'), ['10.0.234.95'], 'and the large zone answers');
  t.equal(daemon.engine.ready().ready, true, 'ready');
});

t.test('without deferral (Infinity) the start loads everything first, as before', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-defer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'big.test.zone'), bigZone(20_000));
  writeFileSync(join(dir, 'vigil.yaml'), YAML);
  const daemon = await startDaemon(join(dir, 'vigil.yaml'), pino({ level: 'silent' }), { levelFixed: true, deferZonesOver: Infinity });
  t.teardown(() => daemon.close());
  t.same(await resolverFor(daemon).resolve4('h19999.big.test'), ['10.0.78.31'], 'the large zone answers from the first query');
  t.equal(daemon.engine.ready().ready, true);
});

t.test('runSliced stops at the next slice once its signal is aborted', async (t) => {
  let steps = 0;
  function* work(): Steps<string> {
    for (let i = 0; i < 1_000_000; i++) {
      steps++;
      // About 0.1 ms a step: a 5 ms slice is some fifty steps.
      const until = performance.now() + 0.1;
      while (performance.now() < until);
      yield;
    }
    return 'finished';
  }
  const ac = new AbortController();
  const run = runSliced(work(), 5, ac.signal);
  setTimeout(() => ac.abort(new Error('stop now')), 20);
  await t.rejects(run, { message: 'stop now' }, 'rejects with the reason');
  t.ok(steps < 2000, `stopped after ${steps} of a million steps`);
  const before = steps;
  await new Promise((r) => setTimeout(r, 50));
  t.equal(steps, before, 'and takes no step after');
  await t.rejects(runSliced(work(), 5, ac.signal), { message: 'stop now' }, 'an aborted signal does not start');
});

t.test('SIGTERM while a large zone loads: vigil serve stops without finishing the load', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-defer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // About 12 MB, several seconds to load: SIGTERM comes long before it is done.
  writeFileSync(join(dir, 'big.test.zone'), bigZone(400_000));
  writeFileSync(join(dir, 'vigil.yaml'), YAML);
  const cli = fileURLToPath(new URL('../dist/cli/vigil.js', import.meta.url));
  const child = spawn(process.execPath, [cli, 'serve', '--config', join(dir, 'vigil.yaml'), '--defer-zones-over', '1M', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await until('the deferred load to start', async () => out.includes('large zones load now'), 20_000);
  const sent = Date.now();
  child.kill('SIGTERM');
  const code = await exited;
  const tookMs = Date.now() - sent;
  t.equal(code, 0, 'exits 0');
  t.notMatch(out, /large zones loaded|config reloaded|reload refused/, 'neither loaded nor reported as a failed reload');
  // Loading the zone takes about 4 s on this machine (seconds more under load); stopping takes about 0.1 s.
  t.ok(tookMs < 3000, `exited ${tookMs} ms after SIGTERM, before the load could have finished`);
});
