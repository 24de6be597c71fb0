import t from 'tap';
import dnsPacket from 'dns-packet';
import { parseQuery } from '../server/wire/query.js';
import { MessageWriter } from '../server/wire/writer.js';
import { parseName } from '../server/wire/name.js';
import { TYPE } from '../server/wire/constants.js';
import { encodeQuery } from './helpers/dnsclient.js';

function query(name: string, type: dnsPacket.RecordType = 'A', extra: Partial<dnsPacket.Packet> = {}): Buffer {
  return dnsPacket.encode({ type: 'query', id: 4660, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }], ...extra });
}

t.test('parses a plain query, lowercasing the name key', async (t) => {
  const q = parseQuery(query('WwW.Example.TEST'));
  if (q.kind !== 'query') throw new Error(q.kind);
  t.equal(q.id, 4660);
  t.equal(q.rd, true);
  t.equal(q.qname, parseName('www.example.test.'));
  t.equal(q.qtype, TYPE.A);
  t.equal(q.qclass, 1);
  t.equal(q.edns, undefined);
});

t.test('parses EDNS: payload floor of 512, version, DO', async (t) => {
  const withOpt = encodeQuery({ qname: 'a.test', qtype: 'AAAA', edns: { udpPayload: 100, version: 1, do: true } });
  const q = parseQuery(withOpt);
  if (q.kind !== 'query') throw new Error(q.kind);
  t.same(q.edns, { payload: 512, version: 1, dnssecOk: true });
});

t.test('rejects what must be rejected', async (t) => {
  t.equal(parseQuery(Buffer.alloc(11)).kind, 'drop', 'short packet');
  const resp = query('a.test');
  resp[2]! |= 0x80;
  t.equal(parseQuery(resp).kind, 'drop', 'QR=1');

  const two = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'a.test' }, { type: 'A', name: 'b.test' }] });
  const e2 = parseQuery(two);
  t.match(e2, { kind: 'error', rcode: 1, questionEnd: 0 }, 'QDCOUNT 2 is FORMERR');

  const loop = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1]);
  t.match(parseQuery(loop), { kind: 'error', rcode: 1 }, 'compression pointer in the question');

  const long = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64, ...Buffer.alloc(64, 0x61), 0, 0, 1, 0, 1]);
  t.match(parseQuery(long), { kind: 'error', rcode: 1 }, '64-octet label');

  const notify = query('a.test');
  notify[2] = (4 << 3) | (notify[2]! & 0x87);
  t.match(parseQuery(notify), { kind: 'error', rcode: 4 }, 'NOTIFY is NOTIMP');

  const oneOpt = encodeQuery({ qname: 'a.test', qtype: 'A', edns: {} });
  // Append a second copy of the 11-octet OPT record and bump ARCOUNT.
  const twoOpt = Buffer.concat([oneOpt, oneOpt.subarray(oneOpt.length - 11)]);
  twoOpt.writeUInt16BE(2, 10);
  t.match(parseQuery(twoOpt), { kind: 'error', rcode: 1, reason: /more than one OPT/ });

  const q = encodeQuery({ qname: 'a.test', qtype: 'A', edns: { options: [{ code: 10, data: Buffer.alloc(8) }] } });
  q.writeUInt16BE(200, q.length - 10); // option length now overruns the OPT rdata
  t.match(parseQuery(q), { kind: 'error', rcode: 1, reason: /option/ });

  const truncated = query('www.example.test');
  for (let n = 12; n < truncated.length; n++) {
    t.equal(parseQuery(truncated, n).kind, 'error', `cut at ${n} bytes`);
  }
});

t.test('writer compresses RFC 1035 names, never SRV targets, and dns-packet agrees', async (t) => {
  const w = new MessageWriter(512);
  w.reset();
  w.raw(Buffer.from([0, 7, 0x84, 0, 0, 0, 0, 3, 0, 0, 0, 0]));
  const owner = parseName('mail.example.test.');
  const mx = Buffer.concat([Buffer.from([0, 10]), Buffer.from(parseName('mx.example.test.'), 'latin1')]);
  const srv = Buffer.concat([Buffer.from([0, 1, 0, 2, 0, 80]), Buffer.from(parseName('mx.example.test.'), 'latin1')]);
  t.ok(w.record(owner, TYPE.MX, 1, 300, mx));
  t.ok(w.record(owner, TYPE.SRV, 1, 300, srv));
  t.ok(w.record(owner, TYPE.CNAME, 1, 300, Buffer.from(parseName('Mail.Example.TEST.'), 'latin1')));
  const msg = w.toBuffer();
  // The SRV target must be written out in full (RFC 2782): its 17 octets appear verbatim.
  t.ok(msg.includes(Buffer.from(parseName('mx.example.test.'), 'latin1')), 'SRV target uncompressed');
  const decoded = dnsPacket.decode(msg);
  t.same(
    decoded.answers?.map((a) => [a.name, a.type, 'data' in a ? a.data : undefined]),
    [
      ['mail.example.test', 'MX', { preference: 10, exchange: 'mx.example.test' }],
      ['mail.example.test', 'SRV', { priority: 1, weight: 2, port: 80, target: 'mx.example.test' }],
      ['mail.example.test', 'CNAME', 'mail.example.test'],
    ],
  );
  t.ok(msg.length < 100, `compressed message is small (${msg.length} octets)`);
});

t.test('writer rolls back a record that does not fit, and forgets its names', async (t) => {
  const w = new MessageWriter(512);
  w.reset(120);
  w.raw(Buffer.from([0, 7, 0x84, 0, 0, 0, 0, 2, 0, 0, 0, 0]));
  const first = parseName('a.test.');
  t.ok(w.record(first, TYPE.A, 1, 1, Buffer.from([1, 2, 3, 4])));
  const len = w.length;
  const long = parseName('a-much-longer-name.test.');
  t.notOk(w.record(long, TYPE.TXT, 1, 1, Buffer.alloc(100, 1)), 'too big');
  t.equal(w.length, len, 'length restored');
  // Had the rolled-back owner stayed in the compression table, this owner would
  // point at itself: a loop that a decoder rejects.
  t.ok(w.record(long, TYPE.A, 1, 1, Buffer.from([5, 6, 7, 8])));
  const decoded = dnsPacket.decode(w.toBuffer());
  t.same(decoded.answers?.map((a) => a.name), ['a.test', 'a-much-longer-name.test']);
});
