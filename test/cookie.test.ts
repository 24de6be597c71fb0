// DNS Cookies: SipHash-2-4 against the reference implementation's vectors,
// RFC 9018 server cookies against the RFC's Appendix A, the parser's COOKIE
// handling (RFC 7873 5.2.2 FORMERR), OPT options in the writer, and the whole
// exchange with dig, a client that shares no code with us.

import t from 'tap';
import dgram from 'node:dgram';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import {
  addressBytes,
  clientCookieOf,
  CookieError,
  COOKIE_OPTION_SIZE,
  serverCookieOf,
  serverCookieOption,
  sipHash24,
  validServerCookie,
  type CookieSecret,
} from '../server/wire/cookie.js';
import { parseQuery, type Edns } from '../server/wire/query.js';
import { MessageWriter, OPT_SIZE, optSize, writeOptAt } from '../server/wire/writer.js';
import { respond } from '../server/answer/respond.js';
import { buildSnapshot } from '../server/answer/snapshot.js';
import { loadConfig } from '../zones/load.js';
import { encodeQuery } from './helpers/dnsclient.js';

const run = promisify(execFile);
const hex = (s: string): Buffer => Buffer.from(s, 'hex');

/** SipHash-2-4 reference vectors (vectors.h of the reference implementation): key 00..0f, message 00..n-1, output little-endian. */
const SIP_VECTORS = [
  '310e0edd47db6f72', 'fd67dc93c539f874', '5a4fa9d909806c0d', '2d7efbd796666785', 'b7877127e09427cf', '8da699cd64557618',
  'cee3fe586e46c9cb', '37d1018bf50002ab', '6224939a79f5f593', 'b0e4a90bdf82009e', 'f3b9dd94c5bb5d7a', 'a7ad6b22462fb3f4',
  'fbe50e86bc8f1e75', '903d84c02756ea14', 'eef27a8e90ca23f7', 'e545be4961ca29a1', 'db9bc2577fcc2a3f', '9447be2cf5e99a69',
  '9cd38d96f0b3c14b', 'bd6179a71dc96dbb', '98eea21af25cd6be', 'c7673b2eb0cbf2d0', '883ea3e395675393', 'c8ce5ccd8c030ca8',
  '94af49f6c650adb8', 'eab8858ade92e1bc', 'f315bb5bb835d817', 'adcf6b0763612e2f', 'a5c91da7acaa4dde', '716595876650a2a6',
  '28ef495c53a387ad', '42c341d8fa92d832', 'ce7cf2722f512771', 'e37859f94623f3a7', '381205bb1ab0e012', 'ae97a10fd434e015',
  'b4a31508beff4d31', '81396229f0907902', '4d0cf49ee5d4dcca', '5c73336a76d8bf9a', 'd0a704536ba93e0e', '925958fcd6420cad',
  'a915c29bc8067318', '952b79f3bc0aa6d4', 'f21df2e41d4535f9', '87577519048f53a9', '10a56cf5dfcd9adb', 'eb75095ccd986cd0',
  '51a9cb9ecba312e6', '96afadfc2ce666c7', '72fe52975a4364ee', '5a1645b276d592a1', 'b274cb8ebf87870a', '6f9bb4203de7b381',
  'eaecb2a30b22a87f', '9924a43cc1315724', 'bd838d3aafbf8db7', '0b1a2a3265d51aea', '135079a3231ce660', '932b2846e4d70666',
  'e1915f5cb1eca46c', 'f325965ca16d629f', '575ff28e60381be5', '724506eb4c328a95',
];

t.test('SipHash-2-4 matches the reference vectors for every message length 0..63', async (t) => {
  const key = Uint8Array.from({ length: 16 }, (_, i) => i);
  const msg = Uint8Array.from({ length: 64 }, (_, i) => i);
  const out = new Uint8Array(8);
  SIP_VECTORS.forEach((want, n) => {
    sipHash24(key, msg, out, 0, n);
    t.equal(Buffer.from(out).toString('hex'), want, `${n} octets`);
  });
  // `at` and `length` address a window of larger buffers without copying.
  const big = new Uint8Array(20);
  sipHash24(key, msg.subarray(0, 9), big, 12);
  t.equal(Buffer.from(big.subarray(12)).toString('hex'), SIP_VECTORS[9], 'written at an offset');
  t.throws(() => sipHash24(new Uint8Array(15), msg, out), CookieError, 'a 15-octet key is refused');
});

// RFC 9018 Appendix A. Secrets, addresses, times and cookies are the RFC's.
const A_SECRET = hex('e5e973e5a6b2a43f48e7dc849e37bfcf');

t.test('RFC 9018 Appendix A', async (t) => {
  await t.test('A.1: learning a new server cookie', async (t) => {
    const opt = serverCookieOption(hex('2464c4abcf10c957'), '198.51.100.100', { current: A_SECRET }, 1559731985);
    t.equal(opt.toString('hex'), '000a0018' + '2464c4abcf10c957' + '010000005cf79f111f8130c3eee29480');
    t.equal(opt.length, COOKIE_OPTION_SIZE);
  });

  await t.test('A.2: the same client, 40 minutes later', async (t) => {
    const secret = { current: A_SECRET };
    t.ok(validServerCookie(hex('2464c4abcf10c957'), hex('010000005cf79f111f8130c3eee29480'), '198.51.100.100', secret, 1559734385), 'its cookie is still valid');
    const opt = serverCookieOption(hex('2464c4abcf10c957'), '198.51.100.100', secret, 1559734385);
    t.equal(opt.subarray(4).toString('hex'), '2464c4abcf10c957010000005cf7a871d4a564a1442aca77', 'renewed');
  });

  await t.test('A.3: reserved octets set, the cookie hashed as received', async (t) => {
    const secret = { current: A_SECRET };
    const cc = hex('fc93fc62807ddb86');
    const sc = hex('01abcdef5cf78f71a314227b6679ebf5');
    t.ok(validServerCookie(cc, sc, '203.0.113.203', secret, 1559727985), 'valid when it was issued');
    t.notOk(validServerCookie(cc, sc, '203.0.113.203', secret, 1559734700), 'an hour and 52 minutes later it has expired');
    const opt = serverCookieOption(cc, '203.0.113.203', secret, 1559734700);
    t.equal(opt.subarray(4).toString('hex'), 'fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e', 'a fresh one is made');
  });

  await t.test('A.4: IPv6, made with the secret before a rollover', async (t) => {
    const secret: CookieSecret = { current: hex('445536bcd2513298075a5d379663c962'), previous: hex('dd3bdf9344b678b185a6f5cb60fca715') };
    const cc = hex('22681ab97d52c298');
    const sc = hex('010000005cf7c57926556bd0934c72f8');
    const ip = '2001:db8:220:1:59de:d0f4:8769:82b8';
    t.ok(validServerCookie(cc, sc, ip, secret, 1559741961), 'valid under the previous secret');
    t.notOk(validServerCookie(cc, sc, ip, { current: secret.current }, 1559741961), 'not once the previous secret is dropped');
    t.equal(serverCookieOption(cc, ip, secret, 1559741961).subarray(4).toString('hex'), '22681ab97d52c298010000005cf7c609a6bb79d16625507a');
  });
});

t.test('what a server cookie is bound to', async (t) => {
  const secret = { current: A_SECRET };
  const cc = hex('2464c4abcf10c957');
  const sc = hex('010000005cf79f111f8130c3eee29480');
  const ip = '198.51.100.100';
  const at = 1559731985;
  const flip = (b: Buffer, i: number): Buffer => {
    const c = Buffer.from(b);
    c[i]! ^= 1;
    return c;
  };
  t.ok(validServerCookie(cc, sc, ip, secret, at), 'as issued');
  t.ok(validServerCookie(cc, sc, ip, secret, at + 3600), 'one hour old');
  t.notOk(validServerCookie(cc, sc, ip, secret, at + 3601), 'an hour and a second old');
  t.ok(validServerCookie(cc, sc, ip, secret, at - 300), 'five minutes in the future');
  t.notOk(validServerCookie(cc, sc, ip, secret, at - 301), 'five minutes and a second in the future');
  t.notOk(validServerCookie(flip(cc, 0), sc, ip, secret, at), 'another client cookie');
  t.notOk(validServerCookie(cc, flip(sc, 0), ip, secret, at), 'version 0');
  t.notOk(validServerCookie(cc, flip(sc, 7), ip, secret, at), 'another timestamp');
  t.notOk(validServerCookie(cc, flip(sc, 15), ip, secret, at), 'another hash');
  t.notOk(validServerCookie(cc, sc, '198.51.100.101', secret, at), 'another address');
  t.ok(validServerCookie(cc, sc, '::ffff:198.51.100.100', secret, at), 'the same IPv4 client through a dual-stack socket');
  t.notOk(validServerCookie(cc, sc, ip, { current: hex('dd3bdf9344b678b185a6f5cb60fca715') }, at), 'another secret');
  t.notOk(validServerCookie(cc, sc.subarray(0, 15), ip, secret, at), 'a 15-octet server cookie');
  t.notOk(validServerCookie(cc, Buffer.concat([sc, Buffer.from([0])]), ip, secret, at), 'a 17-octet server cookie');
  t.notOk(validServerCookie(cc.subarray(0, 7), sc, ip, secret, at), 'a 7-octet client cookie');

  // Serial arithmetic (RFC 9018 4.3): a cookie made just before the 32-bit timestamp wraps stays valid after it.
  const nearWrap = 2 ** 32 - 100;
  const wrapped = serverCookieOption(cc, ip, secret, nearWrap).subarray(12);
  t.ok(validServerCookie(cc, wrapped, ip, secret, nearWrap + 500), 'across the 2^32 wrap');
  t.notOk(validServerCookie(cc, wrapped, ip, secret, nearWrap + 3601), 'and expires across it too');

  // Without a parseable address (no socket) the cookie is still bound to the secret and the client cookie.
  const noAddr = serverCookieOption(cc, '', secret, at).subarray(12);
  t.ok(validServerCookie(cc, noAddr, '', secret, at), 'made and checked without an address');
  t.notOk(validServerCookie(cc, noAddr, ip, secret, at), 'not valid for a real address');

  t.throws(() => serverCookieOption(cc.subarray(0, 4), ip, secret, at), CookieError, 'a short client cookie is a caller bug');
  t.throws(() => serverCookieOption(cc, ip, { current: Buffer.alloc(8) }, at), { name: 'CookieError', detail: { what: 'current', length: 8 } });
});

t.test('client address octets', async (t) => {
  const out = new Uint8Array(16);
  t.equal(addressBytes('192.0.2.7', out), 4);
  t.same([...out.subarray(0, 4)], [192, 0, 2, 7]);
  t.equal(addressBytes('::FFFF:192.0.2.8', out), 4, 'IPv4-mapped');
  t.same([...out.subarray(0, 4)], [192, 0, 2, 8]);
  t.equal(addressBytes('2001:db8::1', out), 16);
  t.same([...out], [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1]);
  t.equal(addressBytes('fe80::1%eth0', out), 16, 'zone index dropped');
  t.equal(out[0], 0xfe);
  for (const bad of ['', '?', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', 'example.test', '::ffff:1.2.3']) {
    t.equal(addressBytes(bad, out), 0, `"${bad}" does not parse`);
  }
});

function cookieQuery(cookie: Uint8Array, extra: { code: number; data: Uint8Array }[] = []): Buffer {
  return encodeQuery({ qname: 'www.example.test', qtype: 'A', id: 0x5151, edns: { options: [...extra, { code: 10, data: cookie }] } });
}

t.test('the parser finds the COOKIE option and refuses malformed ones (RFC 7873 5.2.2)', async (t) => {
  for (let len = 0; len <= 41; len++) {
    const data = Buffer.alloc(len, 0xa5);
    const q = cookieQuery(data);
    const p = parseQuery(q);
    const malformed = len < 8 || (len > 8 && len < 16) || len > 40;
    if (malformed) {
      t.match(p, { kind: 'error', rcode: 1, reason: /COOKIE/ }, `${len} octets: FORMERR`);
      // The OPT itself is sound: the FORMERR carries ours, with no cookie fields set.
      t.same(p.kind === 'error' ? p.edns : undefined, { payload: 1232, version: 0, dnssecOk: false }, `${len} octets: EDNS kept, no cookie`);
    } else {
      if (p.kind !== 'query' || p.edns === undefined) {
        t.fail(`${len} octets: parsed as ${p.kind}`);
        continue;
      }
      t.equal(p.edns.cookieLength, len, `${len} octets: length`);
      const at = p.edns.cookieAt ?? 0;
      t.equal(q.readUInt16BE(at - 4), 10, `${len} octets: offset points past the option header`);
      t.equal(q.readUInt16BE(at - 2), len);
      t.same(clientCookieOf(q, p.edns), data.subarray(0, 8), `${len} octets: client cookie`);
      const sc = serverCookieOf(q, p.edns);
      if (len === 8) t.equal(sc, undefined, 'no server cookie');
      else t.same(sc, data.subarray(8), `${len} octets: server cookie`);
    }
  }

  const plain = parseQuery(encodeQuery({ qname: 'a.test', qtype: 'A', edns: {} }));
  t.same(plain.kind === 'query' ? plain.edns : undefined, { payload: 1232, version: 0, dnssecOk: false }, 'EDNS without a cookie has no cookie fields');
  t.equal(clientCookieOf(Buffer.alloc(0), undefined), undefined, 'no EDNS, no cookie');

  // Another option before it, and a second COOKIE after it: the first COOKIE counts, malformed or not the second.
  const first = Buffer.from('0102030405060708', 'hex');
  const q = encodeQuery({
    qname: 'www.example.test',
    qtype: 'A',
    edns: { options: [{ code: 3, data: Buffer.alloc(0) }, { code: 10, data: first }, { code: 10, data: Buffer.alloc(3) }] },
  });
  const p = parseQuery(q);
  t.equal(p.kind, 'query', 'a later malformed COOKIE is ignored');
  if (p.kind === 'query') t.same(clientCookieOf(q, p.edns), first, 'the first COOKIE is the one read');
});

t.test('a malformed COOKIE earns FORMERR with our OPT, through respond()', async (t) => {
  const { config } = await loadConfig(new URL('../zones/examples/vigil.yaml', import.meta.url).pathname);
  const snap = buildSnapshot(config);
  const out = respond(cookieQuery(Buffer.alloc(12)), 0x7fffffff, snap, 'udp', '127.0.0.1');
  t.ok(out, 'answered');
  const p = dnsPacket.decode(out!);
  t.equal(p.id, 0x5151);
  t.equal(out![3]! & 0x0f, 1, 'FORMERR');
  t.same(p.additionals?.map((a) => a.type), ['OPT'], 'OPT in the FORMERR');
  // A well-formed cookie still gets the normal answer (the option is read, not yet answered).
  const okRaw = respond(cookieQuery(Buffer.alloc(24)), 0x7fffffff, snap, 'udp', '127.0.0.1')!;
  const ok = dnsPacket.decode(okRaw);
  t.equal(okRaw[3]! & 0x0f, 0, 'NOERROR');
  t.same(ok.answers?.map((a) => ('data' in a ? a.data : undefined)), ['192.0.2.10']);
});

t.test('OPT records carry extra options', async (t) => {
  const cookie = serverCookieOption(hex('2464c4abcf10c957'), '198.51.100.100', { current: A_SECRET }, 1559731985);
  t.equal(optSize(), OPT_SIZE);
  t.equal(optSize(cookie), OPT_SIZE + 28);

  const w = new MessageWriter(512);
  w.reset();
  w.raw(Buffer.from([0x12, 0x34, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
  t.ok(w.opt(1232, 0, true, cookie));
  t.equal(w.length, 12 + OPT_SIZE + 28);
  const p = dnsPacket.decode(w.toBuffer());
  const opt = p.additionals?.[0] as dnsPacket.OptAnswer | undefined;
  t.equal(opt?.type, 'OPT');
  t.equal(opt?.udpPayloadSize, 1232);
  t.equal(opt?.flag_do, true);
  t.same(
    opt?.options.map((o) => [o.code, Buffer.from(o.data ?? []).toString('hex')]),
    [[10, '2464c4abcf10c957010000005cf79f111f8130c3eee29480']],
    'dns-packet reads our COOKIE back',
  );

  // No room: nothing written, false returned; the old three-argument call still writes an empty OPT.
  const small = new MessageWriter(12 + OPT_SIZE + 27);
  small.reset();
  small.raw(Buffer.alloc(12));
  t.notOk(small.opt(1232, 0, false, cookie), 'does not fit');
  t.equal(small.length, 12, 'nothing written');
  t.ok(small.opt(1232, 0, false), 'an empty OPT fits');
  t.equal(small.buf.readUInt16BE(12 + 9), 0, 'rdlength 0');

  const b = Buffer.alloc(OPT_SIZE + 28 + 2, 0xee);
  writeOptAt(b, 1, 4096, 1, false, cookie);
  t.equal(b[0], 0xee, 'nothing before');
  t.equal(b.readUInt16BE(1 + 9), 28, 'rdlength');
  t.same(b.subarray(1 + OPT_SIZE, 1 + OPT_SIZE + 28), cookie, 'options copied');
  t.equal(b[b.length - 1], 0xee, 'nothing after');
});

/**
 * A loopback UDP responder that answers every query with header, question and
 * an OPT carrying our server cookie, and remembers what it was sent.
 */
function cookieServer(secret: CookieSecret): Promise<{ port: number; seen: { edns: Edns | undefined; valid: boolean | undefined }[]; close(): Promise<void> }> {
  const sock = dgram.createSocket('udp4');
  const seen: { edns: Edns | undefined; valid: boolean | undefined }[] = [];
  sock.on('message', (m, r) => {
    const q = parseQuery(m);
    if (q.kind !== 'query') return;
    const cc = clientCookieOf(m, q.edns);
    const sc = serverCookieOf(m, q.edns);
    const now = Date.now() / 1000;
    seen.push({ edns: q.edns, valid: cc !== undefined && sc !== undefined ? validServerCookie(cc, sc, r.address, secret, now) : undefined });
    const w = new MessageWriter(512);
    w.reset();
    w.u16(q.id);
    w.u16(0x8400);
    w.u16(1);
    w.u16(0);
    w.u16(0);
    w.u16(1);
    w.raw(m, 12, q.questionEnd);
    w.opt(1232, 0, false, cc !== undefined ? serverCookieOption(cc, r.address, secret, now) : undefined);
    sock.send(w.toBuffer(), r.port, r.address);
  });
  return new Promise((resolve) => {
    sock.bind(0, '127.0.0.1', () =>
      resolve({ port: sock.address().port, seen, close: () => new Promise<void>((r) => sock.close(() => r())) }),
    );
  });
}

t.test('dig accepts our server cookie and sends it back valid', async (t) => {
  const secret: CookieSecret = { current: Buffer.alloc(16, 0x42) };
  const srv = await cookieServer(secret);
  t.teardown(() => srv.close());
  const dig = async (cookieArg: string): Promise<string> =>
    (await run('dig', ['@127.0.0.1', '-p', String(srv.port), '+tries=1', '+time=3', cookieArg, 'www.example.test', 'A'])).stdout;

  const first = await dig('+cookie');
  const line = /; COOKIE: ([0-9a-f]+) \((\w+)\)/.exec(first);
  t.ok(line, 'dig prints the COOKIE it got');
  t.equal(line?.[2], 'good', 'dig finds its client cookie echoed');
  t.equal(line?.[1]?.length, 48, 'client cookie and a 16-octet server cookie');
  t.equal(srv.seen[0]?.edns?.cookieLength, 8, 'dig sent a client cookie only');

  // dig sends the whole cookie back when told to, as a resolver does on its next query.
  await dig(`+cookie=${line?.[1] ?? ''}`);
  t.equal(srv.seen[1]?.edns?.cookieLength, 24, 'client and server cookie came back');
  t.equal(srv.seen[1]?.valid, true, 'and the server cookie verifies');

  // The same cookie under another secret (a restart without a configured secret) does not.
  const other = await cookieServer({ current: Buffer.alloc(16, 0x43) });
  t.teardown(() => other.close());
  await run('dig', ['@127.0.0.1', '-p', String(other.port), '+tries=1', '+time=3', `+cookie=${line?.[1] ?? ''}`, 'www.example.test', 'A']);
  t.equal(other.seen[0]?.valid, false, 'a cookie from another secret is not valid');
});
