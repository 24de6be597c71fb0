// Nothing a client sends may crash, stall or slow the server for others: after
// every malformed packet (UDP) or stream (TCP), a valid query must still get
// the right answer, checked with the independent dns-packet decoder.

import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { startVigilWithZones, SMALL_ZONE } from './helpers/vigil.js';
import { encodeQuery, sendUdp, sendTcp } from './helpers/dnsclient.js';

/** Deterministic PRNG so a failure reproduces (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const valid = encodeQuery({ qname: 'www.example.test', qtype: 'A', id: 0xbeef });

function hdr(id: number, flags: number, qd: number, an: number, ns: number, ar: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(flags, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
}

function handcrafted(): { name: string; bytes: Buffer; expect?: 'FORMERR' | 'NOTIMP' | 'none' }[] {
  const q = Buffer.from([3, 0x77, 0x77, 0x77, 7, ...Buffer.from('example'), 4, ...Buffer.from('test'), 0, 0, 1, 0, 1]);
  const cases: { name: string; bytes: Buffer; expect?: 'FORMERR' | 'NOTIMP' | 'none' }[] = [
    { name: 'empty', bytes: Buffer.alloc(0), expect: 'none' },
    { name: 'header only, qd=0', bytes: hdr(1, 0, 0, 0, 0, 0), expect: 'FORMERR' },
    { name: 'all counts 0xffff', bytes: Buffer.concat([hdr(2, 0, 0xffff, 0xffff, 0xffff, 0xffff), q]), expect: 'FORMERR' },
    { name: 'qd=1 but answer count lies', bytes: Buffer.concat([hdr(3, 0, 1, 0xffff, 0, 0), q]), expect: 'FORMERR' },
    { name: 'pointer loop in question', bytes: Buffer.concat([hdr(4, 0, 1, 0, 0, 0), Buffer.from([0xc0, 12, 0, 1, 0, 1])]), expect: 'FORMERR' },
    {
      name: 'pointer loop in additional',
      bytes: Buffer.concat([hdr(5, 0, 1, 0, 0, 1), q, Buffer.from([0xc0, 29, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4])]),
    },
    { name: 'label of 64', bytes: Buffer.concat([hdr(6, 0, 1, 0, 0, 0), Buffer.from([64]), Buffer.alloc(64, 0x61), Buffer.from([0, 0, 1, 0, 1])]), expect: 'FORMERR' },
    {
      name: 'name over 255 octets',
      bytes: Buffer.concat([hdr(7, 0, 1, 0, 0, 0), ...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x62)])), Buffer.from([0, 0, 1, 0, 1])]),
      expect: 'FORMERR',
    },
    { name: 'reserved label type 0x40', bytes: Buffer.concat([hdr(8, 0, 1, 0, 0, 0), Buffer.from([0x41, 0, 0, 1, 0, 1])]), expect: 'FORMERR' },
    { name: 'response bit set', bytes: Buffer.concat([hdr(9, 0x8000, 1, 0, 0, 0), q]), expect: 'none' },
    { name: 'opcode 15', bytes: Buffer.concat([hdr(10, 15 << 11, 1, 0, 0, 0), q]), expect: 'NOTIMP' },
    { name: 'question without type/class', bytes: Buffer.concat([hdr(11, 0, 1, 0, 0, 0), q.subarray(0, q.length - 4)]), expect: 'FORMERR' },
    {
      name: 'OPT with overrunning option',
      bytes: Buffer.concat([hdr(12, 0, 1, 0, 0, 1), q, Buffer.from([0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 4, 0, 10, 0xff, 0xff])]),
      expect: 'FORMERR',
    },
    { name: 'rdata length past the end', bytes: Buffer.concat([hdr(13, 0, 1, 0, 0, 1), q, Buffer.from([0, 0, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xff])]), expect: 'FORMERR' },
  ];
  return cases;
}

function checkValid(t: Test, raw: Buffer, what: string): void {
  const p = dnsPacket.decode(raw);
  t.equal(p.id, 0xbeef, `${what}: id`);
  t.same(
    p.answers?.map((a) => [a.name, a.type, 'data' in a ? a.data : undefined]),
    [['www.example.test', 'A', '192.0.2.10']],
    `${what}: answer`,
  );
}

/** Sends raw bytes over UDP and waits briefly for whatever comes back (possibly nothing). */
function udpExchange(port: number, bytes: Buffer, waitMs: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, waitMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(bytes, port, '127.0.0.1');
  });
}

t.test('malformed input over UDP and TCP never takes the server down', async (t) => {
  const vigil = await startVigilWithZones({ 'example.test.': SMALL_ZONE });
  t.teardown(() => vigil.close());
  const port = vigil.port;

  await t.test('handcrafted cases get the right rcode or silence', async (t) => {
    for (const c of handcrafted()) {
      const reply = await udpExchange(port, c.bytes, c.expect === 'none' ? 200 : 1000);
      if (c.expect === 'none') t.equal(reply, undefined, `${c.name}: no reply`);
      else if (c.expect !== undefined) {
        t.ok(reply, `${c.name}: a reply`);
        if (reply !== undefined) {
          t.equal(reply[3]! & 0x0f, c.expect === 'FORMERR' ? 1 : 4, `${c.name}: ${c.expect}`);
          t.equal(reply.readUInt16BE(0), c.bytes.readUInt16BE(0), `${c.name}: id echoed`);
          t.ok(reply[2]! & 0x80, `${c.name}: QR set`);
        }
      }
      checkValid(t, await sendUdp('127.0.0.1', port, valid, 1000), c.name);
    }
  });

  await t.test('random bytes and mutated queries over UDP', async (t) => {
    const rand = rng(20261123);
    const n = 1500;
    let replies = 0;
    for (let i = 0; i < n; i++) {
      let bytes: Buffer;
      if (i % 2 === 0) {
        bytes = Buffer.from(Array.from({ length: Math.floor(rand() * 300) }, () => Math.floor(rand() * 256)));
      } else {
        // Mutations of a valid query reach deeper into the parser than noise does.
        bytes = Buffer.from(encodeQuery({ qname: 'mail.example.test', qtype: 'MX', edns: { udpPayload: 1232 } }));
        const flips = 1 + Math.floor(rand() * 4);
        for (let f = 0; f < flips; f++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
        if (rand() < 0.3) bytes = bytes.subarray(0, Math.floor(rand() * bytes.length));
      }
      // Fire without waiting; the check below proves the server kept up.
      if ((await udpExchange(port, bytes, 20)) !== undefined) replies++;
      if (i % 100 === 99) checkValid(t, await sendUdp('127.0.0.1', port, valid, 1000), `after ${i + 1} random packets`);
    }
    t.ok(replies > 0, `the server answered some of them (${replies}/${n}) rather than going silent`);
    checkValid(t, await sendUdp('127.0.0.1', port, valid, 1000), 'after all random packets');
  });

  await t.test('broken TCP streams', async (t) => {
    const streams: { name: string; bytes: Buffer }[] = [
      { name: 'zero-length frame', bytes: Buffer.from([0, 0]) },
      { name: 'length with no body, then close', bytes: Buffer.from([0xff, 0xff, 1, 2, 3]) },
      { name: 'one byte', bytes: Buffer.from([7]) },
      { name: 'random frame', bytes: Buffer.concat([Buffer.from([0, 40]), Buffer.alloc(40, 0xc0)]) },
      ...handcrafted()
        .filter((c) => c.bytes.length > 0)
        .map((c) => ({ name: `framed ${c.name}`, bytes: Buffer.concat([Buffer.from([c.bytes.length >> 8, c.bytes.length & 255]), c.bytes]) })),
    ];
    for (const s of streams) {
      await new Promise<void>((resolve) => {
        const sock = net.connect({ host: '127.0.0.1', port }, () => {
          sock.end(s.bytes);
        });
        sock.on('error', () => resolve());
        sock.on('close', () => resolve());
        sock.resume();
        setTimeout(() => sock.destroy(), 300);
      });
      checkValid(t, await sendTcp('127.0.0.1', port, valid, 1000), `tcp after ${s.name}`);
    }
  });

  await t.test('a valid query split across TCP segments and pipelined with another', async (t) => {
    const q2 = encodeQuery({ qname: 'mail.example.test', qtype: 'MX', id: 0x1234 });
    const frame = (q: Buffer): Buffer => Buffer.concat([Buffer.from([q.length >> 8, q.length & 255]), q]);
    const all = Buffer.concat([frame(valid), frame(q2)]);
    const got = await new Promise<Buffer[]>((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      let buf = Buffer.alloc(0);
      const out: Buffer[] = [];
      sock.on('connect', async () => {
        // One byte at a time: the framing must survive any segmentation.
        for (const b of all) {
          sock.write(Buffer.from([b]));
          await new Promise((r) => setImmediate(r));
        }
      });
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (out.length === 2) {
          sock.destroy();
          resolve(out);
        }
      });
      sock.on('error', reject);
      setTimeout(() => reject(new Error('timeout')), 3000);
    });
    checkValid(t, got[0]!, 'first pipelined');
    const mx = dnsPacket.decode(got[1]!);
    t.equal(mx.id, 0x1234);
    t.same(mx.answers?.map((a) => a.type), ['MX']);
  });
});
