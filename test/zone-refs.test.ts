// server/cluster/zone-refs.ts: a config crosses to a worker with each zone's
// nodes only when that worker lacks them. Round trips go through v8's
// serializer, which is what node:cluster's 'advanced' IPC uses.
import t, { type Test } from 'tap';
import { deserialize, serialize } from 'node:v8';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../zones/load.js';
import { BadPackedNodes, ConfigReceiver, ConfigSender, MissingZoneNodes, packNodes, unpackNodes, type ConfigOnWire, type PackedNodes } from '../server/cluster/zone-refs.js';
import type { CompiledConfig } from '../zones/zone.js';
import { formatName, lowerKey, parseName } from '../server/wire/name.js';

const key = (name: string): string => lowerKey(parseName(name));

const dir = mkdtempSync(join(tmpdir(), 'vigil-zone-refs-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const zoneText = (origin: string, serial: number, addr: string): string =>
  `$ORIGIN ${origin}\n@ 300 IN SOA ns1 hostmaster ${serial} 7200 3600 1209600 300\n@ 300 NS ns1\nns1 300 A 127.0.0.1\nwww 300 A ${addr}\n`;

function write(files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
}

// Every zone is shared by both views, and the inside view has its own copy of a.test.'s file too (viewZones).
const configText = (zones: string[]): string =>
  `views:\n  - name: inside\n    match: ["10.0.0.0/8"]\n  - name: outside\nzones:\n${zones.map((z) => `  - origin: ${z}.test.\n    file: ${z}.zone\n`).join('')}  - origin: a.test.\n    file: a.zone\n    views: [inside]\n`;

const overIpc = (w: ConfigOnWire): ConfigOnWire => deserialize(serialize(w)) as ConfigOnWire;

/** Origins whose nodes travelled in this message. */
const shipped = (w: ConfigOnWire): string[] => [...w.zones, ...w.viewZones.flatMap(([, l]) => l)].filter(([, r]) => r.nodes !== undefined).map(([o]) => formatName(o)).sort();

function sameServing(t: Test, got: CompiledConfig, want: CompiledConfig, what: string): void {
  t.same([...got.zones.keys()], [...want.zones.keys()], `${what}: the same zones`);
  for (const [origin, zone] of want.zones) {
    const g = got.zones.get(origin)!;
    t.same(g.soa, zone.soa, `${what}: ${formatName(origin)} SOA`);
    t.same([...g.nodes.keys()].sort(), [...zone.nodes.keys()].sort(), `${what}: ${formatName(origin)} names`);
    const www = key(`www.${formatName(origin)}`);
    t.ok(zone.nodes.has(www), `${what}: ${formatName(origin)} has www`);
    t.same(g.nodes.get(www), zone.nodes.get(www), `${what}: ${formatName(origin)} www`);
  }
  t.same([...got.viewZones.keys()], [...want.viewZones.keys()], `${what}: views with their own zones`);
  for (const [view, zones] of want.viewZones) {
    for (const [origin, zone] of zones) t.same(got.viewZones.get(view)?.get(origin)?.soa, zone.soa, `${what}: ${view}'s own ${formatName(origin)}`);
  }
  t.same(got.views, want.views, `${what}: views`);
  t.equal(got.hash, want.hash, `${what}: hash`);
}

t.test('unchanged zones cross by reference, changed ones whole', async (t) => {
  write({ 'a.zone': zoneText('a.test.', 1, '192.0.2.1'), 'b.zone': zoneText('b.test.', 1, '192.0.2.2'), 'v.yaml': configText(['a', 'b']) });
  const file = join(dir, 'v.yaml');
  const sender = new ConfigSender();
  const receiver = new ConfigReceiver();

  const first = (await loadConfig(file)).config;
  const w1 = overIpc(sender.encode(first));
  t.same(shipped(w1), ['a.test.', 'a.test.', 'b.test.'], 'first config: every zone is sent whole (a twice: shared, and the inside view\'s own)');
  sameServing(t, receiver.decode(w1), first, 'first');

  // Only a.zone changes; the reload reuses b's compiled zone, so b goes as a reference.
  write({ 'a.zone': zoneText('a.test.', 2, '192.0.2.11') });
  const second = (await loadConfig(file, { previous: first })).config;
  t.equal(second.zones.get(key('b.test.'))!.nodes, first.zones.get(key('b.test.'))!.nodes, 'the loader reused b');
  const w2 = overIpc(sender.encode(second));
  t.same(shipped(w2), ['a.test.', 'a.test.'], 'second config: only the changed zone is sent whole');
  const got2 = receiver.decode(w2);
  sameServing(t, got2, second, 'second');
  t.same([...got2.zones.get(key('a.test.'))!.nodes.get(key('www.a.test.'))!.rrsets.get(1)!.rdatas[0]!], [192, 0, 2, 11], 'the changed zone has its new data');

  // b leaves, then comes back: the worker dropped it, so it must be sent whole again.
  write({ 'v.yaml': configText(['a']) });
  const third = (await loadConfig(file, { previous: second })).config;
  const w3 = overIpc(sender.encode(third));
  t.same(shipped(w3), [], 'third config: a is held, nothing is sent whole');
  sameServing(t, receiver.decode(w3), third, 'third');
  write({ 'v.yaml': configText(['a', 'b']) });
  const fourth = (await loadConfig(file, { previous: third })).config;
  const w4 = overIpc(sender.encode(fourth));
  t.same(shipped(w4), ['b.test.'], 'fourth config: b, dropped by the worker, is sent whole again');
  sameServing(t, receiver.decode(w4), fourth, 'fourth');
});

t.test('a reference to nodes the worker lacks is an error, not an empty zone', async (t) => {
  write({ 'a.zone': zoneText('a.test.', 1, '192.0.2.1'), 'v.yaml': configText(['a']) });
  const config = (await loadConfig(join(dir, 'v.yaml'))).config;
  const sender = new ConfigSender();
  sender.encode(config); // the sender now believes its worker holds a's nodes
  const stale = overIpc(sender.encode(config));
  t.throws(() => new ConfigReceiver().decode(stale), MissingZoneNodes, 'a fresh receiver cannot resolve the reference');
});

t.test('packed nodes unpack to the same zone: cuts, glue, empty non-terminals, several rdatas', async (t) => {
  write({
    'p.zone': `$ORIGIN p.test.
@ 300 IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@ 300 NS ns1
@ 300 NS ns2.elsewhere.test.
ns1 300 A 127.0.0.1
a.b.c 60 A 192.0.2.1
a.b.c 60 A 192.0.2.2
a.b.c 60 AAAA 2001:db8::1
a.b.c 60 TXT "one" "two"
sub 300 NS ns.sub
ns.sub 300 A 192.0.2.53
mx 300 MX 10 a.b.c
`,
    'v.yaml': 'zones:\n  - origin: p.test.\n    file: p.zone\n',
  });
  const zone = (await loadConfig(join(dir, 'v.yaml'))).config.zones.get(key('p.test.'))!;
  const back = unpackNodes(deserialize(serialize(packNodes(zone.nodes))) as PackedNodes);
  t.same([...back.keys()], [...zone.nodes.keys()], 'the same names in the same order');
  for (const [owner, node] of zone.nodes) {
    const got = back.get(owner)!;
    t.equal(got.isCut, node.isCut, `${formatName(owner)}: isCut`);
    t.same([...got.rrsets.keys()], [...node.rrsets.keys()], `${formatName(owner)}: types`);
    for (const [type, rrset] of node.rrsets) {
      const g = got.rrsets.get(type)!;
      t.same([g.owner, g.type, g.ttl], [rrset.owner, rrset.type, rrset.ttl], `${formatName(owner)} ${type}: owner, type, ttl`);
      t.same(g.rdatas.map((r) => Buffer.from(r).toString('hex')), rrset.rdatas.map((r) => Buffer.from(r).toString('hex')), `${formatName(owner)} ${type}: rdatas`);
    }
  }
  t.ok(back.get(key('sub.p.test.'))!.isCut, 'the delegation is a cut');
  t.equal(back.get(key('b.c.p.test.'))!.rrsets.size, 0, 'an empty non-terminal stays empty');
  t.equal(back.get(key('a.b.c.p.test.'))!.rrsets.get(1)!.rdatas.length, 2, 'two A records');
  t.equal(packNodes(zone.nodes), packNodes(zone.nodes), 'packed once per node map');

  const bad = packNodes(zone.nodes);
  t.throws(() => unpackNodes({ ...bad, meta: bad.meta.subarray(0, bad.meta.length - 1) }), BadPackedNodes, 'a truncated pack is refused');
});
