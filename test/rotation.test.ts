// Health-driven alternatives through the whole answering chain (config →
// policy → snapshot → respond), decoded with dns-packet: rotation advances per
// name, and weighted draws come out in the configured proportions.

import t from 'tap';
import dnsPacket from 'dns-packet';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../zones/load.js';
import { Engine } from '../server/engine.js';
import { respond } from '../server/answer/respond.js';
import { encodeQuery } from './helpers/dnsclient.js';

const CONFIG = `listen: ["127.0.0.1:0"]
zones:
  - origin: rot.test.
    records:
      - "@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300"
      - "@ NS ns1"
      - "ns1 A 192.0.2.53"
services:
  - name: pool.rot.test.
    policy: multivalue
    initial_state: up
    members:
      - { name: a, addresses: ["192.0.2.1", "2001:db8::1"] }
      - { name: b, addresses: ["192.0.2.2", "2001:db8::2"] }
  - name: split.rot.test.
    policy: weighted
    initial_state: up
    members:
      - { name: big, addresses: ["192.0.2.10"], weight: 3 }
      - { name: small, addresses: ["192.0.2.20"], weight: 1 }
`;

function firstAddress(raw: Buffer | undefined): string {
  const p = dnsPacket.decode(raw!);
  const a = p.answers?.[0];
  return a !== undefined && 'data' in a ? String(a.data) : '';
}

t.test('alternatives advance per name and come out in proportion', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-rot-'));
  writeFileSync(join(dir, 'vigil.yaml'), CONFIG);
  const { config } = await loadConfig(join(dir, 'vigil.yaml'));
  const engine = new Engine(config);
  t.teardown(async () => {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const snap = engine.current();
  const ask = (name: string, type: 'A' | 'AAAA'): Buffer | undefined =>
    respond(encodeQuery({ qname: name, qtype: type }), 0x7fffffff, snap, 'udp', '127.0.0.1');

  // A client alternating A and AAAA, as stub resolvers do: each type still rotates.
  const firstA: string[] = [];
  const firstAAAA: string[] = [];
  for (let i = 0; i < 6; i++) {
    firstA.push(firstAddress(ask('pool.rot.test', 'A')));
    firstAAAA.push(firstAddress(ask('pool.rot.test', 'AAAA')));
  }
  // Two members: with one turn counter shared by every name, the A queries would all land on even turns.
  t.same(new Set(firstA), new Set(['192.0.2.1', '192.0.2.2']), `A rotates: ${firstA.join(' ')}`);
  t.same(new Set(firstAAAA), new Set(['2001:db8::1', '2001:db8::2']), `AAAA rotates: ${firstAAAA.join(' ')}`);
  t.equal(dnsPacket.decode(ask('pool.rot.test', 'A')!).answers?.length, 2, 'every answer still carries both');

  const counts = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    ask('pool.rot.test', 'A'); // interleaved traffic for another name must not skew the draw
    const a = firstAddress(ask('split.rot.test', 'A'));
    counts.set(a, (counts.get(a) ?? 0) + 1);
  }
  t.same(Object.fromEntries(counts), { '192.0.2.10': 300, '192.0.2.20': 100 }, 'weights 3:1 give exactly 3:1');
});
