// Response Rate Limiting: the account arithmetic (rate, window, slip), what
// counts as one client and one flow, the allow list, the fixed table, the
// classification of real answers from the example zones, and the slipped
// response, which dig (a real client) must take as "retry over TCP".

import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import {
  classifyAnswer,
  ERROR_CLASS,
  ResponseRateLimiter,
  RrlSettingsError,
  RRL_DEFAULTS,
  slipResponse,
  type RrlAction,
  type RrlSettings,
} from '../server/limits/rrl.js';
import { respond } from '../server/answer/respond.js';
import { resolve } from '../server/answer/resolve.js';
import { buildSnapshot, type Snapshot } from '../server/answer/snapshot.js';
import { parseName } from '../server/wire/name.js';
import { TYPE } from '../server/wire/constants.js';
import { loadConfig } from '../zones/load.js';
import type { Cidr } from '../zones/service.js';
import { encodeQuery } from './helpers/dnsclient.js';

const run = promisify(execFile);

function settings(over: Partial<RrlSettings> = {}): RrlSettings {
  return { ...RRL_DEFAULTS, responsesPerSecond: 5, allow: [], ...over };
}

/** `n` checks at the same instant. */
function burst(rrl: ResponseRateLimiter, n: number, now: number, client = '192.0.2.1', key = 'k'): RrlAction[] {
  return Array.from({ length: n }, () => rrl.check(client, 'answer', key, now));
}

t.test('a burst gets the rate, then drops and slips alternate (slip 2)', async (t) => {
  const rrl = new ResponseRateLimiter(settings({ slip: 2 }), 1);
  t.same(burst(rrl, 5, 1000), ['send', 'send', 'send', 'send', 'send'], 'the first responsesPerSecond go out');
  t.same(burst(rrl, 6, 1000), ['drop', 'slip', 'drop', 'slip', 'drop', 'slip'], 'then every second limited one slips');
  t.equal(rrl.dropped, 3);
  t.equal(rrl.slipped, 3);
});

t.test('slip 0 drops every limited response, slip 1 truncates every one, slip 3 one in three', async (t) => {
  t.same(burst(new ResponseRateLimiter(settings({ slip: 0 }), 1), 8, 0).slice(5), ['drop', 'drop', 'drop']);
  t.same(burst(new ResponseRateLimiter(settings({ slip: 1 }), 1), 8, 0).slice(5), ['slip', 'slip', 'slip']);
  t.same(burst(new ResponseRateLimiter(settings({ slip: 3 }), 1), 11, 0).slice(5), ['drop', 'drop', 'slip', 'drop', 'drop', 'slip']);
});

t.test('credit refills at the rate, and a flood pays its debt for window seconds', async (t) => {
  const rrl = new ResponseRateLimiter(settings({ responsesPerSecond: 10, windowS: 5, slip: 0 }), 1);
  t.same(burst(rrl, 10, 0).filter((a) => a === 'send').length, 10, 'a full bucket');
  t.equal(rrl.check('192.0.2.1', 'answer', 'k', 0), 'drop', 'empty');
  // A steady client at the rate is never limited: 10/s, one every 100 ms.
  const steady = new ResponseRateLimiter(settings({ responsesPerSecond: 10, windowS: 5, slip: 0 }), 1);
  const got: RrlAction[] = [];
  for (let ms = 0; ms < 10_000; ms += 100) got.push(steady.check('192.0.2.1', 'answer', 'k', ms));
  t.notOk(got.includes('drop'), 'a client at exactly the rate always gets answers');

  // A flood at 10x the rate drives the account to its floor (-rate × window = -50)...
  for (let ms = 0; ms < 3000; ms += 10) rrl.check('192.0.2.1', 'answer', 'k', ms);
  t.equal(rrl.check('192.0.2.1', 'answer', 'k', 3000), 'drop', 'limited during the flood');
  // ...which the refill of 10/s repays in 5 s: at 3000 + 4.9 s still limited, after 5 s answered.
  t.equal(rrl.check('192.0.2.1', 'answer', 'k', 7900), 'drop', 'still in debt just before the window ends');
  const fresh = new ResponseRateLimiter(settings({ responsesPerSecond: 10, windowS: 5, slip: 0 }), 1);
  for (let ms = 0; ms < 3000; ms += 10) fresh.check('192.0.2.1', 'answer', 'k', ms);
  t.equal(fresh.check('192.0.2.1', 'answer', 'k', 3000 + 5100), 'send', 'answered once the window has passed');

  // A clock that steps back neither refills nor breaks the account.
  const back = new ResponseRateLimiter(settings({ responsesPerSecond: 1, slip: 0 }), 1);
  t.equal(back.check('192.0.2.1', 'answer', 'k', 50_000), 'send');
  t.equal(back.check('192.0.2.1', 'answer', 'k', 10_000), 'drop', 'earlier time: no credit');
});

t.test('clients are grouped by prefix; flows by kind and key', async (t) => {
  const rrl = new ResponseRateLimiter(settings({ responsesPerSecond: 2, slip: 0 }), 7);
  burst(rrl, 2, 0, '192.0.2.1');
  t.equal(rrl.check('192.0.2.200', 'answer', 'k', 0), 'drop', 'same /24: same account');
  t.equal(rrl.check('::ffff:192.0.2.9', 'answer', 'k', 0), 'drop', 'an IPv4-mapped source is the same IPv4 client');
  t.equal(rrl.check('192.0.3.1', 'answer', 'k', 0), 'send', 'next /24: its own account');
  t.equal(rrl.check('192.0.2.1', 'answer', 'other', 0), 'send', 'another key: another flow');
  t.equal(rrl.check('192.0.2.1', 'nodata', 'k', 0), 'send', 'another kind: another flow');

  burst(rrl, 2, 0, '2001:db8:0:ab00::1');
  t.equal(rrl.check('2001:db8:0:abff:ffff::7', 'answer', 'k', 0), 'drop', 'same IPv6 /56');
  t.equal(rrl.check('2001:db8:0:ac00::1', 'answer', 'k', 0), 'send', 'next /56');

  const narrow = new ResponseRateLimiter(settings({ responsesPerSecond: 1, slip: 0, ipv4Prefix: 32, ipv6Prefix: 128 }), 7);
  narrow.check('192.0.2.1', 'answer', 'k', 0);
  t.equal(narrow.check('192.0.2.2', 'answer', 'k', 0), 'send', '/32: every address on its own');
  t.equal(narrow.check('192.0.2.1', 'answer', 'k', 0), 'drop');
  const odd = new ResponseRateLimiter(settings({ responsesPerSecond: 1, slip: 0, ipv4Prefix: 20 }), 7);
  odd.check('10.1.16.1', 'answer', 'k', 0);
  t.equal(odd.check('10.1.31.255', 'answer', 'k', 0), 'drop', 'a /20 spans 10.1.16.0-10.1.31.255');
  t.equal(odd.check('10.1.32.0', 'answer', 'k', 0), 'send', 'and stops there');
});

t.test('per-kind rates; 0 means unlimited', async (t) => {
  const rrl = new ResponseRateLimiter(settings({ responsesPerSecond: 5, nxdomainsPerSecond: 1, errorsPerSecond: 0, slip: 0 }), 3);
  t.same(
    Array.from({ length: 3 }, () => rrl.check('192.0.2.1', 'nxdomain', 'zone', 0)),
    ['send', 'drop', 'drop'],
    'nxdomainsPerSecond 1',
  );
  t.notOk(Array.from({ length: 100 }, () => rrl.check('192.0.2.1', 'error', '', 0)).includes('drop'), 'errorsPerSecond 0: never limited');
  t.equal(Array.from({ length: 6 }, () => rrl.check('192.0.2.1', 'nodata', 'n', 0)).filter((a) => a === 'send').length, 5, 'NODATA uses responsesPerSecond');
  const defaults = new ResponseRateLimiter(settings({ responsesPerSecond: 2, slip: 0 }), 3);
  t.same(
    Array.from({ length: 3 }, () => defaults.check('192.0.2.1', 'error', '', 0)),
    ['send', 'send', 'drop'],
    'errorsPerSecond defaults to responsesPerSecond',
  );
  const off = new ResponseRateLimiter(settings({ responsesPerSecond: 0 }), 3);
  t.notOk(burst(off, 1000, 0).includes('drop'), 'responsesPerSecond 0: RRL off for answers');
});

t.test('allow-listed clients are never limited', async (t) => {
  const allow: Cidr[] = [
    { family: 4, bytes: Uint8Array.from([198, 51, 100, 0]), prefix: 24 },
    { family: 6, bytes: Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, 0xaa, ...Array(11).fill(0)]), prefix: 40 },
  ];
  const rrl = new ResponseRateLimiter(settings({ responsesPerSecond: 1, slip: 0, allow }), 3);
  t.notOk(burst(rrl, 50, 0, '198.51.100.7').includes('drop'), 'inside the allowed /24');
  t.notOk(burst(rrl, 50, 0, '::ffff:198.51.100.8').includes('drop'), 'IPv4-mapped, inside');
  t.notOk(burst(rrl, 50, 0, '2001:db8:aa00::1').includes('drop'), 'inside the allowed IPv6 /40');
  t.ok(burst(rrl, 5, 0, '198.51.101.7').includes('drop'), 'outside');
  t.ok(burst(rrl, 5, 0, '2001:db8:ab00::1').includes('drop'), 'outside, IPv6');
  t.ok(rrl.allowed('198.51.100.255'));
  t.notOk(rrl.allowed('not an address'));
});

t.test('a fixed table: flows that hash to one slot share its account', async (t) => {
  // With one slot every flow collides: the documented cost of a bounded table.
  const one = new ResponseRateLimiter(settings({ responsesPerSecond: 2, slip: 0, tableSize: 1 }), 3);
  one.check('192.0.2.1', 'answer', 'a', 0);
  one.check('203.0.113.1', 'nxdomain', 'b', 0);
  t.equal(one.check('2001:db8::1', 'error', '', 0), 'drop', 'three unrelated flows spent one account');
  // With room, the same three flows are independent (seeded, so this is deterministic).
  const big = new ResponseRateLimiter(settings({ responsesPerSecond: 2, slip: 0, tableSize: 4096 }), 3);
  big.check('192.0.2.1', 'answer', 'a', 0);
  big.check('203.0.113.1', 'nxdomain', 'b', 0);
  t.equal(big.check('2001:db8::1', 'error', '', 0), 'send');
  // A random-name flood cannot grow memory: a million distinct keys, the same table.
  const flood = new ResponseRateLimiter(settings({ responsesPerSecond: 2, tableSize: 1024 }), 3);
  const before = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 200_000; i++) flood.check('192.0.2.1', 'answer', `r${i}`, i);
  t.ok(process.memoryUsage().arrayBuffers - before < 1 << 20, 'no per-key allocation that survives');
});

t.test('settings are checked', async (t) => {
  const bad: [Partial<RrlSettings>, keyof RrlSettings][] = [
    [{ responsesPerSecond: -1 }, 'responsesPerSecond'],
    [{ responsesPerSecond: 1.5 }, 'responsesPerSecond'],
    [{ nxdomainsPerSecond: -2 }, 'nxdomainsPerSecond'],
    [{ slip: 11 }, 'slip'],
    [{ windowS: 0 }, 'windowS'],
    [{ windowS: 3601 }, 'windowS'],
    [{ ipv4Prefix: 33 }, 'ipv4Prefix'],
    [{ ipv6Prefix: -1 }, 'ipv6Prefix'],
    [{ tableSize: 0 }, 'tableSize'],
    [{ tableSize: 2 ** 23 }, 'tableSize'],
  ];
  for (const [over, key] of bad) {
    t.throws(() => new ResponseRateLimiter(settings(over)), RrlSettingsError, `${key}: ${JSON.stringify(over)}`);
    try {
      new ResponseRateLimiter(settings(over));
    } catch (err) {
      t.equal((err as RrlSettingsError).setting, key, `${key} named in the error`);
    }
  }
  t.doesNotThrow(() => new ResponseRateLimiter(settings({ slip: 0, windowS: 1, ipv4Prefix: 0, ipv6Prefix: 128 })));
});

async function exampleSnapshot(): Promise<Snapshot> {
  const { config } = await loadConfig(new URL('../zones/examples/vigil.yaml', import.meta.url).pathname);
  return buildSnapshot(config);
}

t.test('classification of real answers from the example zones', async (t) => {
  const snap = await exampleSnapshot();
  const view = snap.views[0]!;
  const cls = (name: string, type: number, qclass = 1): ReturnType<typeof classifyAnswer> => {
    const q = parseName(name);
    return classifyAnswer(resolve(view, q, type, qclass), q, type);
  };
  const zone = parseName('example.test.');
  t.same(cls('www.example.test.', TYPE.A), { kind: 'answer', key: parseName('www.example.test.') + '\x01' }, 'answer: name and type');
  t.not(cls('www.example.test.', TYPE.AAAA).key, cls('www.example.test.', TYPE.A).key, 'another type, another flow');
  t.same(cls('shop.example.test.', TYPE.A).key, parseName('shop.example.test.') + '\x01', 'a CNAME chain counts for the name asked');
  const w1 = cls('one.apps.example.test.', TYPE.A);
  t.same(w1, { kind: 'answer', key: parseName('*.apps.example.test.') + '\x01' }, 'a wildcard answer counts for the wildcard');
  t.same(cls('two.apps.example.test.', TYPE.A), w1, 'so random names under it are one flow');
  t.same(cls('nope.example.test.', TYPE.A), { kind: 'nxdomain', key: zone }, 'NXDOMAIN: the zone');
  t.same(cls('other.nope.example.test.', TYPE.MX), { kind: 'nxdomain', key: zone }, 'whatever the name and type');
  t.same(cls('www.example.test.', TYPE.MX), { kind: 'nodata', key: parseName('www.example.test.') }, 'NODATA: the name');
  t.same(cls('www.example.test.', TYPE.TXT), cls('www.example.test.', TYPE.MX), 'whatever the type');
  t.same(cls('x.txt-only.example.test.', TYPE.A), { kind: 'nodata', key: zone }, 'NODATA from a wildcard: the zone');
  t.same(cls('host.sub.example.test.', TYPE.A), { kind: 'answer', key: parseName('sub.example.test.') }, 'referral: the delegation point');
  t.same(cls('a.b.sub.example.test.', TYPE.AAAA), cls('host.sub.example.test.', TYPE.A), 'whatever below it');
  t.same(cls('example.org.', TYPE.A), ERROR_CLASS, 'REFUSED is an error');
  t.same(cls('www.example.test.', TYPE.A, 4), ERROR_CLASS, 'so is a class we do not serve');
});

t.test('slipResponse: header and question, TC, OPT kept, nothing else', async (t) => {
  const snap = await exampleSnapshot();
  const answer = (q: Buffer, transport: 'udp' | 'tcp' = 'udp'): Buffer => respond(q, q.length, snap, transport, '192.0.2.1')!;

  const mxQuery = encodeQuery({ qname: 'Example.TEST', qtype: 'MX', id: 0x7777, rd: true, edns: { udpPayload: 1232, do: true } });
  const full = answer(mxQuery);
  const fullP = dnsPacket.decode(full);
  t.ok((fullP.answers?.length ?? 0) > 0 && (fullP.additionals?.length ?? 0) > 1, 'the full answer has records (so removing them is tested)');
  const slip = slipResponse(full);
  const p = dnsPacket.decode(slip);
  t.equal(p.id, 0x7777, 'ID');
  t.equal(p.flag_qr, true, 'QR');
  t.equal(p.flag_tc, true, 'TC set');
  t.equal(p.flag_aa, true, 'AA kept');
  t.equal(p.flag_rd, true, 'RD kept');
  t.equal(slip[3]! & 0x0f, 0, 'NOERROR');
  t.same(p.questions, [{ name: 'Example.TEST', type: 'MX', class: 'IN' }], 'question as asked, letter case included');
  t.same(p.answers, [], 'no answers');
  t.same(p.authorities, [], 'no authority');
  t.same(p.additionals?.map((a) => a.type), ['OPT'], 'only the OPT');
  const opt = p.additionals?.[0] as dnsPacket.OptAnswer;
  t.equal(opt.udpPayloadSize, 1232);
  t.equal(opt.flag_do, true, 'DO kept');
  t.ok(slip.length <= mxQuery.length, `no amplification: ${slip.length} octets for a ${mxQuery.length}-octet query`);

  const nx = slipResponse(answer(encodeQuery({ qname: 'nope.example.test', qtype: 'A', id: 1 })));
  const nxP = dnsPacket.decode(nx);
  t.equal(nx[3]! & 0x0f, 3, 'NXDOMAIN kept');
  t.equal(nxP.flag_tc, true);
  t.same(nxP.additionals, [], 'no OPT when the query had none');
  t.equal(nx.readUInt16BE(10), 0, 'ARCOUNT 0');

  // A FORMERR without a question (QDCOUNT 0) slips as a bare header.
  const noQuestion = Buffer.from([0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const formerr = slipResponse(answer(noQuestion));
  t.equal(formerr.length, 12);
  t.equal(formerr[2]! & 0x82, 0x82, 'QR and TC');
  t.equal(formerr[3]! & 0x0f, 1, 'FORMERR kept');

  // Garbage in, bounded garbage out: never throws, never longer than its input.
  for (const junk of [Buffer.alloc(5), Buffer.from([0, 1, 0x80, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0]), Buffer.alloc(40, 0xff)]) {
    const s = slipResponse(junk);
    t.ok(s.length <= junk.length, `${junk.length}-octet junk gives ${s.length} octets`);
  }
});

/**
 * A loopback server answering with respond(): over UDP every response goes
 * through the limiter (slip 1, rate 1: the first answer, then only slips),
 * over TCP everything is answered. Both on one port, like Vigil's listeners.
 */
async function limitedServer(snap: Snapshot): Promise<{ port: number; tcpQueries: () => number; close(): Promise<void> }> {
  const rrl = new ResponseRateLimiter(settings({ responsesPerSecond: 1, slip: 1, windowS: 60 }));
  let tcpQueries = 0;
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
    const port = udp.address().port;
    const tcp = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('error', () => sock.destroy());
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          tcpQueries++;
          const out = respond(msg, msg.length, snap, 'tcp', sock.remoteAddress ?? '');
          if (out !== undefined) sock.write(Buffer.concat([Buffer.from([out.length >> 8, out.length & 255]), out]));
        }
      });
    });
    const ok = await new Promise<boolean>((r) => {
      tcp.once('error', () => r(false));
      tcp.listen(port, '127.0.0.1', () => r(true));
    });
    if (!ok) {
      udp.close();
      if (attempt < 10) continue;
      throw new Error('no port free for both UDP and TCP');
    }
    udp.on('message', (m, rinfo) => {
      const out = respond(m, m.length, snap, 'udp', rinfo.address);
      if (out === undefined) return;
      const key = (dnsPacket.decode(out).questions?.[0]?.name ?? '').toLowerCase();
      const action = rrl.check(rinfo.address, 'answer', key, Date.now());
      if (action === 'send') udp.send(out, rinfo.port, rinfo.address);
      else if (action === 'slip') udp.send(slipResponse(out), rinfo.port, rinfo.address);
    });
    return {
      port,
      tcpQueries: () => tcpQueries,
      close: async () => {
        await new Promise<void>((r) => udp.close(() => r()));
        await new Promise<void>((r) => tcp.close(() => r()));
      },
    };
  }
}

t.test('dig retries a slipped response over TCP and gets the full answer', async (t) => {
  const snap = await exampleSnapshot();
  const srv = await limitedServer(snap);
  t.teardown(() => srv.close());
  const dig = async (): Promise<string> =>
    (await run('dig', ['@127.0.0.1', '-p', String(srv.port), '+tries=1', '+time=3', 'api.example.test', 'A'])).stdout;
  const first = await dig();
  t.match(first, /SERVER: 127\.0\.0\.1#\d+\(127\.0\.0\.1\) \(UDP\)/, 'the first answer came over UDP');
  t.equal(srv.tcpQueries(), 0);
  const second = await dig();
  t.match(second, /Truncated, retrying in TCP mode/, 'dig saw TC=1');
  t.match(second, /\(TCP\)/, 'and asked again over TCP');
  t.equal(srv.tcpQueries(), 1, 'one TCP query reached the server');
  const addresses = second.split('\n').filter((l) => /^api\.example\.test\.\s+\d+\s+IN\s+A\s/.test(l)).length;
  t.equal(addresses, 3, 'with the whole answer');
});
