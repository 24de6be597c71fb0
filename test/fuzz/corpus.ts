// The fuzzer's seeds: valid queries for what zones/examples/vigil.yaml
// serves, in every type we answer, with and without EDNS and its options
// (cookies among them), with the header bits clients set, in mixed letter
// case, and as TCP streams with one or several frames. Encoded by dns-packet
// (test/helpers/dnsclient.ts), not by our own code.

import { encodeQuery, type QuerySpec } from '../helpers/dnsclient.js';
import { frame, type FuzzInput } from './mutator.js';

/** (name, type) pairs that reach every answer path of the example zones and of fuzzSnapshot's big.test. */
const QUESTIONS: readonly [string, string | number, string?][] = [
  ['www.example.test', 'A'],
  ['www.example.test', 'AAAA'],
  ['api.example.test', 'A'],
  ['example.test', 'SOA'],
  ['example.test', 'NS'],
  ['example.test', 'MX'],
  ['example.test', 'TXT'],
  ['example.test', 'CAA'],
  ['example.test', 'ANY'],
  ['_sip._tcp.example.test', 'SRV'],
  ['dkim._domainkey.example.test', 'TXT'],
  ['shop.example.test', 'A'],
  ['shop.example.test', 'CNAME'],
  ['static.example.test', 'A'],
  ['cdn.example.test', 'AAAA'],
  ['x.apps.example.test', 'A'],
  ['x.apps.example.test', 'MX'],
  ['y.txt-only.example.test', 'TXT'],
  ['y.txt-only.example.test', 'A'],
  ['deep.example.test', 'A'],
  ['a.b.deep.example.test', 'A'],
  ['host.sub.example.test', 'A'],
  ['sub.example.test', 'NS'],
  ['sub.example.test', 'DS'],
  ['ptr.example.test', 'PTR'],
  ['unknown.example.test', 65534],
  ['nope.example.test', 'A'],
  ['www.example.test', 'MX'],
  ['example.test', 'AXFR'],
  ['example.test', 'IXFR'],
  ['db.internal.test', 'A'],
  ['dashboard.internal.test', 'A'],
  ['_metrics._tcp.internal.test', 'SRV'],
  ['cache.internal.test', 'AAAA'],
  ['version.bind', 'TXT', 'CH'],
  ['id.server', 'TXT', 'CH'],
  ['hostname.bind', 'ANY', 'CH'],
  ['example.org', 'A'],
  ['www.example.test', 'A', 'HS'],
  ['.', 'NS'],
  // big.test (added by fuzzSnapshot): answers that do not fit 512 octets.
  ['txt.big.test', 'TXT'],
  ['many.big.test', 'A'],
  ['many.big.test', 'AAAA'],
  ['many.big.test', 'ANY'],
  ['alias.big.test', 'AAAA'],
  ['host.deleg.big.test', 'A'],
  ['deleg.big.test', 'NS'],
];

const COOKIE_CLIENT = Buffer.from('2464c4abcf10c957', 'hex');
const COOKIE_FULL = Buffer.from('2464c4abcf10c957010000005cf79f111f8130c3eee29480', 'hex');

/** Letter case as a 0x20-randomising resolver sends it. */
function mixCase(name: string, n: number): string {
  return [...name].map((c, i) => ((n >> i % 7) & 1 ? c.toUpperCase() : c)).join('');
}

export function seedCorpus(): FuzzInput[] {
  const specs: QuerySpec[] = [];
  QUESTIONS.forEach(([qname, qtype, qclass], i) => {
    const base = { qname, qtype, qclass: qclass ?? 'IN', id: 0x1000 + i };
    specs.push({ ...base });
    specs.push({ ...base, id: 0x2000 + i, rd: true, edns: { udpPayload: 1232 } });
    if (i % 2 === 0) specs.push({ ...base, id: 0x3000 + i, qname: mixCase(qname, i + 5), cd: true, edns: { udpPayload: 4096, do: true } });
    if (i % 3 === 0) specs.push({ ...base, id: 0x4000 + i, edns: { udpPayload: 512, options: [{ code: 10, data: COOKIE_CLIENT }] } });
    if (i % 4 === 1) specs.push({ ...base, id: 0x5000 + i, edns: { options: [{ code: 10, data: COOKIE_FULL }, { code: 3, data: new Uint8Array(0) }] } });
  });
  // EDNS corners: a tiny payload, version 1, padding, client subnet, several options.
  specs.push({ qname: 'dkim._domainkey.example.test', qtype: 'TXT', id: 0x6001, edns: { udpPayload: 100 } });
  specs.push({ qname: 'example.test', qtype: 'MX', id: 0x6002, edns: { version: 1 } });
  specs.push({ qname: 'www.example.test', qtype: 'A', id: 0x6003, edns: { options: [{ code: 12, data: new Uint8Array(40) }] } });
  specs.push({
    qname: 'api.example.test',
    qtype: 'A',
    id: 0x6004,
    edns: { options: [{ code: 8, data: Uint8Array.from([0, 1, 24, 0, 192, 0, 2]) }, { code: 10, data: COOKIE_FULL }, { code: 15, data: new Uint8Array(2) }] },
  });
  specs.push({ qname: 'www.example.test', qtype: 'A', id: 0x6005, opcode: 4 });
  specs.push({ qname: 'www.example.test', qtype: 'A', id: 0x6006, opcode: 2, edns: {} });

  const seeds: FuzzInput[] = [];
  specs.forEach((s, i) => {
    const msg = encodeQuery(s);
    seeds.push({ data: msg, mode: i % 5 === 4 ? 'tcp' : 'udp' });
  });
  // TCP streams: one frame, and pipelines of two and three.
  const msgs = seeds.map((s) => s.data);
  for (let i = 0; i + 2 < msgs.length; i += 9) {
    seeds.push({ data: frame([msgs[i]!]), mode: 'stream' });
    seeds.push({ data: frame([msgs[i]!, msgs[i + 1]!]), mode: 'stream' });
    if (i % 2 === 0) seeds.push({ data: frame([msgs[i]!, msgs[i + 1]!, msgs[i + 2]!]), mode: 'stream' });
  }
  return seeds;
}
