// Response Rate Limiting and DNS Cookies in the running server: a real
// server started from a YAML config, clients on their own loopback addresses
// (127.0.0.2, .3, ...) so each is a distinct client network, floods bounded
// to a few hundred datagrams, dig as an independent client, the config
// errors an operator sees, and the counters the daemon exports.

import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { loadConfig } from '../zones/load.js';
import { ConfigErrors } from '../zones/config.js';
import { buildSnapshot } from '../server/answer/snapshot.js';
import { startDaemon } from '../server/daemon.js';
import { COOKIE_OPTION, validServerCookie, type CookieSecret } from '../server/wire/cookie.js';
import type { VigilServer } from '../server/server.js';
import type { CompiledConfig } from '../zones/zone.js';
import { encodeQuery, normalise, type QuerySpec } from './helpers/dnsclient.js';
import { SMALL_ZONE, startVigilFromConfig, type RunningVigil } from './helpers/vigil.js';

const run = promisify(execFile);

const RATE = 5;
/** Generous: queries from the test reach a server on a loaded machine. */
const TIMEOUT_MS = 5000;

/** ipv4_prefix_length 32: every loopback address is its own client network. */
const RRL_YAML = `rate_limit:
  responses_per_second: ${RATE}
  slip: 2
  window: 10s
  ipv4_prefix_length: 32
  exempt_clients: ["127.0.0.4"]
`;

function writeConfig(t: Test, extra: string, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-rrl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'example.test.zone'), SMALL_ZONE);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const file = join(dir, 'vigil.yaml');
  writeFileSync(file, `listen: ["127.0.0.1:0"]\nzones:\n  - origin: example.test.\n    file: example.test.zone\n${extra}`);
  return file;
}

async function serve(t: Test, extra: string, files: Record<string, string> = {}): Promise<RunningVigil> {
  const vigil = await startVigilFromConfig(writeConfig(t, extra, files));
  t.teardown(() => vigil.close());
  return vigil;
}

/** Polls `cond` every 20 ms; fails the test after `limitMs`. */
async function until(t: Test, what: string, cond: () => boolean, limitMs = TIMEOUT_MS): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > limitMs) {
      t.fail(`timed out waiting for ${what}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---------------------------------------------------------------------------
// Clients

interface Reply {
  readonly raw: Buffer;
  readonly tc: boolean;
  readonly answers: number;
  readonly rcode: number;
  /** Data of the COOKIE option, when the response has one. */
  readonly cookie: Buffer | undefined;
}

function reply(raw: Buffer): Reply {
  const n = normalise(raw);
  const opt = n.opt?.options.find((o) => o.startsWith(`${COOKIE_OPTION}:`));
  return { raw, tc: n.flags.tc, answers: n.answer.length, rcode: n.rcode, cookie: opt === undefined ? undefined : Buffer.from(opt.slice(3), 'hex') };
}

/** A UDP socket bound to one loopback address: the client network the server sees. */
interface UdpClient {
  readonly address: string;
  /** Replies by query ID. */
  readonly replies: Map<number, Reply>;
  send(port: number, q: QuerySpec & { id: number }): void;
  ask(port: number, q: QuerySpec & { id: number }): Promise<Reply>;
}

async function udpClient(t: Test, address: string): Promise<UdpClient> {
  const sock = dgram.createSocket('udp4');
  const replies = new Map<number, Reply>();
  const waiting = new Map<number, (r: Reply) => void>();
  sock.on('message', (m) => {
    if (m.length < 12) return;
    const r = reply(m);
    const id = m.readUInt16BE(0);
    replies.set(id, r);
    waiting.get(id)?.(r);
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, address, () => resolve());
  });
  t.teardown(() => new Promise<void>((r) => sock.close(() => r())));
  const send = (port: number, q: QuerySpec & { id: number }): void => {
    sock.send(encodeQuery(q), port, '127.0.0.1');
  };
  return {
    address,
    replies,
    send,
    ask(port, q) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(q.id);
          reject(new Error(`no reply from ${address} to query ${q.id} within ${TIMEOUT_MS} ms`));
        }, TIMEOUT_MS);
        waiting.set(q.id, (r) => {
          clearTimeout(timer);
          waiting.delete(q.id);
          resolve(r);
        });
        send(port, q);
      });
    },
  };
}

/** One query over TCP from `localAddress`. */
function askTcp(port: number, localAddress: string, q: QuerySpec): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error('TCP query timed out')), TIMEOUT_MS);
    function finish(err: Error | null, r?: Reply): void {
      clearTimeout(timer);
      sock.destroy();
      if (err !== null) reject(err);
      else resolve(r!);
    }
    sock.on('error', (e) => finish(e));
    sock.on('connect', () => {
      const bytes = encodeQuery(q);
      const frame = Buffer.alloc(2 + bytes.length);
      frame.writeUInt16BE(bytes.length, 0);
      bytes.copy(frame, 2);
      sock.write(frame);
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) finish(null, reply(buf.subarray(2, 2 + buf.readUInt16BE(0))));
    });
  });
}

const WWW: QuerySpec = { qname: 'www.example.test', qtype: 'A', edns: {} };

function withCookie(cookie: Uint8Array): QuerySpec {
  return { ...WWW, edns: { options: [{ code: COOKIE_OPTION, data: cookie }] } };
}

interface FloodResult {
  readonly sent: number;
  readonly full: number;
  readonly slipped: readonly Reply[];
  readonly dropped: number;
  /** From the first send to the last reply (or the end of the wait): the longest the server can have spent on it. */
  readonly seconds: number;
}

/**
 * Sends `n` queries for `spec` from `client` in bursts of 25, one burst per
 * event-loop turn or every `pauseMs`, then waits until every one is accounted
 * for: answered, or counted as dropped by the server's limiter (whose drop
 * counter only this flood moves).
 */
async function flood(
  t: Test,
  server: VigilServer,
  port: number,
  client: UdpClient,
  n: number,
  firstId: number,
  spec: QuerySpec = WWW,
  pauseMs = 0,
): Promise<FloodResult> {
  const rrl = server.rateLimiter();
  const droppedBefore = rrl?.dropped ?? 0;
  const ids = Array.from({ length: n }, (_, i) => (firstId + i) & 0xffff);
  const start = performance.now();
  for (let i = 0; i < n; i += 25) {
    for (const id of ids.slice(i, i + 25)) client.send(port, { ...spec, id });
    await new Promise((r) => (pauseMs > 0 ? setTimeout(r, pauseMs) : setImmediate(r)));
  }
  const got = (): number => ids.filter((id) => client.replies.has(id)).length;
  const droppedNow = (): number => (server.rateLimiter()?.dropped ?? 0) - droppedBefore;
  await until(t, `${n} queries from ${client.address} answered or dropped`, () => got() + droppedNow() >= n);
  const seconds = (performance.now() - start) / 1000;
  const replies = ids.map((id) => client.replies.get(id)).filter((r): r is Reply => r !== undefined);
  return {
    sent: n,
    full: replies.filter((r) => !r.tc && r.answers === 1).length,
    slipped: replies.filter((r) => r.tc),
    dropped: droppedNow(),
    seconds,
  };
}

/** What a slipped response must be: TC=1, the rcode kept, no records, the question and OPT kept. */
function checkSlipped(t: Test, slipped: readonly Reply[]): void {
  const bad = slipped.filter((r) => {
    const n = normalise(r.raw);
    return !(n.flags.tc && n.rcode === 0 && n.answer.length === 0 && n.authority.length === 0 && n.additional.length === 0 && n.question.length === 1 && n.opt !== null);
  });
  t.equal(bad.length, 0, 'every slipped response is TC=1 with the question and OPT only');
}

// ---------------------------------------------------------------------------

t.test('a flood from one address is limited; other clients are not', async (t) => {
  const vigil = await serve(t, RRL_YAML);
  const { server, port } = vigil;
  t.ok(server.rateLimiter(), 'rate_limit in the config: a limiter is in force');
  const flooder = await udpClient(t, '127.0.0.2');
  const bystander = await udpClient(t, '127.0.0.3');

  // The bystander asks at under its own rate while the flood runs: 8 queries, 150 ms apart (about 6.7/s
  // against 5/s refill plus a bucket of 5), and must get every answer, whole.
  const bystanderDone = (async () => {
    const got: Reply[] = [];
    for (let i = 0; i < 8; i++) {
      got.push(await bystander.ask(port, { ...WWW, id: 0x3000 + i }));
      await new Promise((r) => setTimeout(r, 150));
    }
    return got;
  })();
  // 12 bursts of 25, 60 ms apart: the flood lasts as long as the bystander's first queries.
  const f = await flood(t, server, port, flooder, 300, 0x1000, WWW, 60);
  const seen = await bystanderDone;

  t.comment(`flood: ${f.sent} sent, ${f.full} answered, ${f.slipped.length} slipped, ${f.dropped} dropped, over ${f.seconds.toFixed(2)} s`);
  // The bucket holds RATE and refills at RATE per second: no more full answers than that can pass.
  t.ok(f.full <= RATE + Math.ceil(RATE * f.seconds) + 1, `at most the rate got through (${f.full} in ${f.seconds.toFixed(2)} s)`);
  t.ok(f.full < f.sent / 2, 'most of the flood was not answered in full');
  t.ok(f.slipped.length > 0, 'some responses slipped');
  t.ok(f.dropped > 0, 'some were dropped');
  t.ok(Math.abs(f.slipped.length - f.dropped) <= 1, 'slip 2: every second limited response slips');
  t.equal(f.full + f.slipped.length + f.dropped, f.sent, 'every query answered, slipped or dropped');
  checkSlipped(t, f.slipped);
  t.equal(server.rateLimiter()!.slipped, f.slipped.length, "the limiter's slip count matches what arrived");

  t.equal(seen.length, 8);
  t.same(
    seen.map((r) => [r.tc, r.answers, r.rcode]),
    seen.map(() => [false, 1, 0]),
    '127.0.0.3 got every answer, whole, during the flood',
  );

  await t.test('TCP from the flooding address is answered in full', async (t) => {
    // The account is still in debt: UDP from .2 is still limited right now...
    const again = await flood(t, server, port, flooder, 20, 0x2000);
    t.ok(again.full < 20, `UDP from 127.0.0.2 still limited (${again.full} of 20 in full)`);
    // ...and TCP, which a forger cannot complete, is not limited at all.
    for (let i = 0; i < 10; i++) {
      const r = await askTcp(port, '127.0.0.2', { ...WWW, id: 0x2100 + i });
      if (!t.same([r.tc, r.answers, r.rcode], [false, 1, 0], `TCP query ${i} from 127.0.0.2`)) break;
    }
  });
});

t.test('an exempt client is never limited', async (t) => {
  const { server, port } = await serve(t, RRL_YAML);
  const exempt = await udpClient(t, '127.0.0.4');
  const f = await flood(t, server, port, exempt, 200, 0x4000);
  t.equal(f.full, 200, 'all 200 answered in full');
  t.equal(f.dropped, 0);
  t.equal(f.slipped.length, 0);
  // The same flood from a neighbour outside the list is limited, so the list is what made the difference.
  const other = await udpClient(t, '127.0.0.14');
  const g = await flood(t, server, port, other, 200, 0x4800);
  t.ok(g.full < 100, `127.0.0.14 is limited (${g.full} of 200 in full)`);
});

t.test('a client with a valid server cookie is not limited', async (t) => {
  const { server, port } = await serve(t, RRL_YAML);
  const client = await udpClient(t, '127.0.0.5');
  const clientCookie = Buffer.from('0123456789abcdef', 'hex');

  // A client cookie alone proves nothing: the flood is limited like any other.
  const f = await flood(t, server, port, client, 200, 0x5000, withCookie(clientCookie));
  t.ok(f.full < 100, `client cookie only: limited (${f.full} of 200 in full)`);
  t.ok(f.slipped.length > 0, 'some slipped');
  // A slipped response keeps the OPT, so it hands the client a server cookie to prove itself with.
  const fromSlip = f.slipped.map((r) => r.cookie).find((c) => c !== undefined);
  t.equal(fromSlip?.length, 24, 'a slipped response carries client cookie + server cookie');
  t.same(fromSlip?.subarray(0, 8), clientCookie, 'echoing our client cookie');

  // A tampered server cookie is not valid: still limited.
  const forged = Buffer.from(fromSlip!);
  forged[23] = forged[23]! ^ 0xff;
  const g = await flood(t, server, port, client, 50, 0x5400, withCookie(forged));
  t.ok(g.full < 50, `a forged server cookie: still limited (${g.full} of 50 in full)`);

  // The same client, same name, account deep in debt: with the valid cookie every answer comes through.
  const h = await flood(t, server, port, client, 200, 0x5800, withCookie(fromSlip!));
  t.equal(h.full, 200, 'all 200 answered in full with a valid server cookie');
  t.equal(h.dropped + h.slipped.length, 0, 'none dropped or slipped');
});

t.test('dig +cookie: a resolver with our cookie gets UDP answers while its address is flooded', async (t) => {
  const { server, port } = await serve(t, RRL_YAML);
  const dig = async (...args: string[]): Promise<string> =>
    (await run('dig', ['-b', '127.0.0.6', '@127.0.0.1', '-p', String(port), '+tries=1', '+time=3', ...args, 'www.example.test', 'A'])).stdout;
  const first = await dig('+cookie');
  const line = /; COOKIE: ([0-9a-f]+) \((\w+)\)/.exec(first);
  t.ok(line, 'dig prints the COOKIE it got');
  t.equal(line?.[2], 'good', 'dig finds its client cookie echoed');
  t.equal(line?.[1]?.length, 48, 'client cookie and a 16-octet server cookie');

  // Forge a flood "from" the resolver's address (what an amplification attack looks like to us).
  const forger = await udpClient(t, '127.0.0.6');
  const f = await flood(t, server, port, forger, 100, 0x6000);
  t.ok(f.full < 50, `the forged flood is limited (${f.full} of 100 in full)`);

  const second = await dig(`+cookie=${line?.[1] ?? ''}`);
  t.match(second, /status: NOERROR/, 'answered');
  t.match(second, /SERVER: 127\.0\.0\.1#\d+\(127\.0\.0\.1\) \(UDP\)/, 'over UDP');
  t.notMatch(second, /Truncated/, 'not slipped');
  t.match(second, /^www\.example\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.10$/m, 'with the answer');
  t.match(second, /; COOKIE: [0-9a-f]{48} \(good\)/, 'and a fresh cookie');
});

// ---------------------------------------------------------------------------
// Cookies

/** The server cookie in `r` for `clientCookie`, after checking the option's shape. */
function serverCookie(t: Test, r: Reply, clientCookie: Buffer): Buffer {
  t.equal(r.cookie?.length, 24, 'COOKIE of 24 octets: 8 client + 16 server');
  t.same(r.cookie?.subarray(0, 8), clientCookie, 'the client cookie echoed');
  return Buffer.from(r.cookie?.subarray(8) ?? Buffer.alloc(16));
}

t.test('cookies: on by default, valid, and the same secret after a swap', async (t) => {
  const file = writeConfig(t, '');
  const { config } = await loadConfig(file);
  const vigil = await startVigilFromConfig(file);
  t.teardown(() => vigil.close());
  const { server, port } = vigil;
  t.equal(server.rateLimiter(), undefined, 'no rate_limit key: no limiter');
  const client = await udpClient(t, '127.0.0.1');
  const cc = Buffer.from('a1a2a3a4a5a6a7a8', 'hex');
  const secret = server.snapshot().cookies;
  t.ok(secret, 'the snapshot carries a secret');

  const r1 = await client.ask(port, { ...withCookie(cc), id: 0x7001 });
  t.same([r1.tc, r1.answers, r1.rcode], [false, 1, 0], 'a normal answer');
  const sc1 = serverCookie(t, r1, cc);
  t.ok(validServerCookie(cc, sc1, '127.0.0.1', secret!, Date.now() / 1000), 'validServerCookie accepts it');
  t.notOk(validServerCookie(cc, sc1, '127.0.0.2', secret!, Date.now() / 1000), 'bound to the client address');
  const plain = await client.ask(port, { ...WWW, id: 0x7002 });
  t.equal(plain.cookie, undefined, 'no client cookie, no COOKIE in the answer');

  // The engine swaps in a new snapshot on every health change and reload: the secret must not change with it.
  server.swap(buildSnapshot(config));
  server.swap(config);
  t.equal(server.snapshot().cookies, secret, 'the same secret after two swaps');
  const r2 = await client.ask(port, { ...withCookie(Buffer.concat([cc, sc1])), id: 0x7003 });
  const sc2 = serverCookie(t, r2, cc);
  t.ok(validServerCookie(cc, sc2, '127.0.0.1', secret!, Date.now() / 1000), 'the new cookie verifies under the secret from before the swap');

  // Over TCP too, and on errors (BADVERS here).
  const tcp = await askTcp(port, '127.0.0.1', { ...withCookie(cc), id: 0x7004 });
  t.ok(validServerCookie(cc, serverCookie(t, tcp, cc), '127.0.0.1', secret!, Date.now() / 1000), 'TCP answers carry a valid cookie');
  const badvers = await client.ask(port, { ...WWW, id: 0x7005, edns: { version: 1, options: [{ code: COOKIE_OPTION, data: cc }] } });
  t.equal(badvers.rcode, 16, 'BADVERS');
  serverCookie(t, badvers, cc);

  // A truncated answer still has room for the cookie, inside the client's limit.
  const big = await client.ask(port, { qname: 'big.example.test', qtype: 'TXT', id: 0x7006, edns: { udpPayload: 512, options: [{ code: COOKIE_OPTION, data: cc }] } });
  t.ok(big.tc, 'TC at 512 octets');
  t.ok(big.raw.length <= 512, `${big.raw.length} octets fit the client's 512`);
  serverCookie(t, big, cc);
});

t.test('cookies: a configured secret, its rollover, and off', async (t) => {
  const current = '00112233445566778899aabbccddeeff';
  const old = 'ffeeddccbbaa99887766554433221100';
  const file = writeConfig(t, 'cookies:\n  secret_file: cookie.secret\n  previous_secret_file: cookie.old\n', { 'cookie.secret': `${current}\n`, 'cookie.old': old });
  const vigil = await startVigilFromConfig(file);
  t.teardown(() => vigil.close());
  const { server, port } = vigil;
  const client = await udpClient(t, '127.0.0.1');
  const cc = Buffer.from('b1b2b3b4b5b6b7b8', 'hex');
  const mine: CookieSecret = { current: Buffer.from(current, 'hex') };
  const sc = serverCookie(t, await client.ask(port, { ...withCookie(cc), id: 0x7101 }), cc);
  t.ok(validServerCookie(cc, sc, '127.0.0.1', mine, Date.now() / 1000), 'made with the secret in secret_file');
  t.same(server.snapshot().cookies?.previous, Buffer.from(old, 'hex'), 'the previous secret is kept for validation');

  // Rolled: the configured secret is re-read on a (re)load; cookies under the previous one stay valid.
  const rolled = writeConfig(t, 'cookies:\n  secret_file: new.secret\n  previous_secret_file: cookie.secret\n', {
    'new.secret': '0f0e0d0c0b0a09080706050403020100',
    'cookie.secret': current,
  });
  server.swap((await loadConfig(rolled)).config);
  const after = server.snapshot().cookies!;
  t.same(after.current, Buffer.from('0f0e0d0c0b0a09080706050403020100', 'hex'), 'the new secret makes cookies');
  t.ok(validServerCookie(cc, sc, '127.0.0.1', after, Date.now() / 1000), 'a cookie from before the rollover is still valid');

  const off = await serve(t, 'cookies:\n  enabled: false\n');
  const offClient = await udpClient(t, '127.0.0.1');
  const r = await offClient.ask(off.port, { ...withCookie(cc), id: 0x7102 });
  t.same([r.answers, r.rcode], [1, 0], 'answered');
  t.equal(r.cookie, undefined, 'cookies: { enabled: false }: no COOKIE in answers');
  t.equal(off.server.snapshot().cookies, undefined);
});

// ---------------------------------------------------------------------------
// Configuration

function lineOf(yaml: string, needle: string): number {
  const i = yaml.split('\n').findIndex((l) => l.includes(needle));
  if (i < 0) throw new Error(`"${needle}" not in the test's YAML`);
  return i + 1;
}

async function configErrors(file: string): Promise<readonly { line: number; path: string | undefined; detail: string; message: string }[]> {
  try {
    await loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigErrors) return e.errors;
    throw e;
  }
  return [];
}

t.test('bad rate_limit and cookies values are errors at file:line', async (t) => {
  const shape = `rate_limit:
  responses_per_second: -1
  slip: 11
  ipv4_prefix_length: 33
  table_size: 0
  burst: 5
cookies:
  enabled: "yes"
`;
  const file1 = writeConfig(t, shape);
  const text1 = `listen: ["127.0.0.1:0"]\nzones:\n  - origin: example.test.\n    file: example.test.zone\n${shape}`;
  const e1 = await configErrors(file1);
  const want1 = [
    { path: 'rate_limit.responses_per_second', line: lineOf(text1, 'responses_per_second'), detail: /must be >= 0/ },
    { path: 'rate_limit.slip', line: lineOf(text1, 'slip:'), detail: /must be <= 10/ },
    { path: 'rate_limit.ipv4_prefix_length', line: lineOf(text1, 'ipv4_prefix_length'), detail: /must be <= 32/ },
    { path: 'rate_limit.table_size', line: lineOf(text1, 'table_size'), detail: /must be >= 1/ },
    { path: 'rate_limit.burst', line: lineOf(text1, 'burst'), detail: /unknown key "burst"/ },
    { path: 'cookies.enabled', line: lineOf(text1, 'enabled'), detail: /must be boolean/ },
  ];
  t.equal(e1.length, want1.length, `${want1.length} errors: ${e1.map((e) => e.message).join(' | ')}`);
  for (const w of want1) {
    const e = e1.find((x) => x.path === w.path);
    t.ok(e, `an error for ${w.path}`);
    t.equal(e?.line, w.line, `${w.path} at line ${w.line}`);
    t.match(e?.detail ?? '', w.detail, `${w.path}: ${e?.detail ?? ''}`);
    t.match(e?.message ?? '', new RegExp(`^${file1.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${w.line}:`), 'message starts with file:line');
  }

  const meaning = `rate_limit:
  window: 1500ms
  exempt_clients: ["10.0.0.1/8", "nonsense", "192.0.2.0/24"]
cookies:
  secret_file: bad.secret
  previous_secret_file: missing.secret
`;
  const file2 = writeConfig(t, meaning, { 'bad.secret': 'not-hex-sekrit-0123456789abcdef\n' });
  const text2 = `listen: ["127.0.0.1:0"]\nzones:\n  - origin: example.test.\n    file: example.test.zone\n${meaning}`;
  const e2 = await configErrors(file2);
  const want2 = [
    { path: 'rate_limit.window', line: lineOf(text2, 'window'), detail: /whole number of seconds from 1s to 1h/ },
    { path: 'rate_limit.exempt_clients[0]', line: lineOf(text2, 'exempt_clients'), detail: /host bits set/ },
    { path: 'rate_limit.exempt_clients[1]', line: lineOf(text2, 'exempt_clients'), detail: /not an IP address/ },
    { path: 'cookies.secret_file', line: lineOf(text2, 'secret_file: bad'), detail: /32 hex digits/ },
    { path: 'cookies.previous_secret_file', line: lineOf(text2, 'previous_secret_file'), detail: /cannot read missing\.secret/ },
  ];
  t.equal(e2.length, want2.length, `${want2.length} errors: ${e2.map((e) => e.message).join(' | ')}`);
  for (const w of want2) {
    const e = e2.find((x) => x.path === w.path);
    t.ok(e, `an error for ${w.path}`);
    t.equal(e?.line, w.line, `${w.path} at line ${w.line}`);
    t.match(e?.detail ?? '', w.detail, `${w.path}: ${e?.detail ?? ''}`);
  }
  t.notOk(e2.some((e) => e.message.includes('sekrit')), 'the secret file content is never quoted');

  // Out-of-range windows, a previous secret with no current one.
  const file3 = writeConfig(t, 'rate_limit:\n  window: 2h\ncookies:\n  previous_secret_file: old.secret\n', { 'old.secret': '00112233445566778899aabbccddeeff' });
  const e3 = await configErrors(file3);
  t.same(e3.map((e) => e.path).sort(), ['cookies.previous_secret_file', 'rate_limit.window']);
  t.match(e3.find((e) => e.path === 'cookies.previous_secret_file')?.detail ?? '', /needs secret_file/);
});

t.test('rate_limit and cookies compile to settings with defaults', async (t) => {
  const { config } = await loadConfig(writeConfig(t, 'rate_limit: {}\n'));
  t.same(config.server.rateLimit, {
    responsesPerSecond: 20,
    nxdomainsPerSecond: 20,
    errorsPerSecond: 20,
    slip: 2,
    windowS: 15,
    ipv4Prefix: 24,
    ipv6Prefix: 56,
    allow: [],
    tableSize: 65536,
  }, 'an empty rate_limit turns RRL on with the defaults');
  t.equal(config.server.cookies, undefined, 'cookies left to the default');

  const full = `rate_limit:
  responses_per_second: 50
  nxdomains_per_second: 7
  errors_per_second: 0
  slip: 1
  window: 1m
  ipv4_prefix_length: 28
  ipv6_prefix_length: 64
  exempt_clients: ["192.0.2.0/24", "2001:db8::1"]
  table_size: 1024
`;
  const c2 = (await loadConfig(writeConfig(t, full))).config.server.rateLimit!;
  t.same(
    { ...c2, allow: c2.allow.map((a) => `${a.family}/${a.prefix}/${Buffer.from(a.bytes).toString('hex')}`) },
    {
      responsesPerSecond: 50,
      nxdomainsPerSecond: 7,
      errorsPerSecond: 0,
      slip: 1,
      windowS: 60,
      ipv4Prefix: 28,
      ipv6Prefix: 64,
      allow: ['4/24/c0000200', '6/128/20010db8000000000000000000000001'],
      tableSize: 1024,
    },
  );
});

// ---------------------------------------------------------------------------
// The daemon: metrics, and the limiter across reloads

t.test('the daemon counts limited responses in vigil_rrl_responses_total and keeps the limiter across reloads', async (t) => {
  const onLoopback = (c: CompiledConfig): CompiledConfig => ({ ...c, server: { ...c.server, listen: [{ host: '127.0.0.1', port: 0 }] } });
  const file = writeConfig(t, RRL_YAML);
  const daemon = await startDaemon(file, pino({ level: 'silent' }), { adjust: onLoopback, levelFixed: true });
  t.teardown(() => daemon.close());
  const server = daemon.server;
  const port = server.addresses.udp[0]!.port;

  const client = await udpClient(t, '127.0.0.8');
  const f = await flood(t, server, port, client, 150, 0x8000);
  t.ok(f.dropped > 0 && f.slipped.length > 0, `limited: ${f.dropped} dropped, ${f.slipped.length} slipped`);
  const rrl = server.rateLimiter()!;
  const value = async (action: string): Promise<number> => {
    const m = new RegExp(`^vigil_rrl_responses_total\\{action="${action}"[^}]*\\} (\\d+)$`, 'm').exec(await daemon.metrics.render());
    return m === null ? -1 : Number(m[1]);
  };
  t.equal(await value('dropped'), rrl.dropped, 'dropped in /metrics equals the limiter count');
  t.equal(await value('slipped'), rrl.slipped, 'slipped in /metrics equals the limiter count');
  const udpDropped = /^vigil_dns_dropped_total\{[^}]*transport="udp"[^}]*\} (\d+)$/m.exec(await daemon.metrics.render());
  t.equal(Number(udpDropped?.[1]), rrl.dropped, 'a dropped response is a UDP packet given no response');
  t.ok(rrl.dropped > 0);

  const secret = server.snapshot().cookies;
  t.same(await daemon.reload(), { ok: true }, 'reload of the same file');
  t.equal(server.rateLimiter(), rrl, 'unchanged settings: the same limiter, accounts and all');
  t.equal(server.snapshot().cookies, secret, 'and the same cookie secret');
  const still = await flood(t, server, port, client, 20, 0x8400);
  t.ok(still.full < 20, `the flooder is still limited after the reload (${still.full} of 20 in full)`);

  writeFileSync(file, `listen: ["127.0.0.1:0"]\nzones:\n  - origin: example.test.\n    file: example.test.zone\n${RRL_YAML.replace(`responses_per_second: ${RATE}`, 'responses_per_second: 1000')}`);
  t.same(await daemon.reload(), { ok: true }, 'reload with a new rate');
  t.not(server.rateLimiter(), rrl, 'changed settings: a new limiter');
  t.equal(server.rateLimiter()?.settings.responsesPerSecond, 1000);
  t.equal(server.snapshot().cookies, secret, 'the cookie secret survives a config change too');
  const after = await flood(t, server, port, client, 100, 0x8800);
  t.equal(after.full, 100, 'under the new rate, 100 queries pass');

  writeFileSync(file, `listen: ["127.0.0.1:0"]\nzones:\n  - origin: example.test.\n    file: example.test.zone\n`);
  t.same(await daemon.reload(), { ok: true }, 'reload without rate_limit');
  t.equal(server.rateLimiter(), undefined, 'rate limiting off');
});
