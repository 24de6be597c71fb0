// Zone transfers (issue 7): AXFR of static zones over TCP to configured
// addresses, checked with real clients (dig, kdig), against Knot DNS reading
// the same zone files, and with Knot as a real secondary of Vigil. Refusals
// (address, zone, transport), IXFR, views, a zone of 20 000 records, the TCP
// limits, and the config rule that keeps health-driven zones untransferable.

import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import v8 from 'node:v8';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { loadConfig } from '../zones/load.js';
import { ConfigErrors } from '../zones/config.js';
import type { CompiledConfig } from '../zones/zone.js';
import { startServer, type VigilServer } from '../server/server.js';
import { findKnotd, freePort, startKnot } from './helpers/knot.js';
import { encodeQuery, normalise, query, type QuerySpec } from './helpers/dnsclient.js';
import { captureLog, type LogLine } from './helpers/log-capture.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLE_ZONE = path.resolve(here, '../zones/examples/example.test.zone');
const EXAMPLE_SERIAL = 2024060101;
const TIMEOUT_MS = 20_000;

const knotd = findKnotd();
// A missing reference fails the run: a skipped comparison proves nothing.
if (knotd === undefined) throw new Error('knotd not found: install the Debian package "knot" (.ci/run does)');
const kdig = spawnSync('kdig', ['-V'], { encoding: 'utf8' }).status === 0 ? 'kdig' : undefined;
if (kdig === undefined) throw new Error('kdig not found: install the Debian package "knot-dnsutils"');
if (spawnSync('dig', ['-v'], { encoding: 'utf8' }).status !== 0) throw new Error('dig not found: install the Debian package "bind9-dnsutils"');

// ---------------------------------------------------------------------------
// Fixtures

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-axfr-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/** big.test: 20 000 records besides the apex, far more than one 64 KiB message holds. */
function bigZone(): string {
  const lines = ['$ORIGIN big.test.', '$TTL 300', '@ SOA ns1 hostmaster 7 3600 600 86400 300', '@ NS ns1', 'ns1 A 192.0.2.1'];
  for (let i = 0; i < 19_000; i++) lines.push(`h${i} A 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  for (let i = 0; i < 500; i++) lines.push(`v6-${i} AAAA 2001:db8::${i.toString(16)}`);
  for (let i = 0; i < 500; i++) lines.push(`t${i}.text TXT "record ${i}" "of the big zone"`);
  return lines.join('\n') + '\n';
}
const BIG_RECORDS = 20_003; // with SOA, NS and glue: what Knot lists; a transfer sends the SOA twice

const PLAIN_ZONE = `$ORIGIN plain.test.
$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 300
@ NS ns1
ns1 A 192.0.2.1
`;

fs.copyFileSync(EXAMPLE_ZONE, path.join(dir, 'example.test.zone'));
fs.writeFileSync(path.join(dir, 'big.test.zone'), bigZone());
fs.writeFileSync(path.join(dir, 'plain.test.zone'), PLAIN_ZONE);

// max_buffered_bytes far below one transfer message: the cap must not cut a transfer short.
const MAIN_CONFIG = `listen: ["127.0.0.1:0"]
tcp: { max_buffered_bytes: 4096 }
zones:
  - origin: example.test.
    file: example.test.zone
    transfer: { allow: ["127.0.0.1/32"] }
  - origin: big.test.
    file: big.test.zone
    transfer: { allow: ["127.0.0.1", "::1"] }
  - origin: plain.test.
    file: plain.test.zone
`;

async function configFrom(name: string, yaml: string): Promise<CompiledConfig> {
  const file = path.join(dir, name);
  fs.writeFileSync(file, yaml);
  return (await loadConfig(file)).config;
}

/** A server on an ephemeral loopback port whose log lines are kept for inspection. */
async function serve(config: CompiledConfig): Promise<{ server: VigilServer; port: number; logs: LogLine[] }> {
  const { log, lines: logs } = captureLog();
  const server = await startServer(config, { logger: log });
  return { server, port: server.addresses.tcp[0]!.port, logs };
}

// ---------------------------------------------------------------------------
// Clients

function run(cmd: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    // Asynchronous on purpose: the server under test answers from this process's event loop.
    execFile(cmd, args, { encoding: 'utf8', timeout: TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** "owner ttl type rdata" with single spaces and no class: the form knotc zone-read prints. */
function canonLine(line: string): string {
  const tokens = line.trim().replace(/\s+/g, ' ').split(' ');
  if (tokens[2] === 'IN') tokens.splice(2, 1);
  return tokens.join(' ');
}

/** The records of a dig/kdig AXFR listing, in order. */
function listing(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith(';'))
    .map(canonLine);
}

function frame(q: Buffer): Buffer {
  const f = Buffer.alloc(2 + q.length);
  f.writeUInt16BE(q.length, 0);
  q.copy(f, 2);
  return f;
}

interface StreamOptions {
  localAddress?: string;
  /** Stop reading this long after connecting (a slow secondary), then read on. */
  stallMs?: number;
  /** Run while reading is stopped; the stall lasts until it has finished too. */
  duringStall?: () => Promise<void>;
  /** Called just before reading resumes. */
  onResume?: () => void;
}

interface StreamResult {
  messages: Buffer[];
  /** The server closed the connection before `done` said the exchange was over. */
  closedEarly: boolean;
}

/** Writes `frames` on one connection and collects the framed responses until `done` (or the server closes). */
function tcpExchange(port: number, frames: Buffer, done: (msg: Buffer, all: readonly Buffer[]) => boolean, opts: StreamOptions = {}): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port, ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}) });
    const messages: Buffer[] = [];
    let pending = Buffer.alloc(0);
    let settled = false;
    const timer = setTimeout(() => finish(new Error(`TCP exchange timed out after ${TIMEOUT_MS} ms with ${messages.length} messages`)), TIMEOUT_MS);
    function finish(err: Error | null, closedEarly = false): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve({ messages, closedEarly });
    }
    sock.on('error', (err) => finish(err));
    sock.on('close', () => finish(null, true));
    sock.on('connect', () => {
      sock.write(frames);
      if (opts.stallMs !== undefined) {
        sock.pause();
        const stall = new Promise((r) => setTimeout(r, opts.stallMs));
        void Promise.all([stall, opts.duringStall?.()]).then(
          () => {
            opts.onResume?.();
            sock.resume();
          },
          (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))),
        );
      }
    });
    sock.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const msg = Buffer.from(pending.subarray(2, 2 + pending.readUInt16BE(0)));
        pending = pending.subarray(2 + msg.length);
        messages.push(msg);
        if (done(msg, messages)) {
          finish(null);
          return;
        }
      }
    });
  });
}

const rcodeOf = (m: Buffer): number => m[3]! & 0x0f;
const idOf = (m: Buffer): number => m.readUInt16BE(0);

/** Done after `n` complete transfers (two SOAs each) or error answers. */
function afterTransfers(n: number): (msg: Buffer) => boolean {
  let soas = 0;
  let ended = 0;
  return (msg) => {
    if (rcodeOf(msg) !== 0) ended++;
    else {
      for (const a of dnsPacket.decode(msg).answers ?? []) if (a.type === 'SOA') soas++;
      while (soas >= 2) {
        soas -= 2;
        ended++;
      }
    }
    return ended >= n;
  };
}

async function axfr(port: number, spec: Partial<QuerySpec> & { qname: string }, opts: StreamOptions = {}): Promise<StreamResult & { query: Buffer }> {
  const q = encodeQuery({ qtype: 'AXFR', ...spec });
  const r = await tcpExchange(port, frame(q), afterTransfers(1), opts);
  return { ...r, query: q };
}

/** An IXFR query carrying the client's SOA (RFC 1995 3); without `serial`, no authority section (malformed). */
function ixfrQuery(zone: string, serial: number | undefined, id: number): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: 0,
    questions: [{ name: zone, type: 'IXFR', class: 'IN' }],
    authorities:
      serial === undefined
        ? []
        : [{ type: 'SOA', name: zone, ttl: 0, data: { mname: `ns1.${zone}`, rname: `hostmaster.${zone}`, serial, refresh: 1, retry: 1, expire: 1, minimum: 1 } }],
  });
}

/** Every answer record of a transfer, in the normalised form of test/helpers/dnsclient.ts (sorted within each message). */
function records(messages: readonly Buffer[]): string[] {
  return messages.flatMap((m) => normalise(m).answer);
}

/** The types of the answer records in the order sent. */
function answerTypes(messages: readonly Buffer[]): string[] {
  return messages.flatMap((m) => (dnsPacket.decode(m).answers ?? []).map((a) => a.type));
}

/** Uncompressed size of a record as the transfer carries it: owner, type/class/ttl/rdlength, rdata. */
function uncompressedSize(a: dnsPacket.Answer): number {
  const name = String(a.name);
  const owner = name === '' || name === '.' ? 1 : Buffer.byteLength(name) + 2;
  const rdata = dnsPacket.encode({ type: 'response', answers: [a] }).length - 12 - owner - 10;
  return owner + 10 + rdata;
}

function sendUdpRaw(port: number, bytes: Buffer): Promise<Buffer> {
  return query(port, bytes, { transport: 'udp' }).then((r) => r.raw);
}

// A full collection before reading the figure, so garbage (messages already
// handed to the kernel) does not count as held. --expose-gc, set at run time.
// V8 releases the memory of dead ArrayBuffers on a background thread after
// the collection, so the figure is read after a pause and a second one: read
// at once, on a busy machine it still counted ~8 MB of sent messages.
v8.setFlagsFromString('--expose-gc');
const collect = vm.runInNewContext('gc') as () => void;
async function buffersInUse(): Promise<number> {
  collect();
  await new Promise((r) => setTimeout(r, 50));
  collect();
  return process.memoryUsage().arrayBuffers;
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------------------

const mainConfig = configFrom('vigil.yaml', MAIN_CONFIG);

/**
 * fat.test: few records but many octets, more than loopback socket buffers
 * take from a client that does not read (about 4 MB here with Linux defaults;
 * sized from the kernel's own limits so a roomier machine still fills up).
 */
function socketBufferBytes(): number {
  const read = (f: string, i: number): number => {
    try {
      return Number(fs.readFileSync(f, 'utf8').trim().split(/\s+/)[i]) || 0;
    } catch {
      return 0;
    }
  };
  return read('/proc/sys/net/ipv4/tcp_wmem', 2) + read('/proc/sys/net/ipv4/tcp_rmem', 1);
}
const FAT_BYTES = Math.min(64 << 20, Math.max(16 << 20, 2 * socketBufferBytes()));
const FAT_TXT = Array.from({ length: 16 }, (_, i) => `"${String.fromCharCode(97 + i).repeat(250)}"`).join(' ');
const FAT_RECORDS = 3 + Math.ceil(FAT_BYTES / 4000);
let fat: Promise<CompiledConfig> | undefined;
function fatConfig(): Promise<CompiledConfig> {
  fat ??= (() => {
    const lines = ['$ORIGIN fat.test.', '$TTL 300', '@ SOA ns1 hostmaster 3 3600 600 86400 300', '@ NS ns1', 'ns1 A 192.0.2.1'];
    for (let i = 0; i < FAT_RECORDS - 3; i++) lines.push(`f${i} TXT ${FAT_TXT}`);
    fs.writeFileSync(path.join(dir, 'fat.test.zone'), lines.join('\n') + '\n');
    return configFrom('fat.yaml', `${MAIN_CONFIG}  - origin: fat.test.\n    file: fat.test.zone\n    transfer: { allow: ["127.0.0.1"] }\n`);
  })();
  return fat;
}

t.test('AXFR with dig and kdig: the records Knot reads from the same files', async (t) => {
  const [config, knot] = await Promise.all([
    mainConfig,
    startKnot([
      { origin: 'example.test.', file: path.join(dir, 'example.test.zone') },
      { origin: 'big.test.', file: path.join(dir, 'big.test.zone') },
    ]),
  ]);
  t.teardown(() => knot.stop());
  const { server, port, logs } = await serve(config);
  t.teardown(() => server.close());

  for (const [origin, expectedCount] of [
    ['example.test.', 36],
    ['big.test.', BIG_RECORDS],
  ] as const) {
    const reference = knot.zoneRecords(origin).map(canonLine).sort();
    t.equal(reference.length, expectedCount, `Knot lists ${expectedCount} records in ${origin}`);
    for (const [client, args] of [
      ['dig', ['@127.0.0.1', '-p', String(port), origin, 'AXFR', '+noall', '+answer']],
      [kdig, ['@127.0.0.1', '-p', String(port), origin, 'AXFR', '+noall', '+answer']],
    ] as const) {
      const got = listing(await run(client, args));
      t.ok(got[0]?.includes(' SOA ') && got[got.length - 1] === got[0], `${client} ${origin}: the SOA first and last`);
      t.same(got.slice(0, -1).sort(), reference, `${client} ${origin}: every record, each once, as Knot reads the file`);
    }
  }
  const sent = logs.filter((l) => l.msg === 'zone transfer sent');
  t.equal(sent.length, 4, 'each transfer is logged once');
  t.match(
    sent.find((l) => l['zone'] === 'big.test.'),
    { level: 30, client: '127.0.0.1', qtype: 'AXFR', serial: 7, records: BIG_RECORDS + 1, messages: Number, bytes: Number, ms: Number },
    'at info, with client, zone, serial, records, messages, bytes and time',
  );
});

t.test('a zone of 20 000 records: many messages, each well-formed, the whole zone once', async (t) => {
  const { server, port } = await serve(await mainConfig);
  t.teardown(() => server.close());
  const r = await axfr(port, { qname: 'big.test', id: 0x5a5a, edns: { udpPayload: 1232 } });
  t.notOk(r.closedEarly, 'the connection stays open to the end');
  const msgs = r.messages;
  t.ok(msgs.length > 4, `several messages (${msgs.length})`);
  let total = 0;
  let uncompressed = 0;
  msgs.forEach((m, i) => {
    const p = dnsPacket.decode(m);
    const n = normalise(m);
    const where = `message ${i + 1}/${msgs.length}`;
    if (idOf(m) !== 0x5a5a) t.fail(`${where}: ID ${idOf(m)} is not the query's`);
    if (!n.flags.qr || !n.flags.aa || n.flags.tc || n.rcode !== 0) t.fail(`${where}: flags ${JSON.stringify(n.flags)}, rcode ${n.rcode}`);
    if ((p.questions?.length ?? 0) !== (i === 0 ? 1 : 0)) t.fail(`${where}: ${p.questions?.length} questions`);
    if ((p.authorities?.length ?? 0) !== 0) t.fail(`${where}: records in the authority section`);
    if (n.opt === null || n.opt.udpPayload !== 1232) t.fail(`${where}: no OPT record although the query had one`);
    if (m.length > 16384) t.fail(`${where}: ${m.length} octets, above the 16 KiB target`);
    total += p.answers?.length ?? 0;
    for (const a of p.answers ?? []) uncompressed += uncompressedSize(a);
  });
  t.pass('every message: the query ID, QR and AA set, TC clear, NOERROR, OPT, at most 16 KiB, question in the first only');
  t.equal(total, BIG_RECORDS + 1, 'every record once, the SOA twice');
  const all = records(msgs);
  const types = answerTypes(msgs);
  t.same([types[0], types[types.length - 1]], ['SOA', 'SOA'], 'the SOA first and last');
  t.same(
    all.filter((x) => x.includes(' IN SOA ')),
    ['big.test. 300 IN SOA ns1.big.test. hostmaster.big.test. 7 3600 600 86400 300', 'big.test. 300 IN SOA ns1.big.test. hostmaster.big.test. 7 3600 600 86400 300'],
    'the same SOA, and nowhere else',
  );
  t.equal(new Set(all).size, BIG_RECORDS, 'no record twice');
  t.ok(all.includes('h18999.big.test. 300 IN A 10.0.74.55'), 'the last A record is there');
  t.ok(all.includes('t499.text.big.test. 300 IN TXT "record 499" "of the big zone"'), 'and the last TXT');
  const bytes = msgs.reduce((s, m) => s + m.length, 0);
  t.ok(bytes < uncompressed * 0.8, `names are compressed (${bytes} octets on the wire, ${uncompressed} uncompressed)`);
});

t.test('refused: an address not allowed, a zone without transfer, over UDP; NOTAUTH for what is not a zone', async (t) => {
  const { server, port, logs } = await serve(await mainConfig);
  t.teardown(() => server.close());

  const dig = await run('dig', ['@127.0.0.1', '-p', String(port), '-b', '127.0.0.9', 'example.test', 'AXFR']);
  t.match(dig, /Transfer failed/, 'dig from 127.0.0.9 (allow is 127.0.0.1/32): the transfer fails');
  const fromOther = await axfr(port, { qname: 'example.test', id: 7 }, { localAddress: '127.0.0.9' });
  t.equal(fromOther.messages.length, 1, 'one message');
  const refused = normalise(fromOther.messages[0]!);
  t.equal(refused.rcode, 5, 'REFUSED');
  t.same([refused.answer, refused.flags.aa, refused.question], [[], false, ['example.test. IN AXFR']], 'no records, AA clear, the question echoed');

  const allowedByPrefix = await axfr(port, { qname: 'big.test' }, { localAddress: '127.0.0.9' });
  t.equal(rcodeOf(allowedByPrefix.messages[0]!), 5, 'big.test allows 127.0.0.1 only (a bare address is a /32)');

  const plain = await axfr(port, { qname: 'plain.test' });
  t.equal(rcodeOf(plain.messages[0]!), 5, 'a zone without transfer: REFUSED, even from 127.0.0.1');
  for (const qname of ['www.example.test', 'nope.test']) {
    const r = await axfr(port, { qname });
    t.equal(rcodeOf(r.messages[0]!), 9, `${qname}: not a zone apex we serve, NOTAUTH (RFC 5936 2.2.1)`);
  }

  const udp = normalise((await query(port, { qname: 'example.test', qtype: 'AXFR' }, { transport: 'udp' })).raw);
  t.same([udp.rcode, udp.answer], [4, []], 'AXFR over UDP: NOTIMP, as Knot answers (RFC 5936 4.2 defines none)');
  const udpIxfr = normalise(await sendUdpRaw(port, ixfrQuery('example.test', 1, 99)));
  t.same([udpIxfr.rcode, udpIxfr.answer], [5, []], 'IXFR over UDP: REFUSED');

  const warns = logs.filter((l) => l.msg === 'zone transfer refused');
  t.match(warns[0], { level: 40, client: '127.0.0.9', zone: 'example.test.', reason: /transfer\.allow/ }, 'refusals are logged at warn with the reason');
  t.ok(
    warns.some((l) => l['zone'] === 'plain.test.' && /no transfer\.allow/.test(String(l['reason']))),
    'including a zone that has no transfer.allow',
  );
  t.equal(logs.filter((l) => l.msg === 'zone transfer sent').length, 0, 'and nothing was sent');
});

t.test('refusal warnings: at most one per second per client', async (t) => {
  const { server, port, logs } = await serve(await mainConfig);
  t.teardown(() => server.close());
  // Ten refusals in one write are answered in one pass, well within a second.
  const q = Buffer.concat(Array.from({ length: 10 }, (_, i) => frame(encodeQuery({ qname: 'plain.test', qtype: 'AXFR', id: i + 1 }))));
  const r = await tcpExchange(port, q, (_m, all) => all.length >= 10);
  t.same(
    r.messages.map(rcodeOf),
    Array.from({ length: 10 }, () => 5),
    'every one is answered REFUSED',
  );
  t.equal(logs.filter((l) => l.msg === 'zone transfer refused').length, 1, 'and logged once');
});

t.test('IXFR over TCP: the whole zone AXFR-style, or the SOA alone when the client is current (as Knot without a journal)', async (t) => {
  const { server, port } = await serve(await mainConfig);
  t.teardown(() => server.close());
  const full = await axfr(port, { qname: 'example.test' });
  const fullRecords = records(full.messages);

  const older = await tcpExchange(port, frame(ixfrQuery('example.test', EXAMPLE_SERIAL - 1, 11)), afterTransfers(1));
  t.same(records(older.messages).sort(), fullRecords.sort(), 'an older serial: every record of the AXFR (RFC 1995 4)');
  const types = answerTypes(older.messages);
  t.same([types[0], types[types.length - 1], types.filter((x) => x === 'SOA').length], ['SOA', 'SOA', 2], 'SOA first and last, AXFR-style');
  t.same(normalise(older.messages[0]!).question, ['example.test. IN IXFR'], 'the IXFR question echoed');

  for (const [label, serial] of [
    ['the same serial', EXAMPLE_SERIAL],
    ['a newer serial', EXAMPLE_SERIAL + 5],
  ] as const) {
    const r = await tcpExchange(port, frame(ixfrQuery('example.test', serial, 12)), () => true);
    const n = normalise(r.messages[0]!);
    t.same([n.rcode, n.flags.aa, n.answer.length], [0, true, 1], `${label}: one record`);
    t.match(n.answer[0], / IN SOA .* 2024060101 /, `${label}: our SOA, telling the client it is up to date`);
  }
  // Serial arithmetic (RFC 1982): 2^31 - 1 ahead is newer, wrapping past 2^32 included.
  const wrapped = await tcpExchange(port, frame(ixfrQuery('example.test', (EXAMPLE_SERIAL + 0x7fffffff) >>> 0, 13)), () => true);
  t.equal(normalise(wrapped.messages[0]!).answer.length, 1, 'a serial 2^31-1 ahead (wrapping) counts as newer');

  const noSoa = await tcpExchange(port, frame(ixfrQuery('example.test', undefined, 14)), () => true);
  t.equal(rcodeOf(noSoa.messages[0]!), 1, 'IXFR without the client\'s SOA: FORMERR, as Knot answers');
});

t.test('one connection: transfers one at a time, pipelined queries answered after, the transfer counts as one query', async (t) => {
  const config = await mainConfig;
  const { server, port } = await serve(config);
  t.teardown(() => server.close());

  const two = Buffer.concat([
    frame(encodeQuery({ qname: 'big.test', qtype: 'AXFR', id: 1 })),
    frame(encodeQuery({ qname: 'example.test', qtype: 'AXFR', id: 2 })),
    frame(encodeQuery({ qname: 'www.example.test', qtype: 'A', id: 3 })),
  ]);
  const r = await tcpExchange(port, two, (m) => idOf(m) === 3);
  const ids = r.messages.map(idOf);
  const firstOf2 = ids.indexOf(2);
  t.ok(firstOf2 > 1 && ids.slice(0, firstOf2).every((id) => id === 1), 'the second transfer starts only after the first');
  t.ok(ids.slice(firstOf2, -1).every((id) => id === 2), 'and ends before the next answer');
  t.equal(ids[ids.length - 1], 3, 'the A query is answered last, in order');
  t.same(normalise(r.messages[r.messages.length - 1]!).answer, ['www.example.test. 300 IN A 192.0.2.10'], 'and correctly');
  t.equal(answerTypes(r.messages.filter((m) => idOf(m) === 1)).at(-1), 'SOA', 'the big transfer ended with its SOA');

  // With two queries per connection: the transfer and one more, then the server closes.
  const limited = await startServer({ ...config, server: { ...config.server, tcp: { ...config.server.tcp, maxQueriesPerConnection: 2 } } });
  t.teardown(() => limited.close());
  const three = Buffer.concat([
    frame(encodeQuery({ qname: 'big.test', qtype: 'AXFR', id: 1 })),
    frame(encodeQuery({ qname: 'www.example.test', qtype: 'A', id: 2 })),
    frame(encodeQuery({ qname: 'www.example.test', qtype: 'AAAA', id: 3 })),
  ]);
  const lim = await tcpExchange(limited.addresses.tcp[0]!.port, three, (m) => idOf(m) === 3);
  t.ok(lim.closedEarly, 'the connection is closed after the second query');
  t.same(
    [...new Set(lim.messages.map(idOf))],
    [1, 2],
    'the whole transfer and the next answer were sent: a transfer is one query',
  );
});

t.test('backpressure: a secondary that stops reading holds the transfer, not the server', async (t) => {
  const { server, port, logs } = await serve(await fatConfig());
  t.teardown(() => server.close());
  const transferEnded = (): boolean => logs.some((l) => l.msg === 'zone transfer sent' || l.msg === 'zone transfer aborted');
  let endedDuringStall: boolean | undefined;
  let answeredDuringStall: string[] = [];
  let heldDuringStall = 0;
  const before = await buffersInUse();
  const r = await axfr(
    port,
    { qname: 'fat.test' },
    {
      stallMs: 2000,
      async duringStall() {
        // The event loop is free while the transfer waits for the socket to drain.
        answeredDuringStall = normalise((await query(port, { qname: 'www.example.test', qtype: 'A' }, { timeoutMs: TIMEOUT_MS })).raw).answer;
        // Read late in the stall, as reading resumes, while it is still stopped
        // (the stall lasts until this has finished too).
        await new Promise((r) => setTimeout(r, 1500));
        heldDuringStall = (await buffersInUse()) - before;
      },
      onResume() {
        endedDuringStall = transferEnded();
      },
    },
  );
  t.equal(endedDuringStall, false, `the transfer (${FAT_BYTES} octets, more than the socket buffers hold) waits while the client does not read`);
  t.same(answeredDuringStall, ['www.example.test. 300 IN A 192.0.2.10'], 'other queries are answered meanwhile');
  // Messages are encoded as the socket drains: what waits in memory is what the kernel took, not the zone.
  t.ok(heldDuringStall < FAT_BYTES / 4, `meanwhile the process holds ${heldDuringStall} octets more in buffers, far less than the zone`);
  t.notOk(r.closedEarly, 'the connection is not cut off by max_buffered_bytes (4096)');
  t.equal(records(r.messages).length, FAT_RECORDS + 1, 'every record arrives once the client reads again');
  await waitFor(transferEnded, 'the transfer to end');
  t.match(logs.find((l) => l.msg.startsWith('zone transfer')), { msg: 'zone transfer sent', zone: 'fat.test.', records: FAT_RECORDS + 1 }, 'logged as sent');
});

t.test('a client that goes away mid-transfer: logged as aborted, the server carries on', async (t) => {
  const { server, port, logs } = await serve(await fatConfig());
  t.teardown(() => server.close());
  const r = await tcpExchange(port, frame(encodeQuery({ qname: 'fat.test', qtype: 'AXFR' })), (_m, all) => all.length >= 3);
  t.equal(r.messages.length, 3, 'the client reads three messages and hangs up');
  await waitFor(() => logs.some((l) => l.msg === 'zone transfer aborted' || l.msg === 'zone transfer sent'), 'the transfer to end');
  const aborted = logs.find((l) => l.msg === 'zone transfer aborted');
  t.match(aborted, { level: 40, client: '127.0.0.1', zone: 'fat.test.', records: Number }, 'logged at warn as aborted');
  t.ok(Number(aborted?.['records']) < FAT_RECORDS, `after part of the zone (${String(aborted?.['records'])} records)`);
  const after = await axfr(port, { qname: 'example.test' });
  t.equal(records(after.messages).length, 37, 'the next transfer is complete');
});

t.test('a record larger than a message: alone in a larger one; one no message can hold fails the transfer', async (t) => {
  const txt = (strings: number): string => Array.from({ length: strings }, (_, i) => `"${String.fromCharCode(97 + (i % 26)).repeat(250)}"`).join(' ');
  fs.writeFileSync(
    path.join(dir, 'huge.test.zone'),
    `$ORIGIN huge.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\nbig TXT ${txt(120)}\nafter A 192.0.2.2\n`,
  );
  fs.writeFileSync(
    path.join(dir, 'toobig.test.zone'),
    `$ORIGIN toobig.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\nbig TXT ${txt(261)}\n`,
  );
  const config = await configFrom(
    'huge.yaml',
    `listen: ["127.0.0.1:0"]
zones:
  - origin: huge.test.
    file: huge.test.zone
    transfer: { allow: ["127.0.0.1"] }
  - origin: toobig.test.
    file: toobig.test.zone
    transfer: { allow: ["127.0.0.1"] }
`,
  );
  const { server, port, logs } = await serve(config);
  t.teardown(() => server.close());

  const huge = await axfr(port, { qname: 'huge.test' });
  const sizes = huge.messages.map((m) => m.length);
  const bigOne = huge.messages.findIndex((m) => (dnsPacket.decode(m).answers ?? []).some((a) => a.type === 'TXT'));
  t.ok(sizes[bigOne]! > 16384 && sizes[bigOne]! <= 65535, `the 30 000-octet TXT travels in a message of ${sizes[bigOne]} octets`);
  t.equal(dnsPacket.decode(huge.messages[bigOne]!).answers?.length, 1, 'alone');
  t.same(answerTypes(huge.messages), ['SOA', 'NS', 'A', 'TXT', 'A', 'SOA'], 'and the transfer goes on around it');

  const tooBig = await axfr(port, { qname: 'toobig.test' });
  t.ok(tooBig.closedEarly, 'a 65 000-octet TXT fits in no message: the connection is closed');
  t.notOk(answerTypes(tooBig.messages).filter((x) => x === 'SOA').length === 2, 'rather than sending a transfer without it');
  await waitFor(() => logs.some((l) => l.msg === 'zone transfer failed; connection closed'), 'the failure to be logged');
  t.match(
    logs.find((l) => l.msg === 'zone transfer failed; connection closed'),
    { level: 50, zone: 'toobig.test.', err: { type: 'XfrEncodeError', message: /big\.toobig\.test\. TXT .* does not fit in one DNS message/ } },
    'logged at error with the record that does not fit',
  );
});

t.test('views: a client transfers the zone its view serves, under that zone\'s allow list', async (t) => {
  const zone = (origin: string, serial: number, addr: string): string =>
    `$ORIGIN ${origin}\n$TTL 300\n@ SOA ns1 hostmaster ${serial} 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\nwww A ${addr}\n`;
  fs.writeFileSync(path.join(dir, 'view-outside.zone'), zone('view.test.', 1, '192.0.2.80'));
  fs.writeFileSync(path.join(dir, 'view-inside.zone'), zone('view.test.', 2, '10.0.0.80'));
  fs.writeFileSync(path.join(dir, 'inner.zone'), zone('inner.test.', 3, '10.0.0.3'));
  const config = await configFrom(
    'views.yaml',
    `listen: ["127.0.0.1:0"]
views:
  - name: inside
    match: ["127.0.0.2", "127.0.0.4"]
  - name: outside
zones:
  - origin: view.test.
    file: view-outside.zone
    transfer: { allow: ["127.0.0.0/8"] }
  - origin: view.test.
    views: [inside]
    file: view-inside.zone
    transfer: { allow: ["127.0.0.2"] }
  - origin: inner.test.
    views: [inside]
    file: inner.zone
    transfer: { allow: ["127.0.0.0/8"] }
`,
  );
  const { server, port } = await serve(config);
  t.teardown(() => server.close());
  const www = async (from: string, qname: string): Promise<string | number> => {
    const r = await axfr(port, { qname }, { localAddress: from });
    const rc = rcodeOf(r.messages[0]!);
    return rc !== 0 ? rc : (records(r.messages).find((x) => x.startsWith('www.')) ?? 'no www');
  };
  t.equal(await www('127.0.0.1', 'view.test'), 'www.view.test. 300 IN A 192.0.2.80', 'outside: the shared zone');
  t.equal(await www('127.0.0.3', 'view.test'), 'www.view.test. 300 IN A 192.0.2.80', 'another outside client too');
  t.equal(await www('127.0.0.2', 'view.test'), 'www.view.test. 300 IN A 10.0.0.80', 'inside: the inside zone, as its queries see');
  t.equal(await www('127.0.0.4', 'view.test'), 5, 'inside but not in the inside zone\'s allow: REFUSED, though the shared zone would allow it');
  t.equal(await www('127.0.0.2', 'inner.test'), 'www.inner.test. 300 IN A 10.0.0.3', 'a zone only the inside view serves');
  t.equal(await www('127.0.0.1', 'inner.test'), 9, 'is not a zone of the outside view: NOTAUTH');
});

t.test('config: transfer on a zone with health-driven services is refused, at the line of `transfer`', async (t) => {
  fs.writeFileSync(path.join(dir, 'svc.zone'), `$ORIGIN svc.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\n`);
  const yaml = `listen: ["127.0.0.1:0"]
zones:
  - origin: svc.test.
    file: svc.zone
    transfer: { allow: ["192.0.2.53"] }
services:
  - name: www.svc.test.
    members:
      - { name: a, addresses: ["192.0.2.10"] }
  - name: api.svc.test.
    members:
      - { name: a, addresses: ["192.0.2.20"] }
`;
  fs.writeFileSync(path.join(dir, 'svc.yaml'), yaml);
  const err = await loadConfig(path.join(dir, 'svc.yaml')).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof ConfigErrors, 'the config is rejected');
  const errors = err instanceof ConfigErrors ? err.errors : [];
  t.equal(errors.length, 1, 'with one error');
  t.match(errors[0], {
    file: path.join(dir, 'svc.yaml'),
    line: 5,
    path: 'zones[0].transfer',
    detail:
      'zone svc.test. has health-driven services (www.svc.test., api.svc.test.); its answers depend on health and cannot be transferred as static data',
  });
  t.match(errors[0]?.message, /svc\.yaml:5:\d+: zones\[0\]\.transfer: zone svc\.test\. has health-driven services/, 'as file:line: message');

  // A service in another view's copy of the zone does not make the shared one untransferable.
  fs.writeFileSync(path.join(dir, 'svc-inside.zone'), fs.readFileSync(path.join(dir, 'svc.zone')));
  const split = `listen: ["127.0.0.1:0"]
views:
  - name: inside
    match: ["10.0.0.0/8"]
  - name: outside
zones:
  - origin: svc.test.
    file: svc.zone
    transfer: { allow: ["192.0.2.53"] }
  - origin: svc.test.
    views: [inside]
    file: svc-inside.zone
services:
  - name: www.svc.test.
    views: [inside]
    members:
      - { name: a, addresses: ["10.0.0.10"] }
`;
  fs.writeFileSync(path.join(dir, 'svc-split.yaml'), split);
  const ok = await loadConfig(path.join(dir, 'svc-split.yaml'));
  t.ok(ok.config.zones.get('\x03svc\x04test\x00')?.transfer, 'a service only in the inside copy: the outside zone keeps its transfer');
  const moved = split.replace('    views: [inside]\n    members', '    members');
  fs.writeFileSync(path.join(dir, 'svc-split2.yaml'), moved);
  const rejected = await loadConfig(path.join(dir, 'svc-split2.yaml')).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(rejected instanceof ConfigErrors ? rejected.errors.map((e) => `${e.line}: ${e.detail}`) : rejected, [/^9: zone svc\.test\. has health-driven services \(www\.svc\.test\.\)/], 'in every view: refused');
});

t.test('config: bad prefixes, an empty allow list and unknown keys are errors at their line', async (t) => {
  const errorsOf = async (name: string, yaml: string): Promise<string[]> => {
    fs.writeFileSync(path.join(dir, name), yaml);
    const err = await loadConfig(path.join(dir, name)).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof ConfigErrors, `${name} is rejected`);
    return err instanceof ConfigErrors ? err.errors.map((e) => `${e.line}: ${e.path}: ${e.detail}`) : [];
  };
  const prefixes = await errorsOf(
    'bad-prefix.yaml',
    `listen: ["127.0.0.1:0"]
zones:
  - origin: plain.test.
    file: plain.test.zone
    transfer:
      allow:
        - 192.0.2.1/24
        - not-an-address
        - ::ffff:10.0.0.0/104
`,
  );
  t.match(prefixes, [
    /^7: zones\[0\]\.transfer\.allow\[0\]: 192\.0\.2\.1\/24 has host bits set/,
    /^8: zones\[0\]\.transfer\.allow\[1\]: "not-an-address" is not a CIDR prefix/,
    /^9: zones\[0\]\.transfer\.allow\[2\]: .*IPv4-mapped prefix/,
  ]);
  t.equal(prefixes.length, 3, 'each bad prefix, and nothing else');
  const shape = await errorsOf(
    'bad-shape.yaml',
    `listen: ["127.0.0.1:0"]
zones:
  - origin: example.test.
    file: example.test.zone
    transfer: { allow: [] }
  - origin: big.test.
    file: big.test.zone
    transfer: { allow: ["::1"], deny: ["::2"] }
  - origin: plain.test.
    file: plain.test.zone
    transfer: {}
`,
  );
  t.match(shape, [
    /^5: zones\[0\]\.transfer\.allow: needs at least one prefix/,
    /^8: zones\[1\]\.transfer\.deny: unknown key "deny"/,
    /^11: zones\[2\]\.transfer: missing required key "allow"/,
  ]);
  t.equal(shape.length, 3, 'each problem, and nothing else');
});

// ---------------------------------------------------------------------------
// Knot DNS as a secondary of Vigil: the interoperability proof.

interface Secondary {
  port: number;
  log(): string;
  knotc(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

async function startSecondary(primaryPort: number, zones: readonly string[]): Promise<Secondary> {
  const sdir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-axfr-knot-'));
  const port = await freePort();
  const conf = path.join(sdir, 'knot.conf');
  fs.writeFileSync(
    conf,
    `server:
    rundir: "${sdir}"
    pidfile: "${sdir}/knot.pid"
    listen: 127.0.0.1@${port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "${sdir}/knot.sock"
database:
    storage: "${sdir}"
log:
  - target: stderr
    any: info
remote:
  - id: vigil
    address: 127.0.0.1@${primaryPort}
template:
  - id: default
    storage: "${sdir}"
    # Keep the transferred zone in memory only; nothing is written back.
    zonefile-load: none
    zonefile-sync: -1
    journal-content: none
    semantic-checks: off
zone:
${zones.map((z) => `  - domain: ${z}\n    master: vigil`).join('\n')}
`,
  );
  const child: ChildProcess = spawn(knotd!, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const onExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', onExit);
  const knotcBin = path.join(path.dirname(knotd!), 'knotc');
  return {
    port,
    log: () => log,
    knotc: (...args) => run(fs.existsSync(knotcBin) ? knotcBin : 'knotc', ['-s', path.join(sdir, 'knot.sock'), ...args]),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      process.removeListener('exit', onExit);
      fs.rmSync(sdir, { recursive: true, force: true });
    },
  };
}

async function soaSerialAt(port: number, zone: string): Promise<number | undefined> {
  try {
    const r = normalise((await query(port, { qname: zone, qtype: 'SOA' }, { timeoutMs: 1000 })).raw);
    if (r.rcode !== 0 || r.answer.length !== 1) return undefined;
    return Number(r.answer[0]!.split(' ')[6]);
  } catch {
    return undefined;
  }
}

t.test('Knot DNS as a secondary: bootstraps by AXFR, answers like Vigil, follows a new serial by IXFR', async (t) => {
  const config = await mainConfig;
  const { server, port, logs } = await serve(config);
  t.teardown(() => server.close());
  const knot = await startSecondary(port, ['example.test.', 'big.test.']);
  t.teardown(() => knot.stop());

  const deadline = Date.now() + TIMEOUT_MS;
  let serials: (number | undefined)[] = [];
  while (Date.now() < deadline) {
    serials = await Promise.all([soaSerialAt(knot.port, 'example.test.'), soaSerialAt(knot.port, 'big.test.')]);
    if (serials[0] === EXAMPLE_SERIAL && serials[1] === 7) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!t.same(serials, [EXAMPLE_SERIAL, 7], "Knot serves both zones at Vigil's serials")) t.comment(knot.log());
  t.match(knot.log(), /\[big\.test\.\] AXFR, incoming, remote 127\.0\.0\.1@\d+, finished/, 'Knot logs a finished AXFR of big.test');

  const questions: QuerySpec[] = [
    { qname: 'example.test', qtype: 'SOA' },
    { qname: 'example.test', qtype: 'NS' },
    { qname: 'example.test', qtype: 'MX' },
    { qname: 'example.test', qtype: 'TXT' },
    { qname: 'www.example.test', qtype: 'A' },
    { qname: 'api.example.test', qtype: 'A' },
    { qname: '_sip._tcp.example.test', qtype: 'SRV' },
    { qname: 'dkim._domainkey.example.test', qtype: 'TXT' },
    { qname: 'unknown.example.test', qtype: 'TYPE65534' },
    { qname: 'h12345.big.test', qtype: 'A' },
    { qname: 't42.text.big.test', qtype: 'TXT' },
    { qname: 'v6-100.big.test', qtype: 'AAAA' },
  ];
  for (const q of questions) {
    const [k, v] = await Promise.all([query(knot.port, q), query(port, q)]);
    const kn = normalise(k.raw);
    const vn = normalise(v.raw);
    t.same([kn.rcode, kn.answer], [vn.rcode, vn.answer], `${q.qname} ${String(q.qtype)}: the same answer from Knot and Vigil`);
    if (vn.answer.length === 0) t.fail(`${q.qname} ${String(q.qtype)}: an empty answer proves nothing`);
  }

  // A new serial on the primary: Knot asks by IXFR, gets the zone AXFR-style, and serves the change.
  const updated = fs.readFileSync(EXAMPLE_ZONE, 'utf8').replace(`${EXAMPLE_SERIAL} ; serial`, `${EXAMPLE_SERIAL + 1} ; serial`).replace(/^(www\s+300 IN\s+A\s+)192\.0\.2\.10$/m, '$1192.0.2.11');
  t.not(updated, fs.readFileSync(EXAMPLE_ZONE, 'utf8'), 'the zone file is changed');
  fs.writeFileSync(path.join(dir, 'example.test.zone'), updated);
  t.teardown(() => fs.copyFileSync(EXAMPLE_ZONE, path.join(dir, 'example.test.zone')));
  server.swap(await configFrom('vigil-updated.yaml', MAIN_CONFIG));
  await knot.knotc('zone-refresh', 'example.test.');
  let www: string[] = [];
  const deadline2 = Date.now() + TIMEOUT_MS;
  while (Date.now() < deadline2) {
    if ((await soaSerialAt(knot.port, 'example.test.')) === EXAMPLE_SERIAL + 1) {
      www = normalise((await query(knot.port, { qname: 'www.example.test', qtype: 'A' })).raw).answer;
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!t.same(www, ['www.example.test. 300 IN A 192.0.2.11'], 'Knot serves the new data after the refresh')) t.comment(knot.log());
  t.match(knot.log(), /\[example\.test\.\] IXFR, incoming, remote 127\.0\.0\.1@\d+, receiving AXFR-style IXFR/, 'by an AXFR-style IXFR');
  t.ok(
    logs.some((l) => l.msg === 'zone transfer sent' && l['qtype'] === 'IXFR' && l['serial'] === EXAMPLE_SERIAL + 1),
    'which Vigil logs as an IXFR of the new serial',
  );
});
