import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, relative } from 'node:path';
import { parseMasterFileCollect } from '../zones/masterfile.js';
import { compileConfig, compileServerSettings, compileZone, parseDuration, DEFAULTS } from '../zones/compile.js';
import type { ConfigError, RawConfig } from '../zones/config.js';
import type { ZoneRecord } from '../zones/record.js';
import { parseName } from '../server/wire/name.js';
import { TYPE } from '../server/wire/constants.js';

const here = dirname(fileURLToPath(import.meta.url));
const zonesDir = join(here, 'fixtures', 'config', 'zones');

function parseZone(text: string, origin: string, file: string): ZoneRecord[] {
  const r = parseMasterFileCollect(text, { origin: parseName(origin), file });
  if (r.errors.length) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.records;
}

function compileText(text: string, origin = 'example.test.', file = 'inline.zone') {
  return compileZone({
    origin: parseName(origin),
    records: parseZone(text, origin, file),
    source: file,
    declaredAt: { file: 'vigil.yaml', line: 3, column: 5, path: 'zones[0]' },
  });
}

/** Lines of a fixture carrying "; error: TEXT" or "; warning: TEXT" markers. */
function markers(text: string, kind: 'error' | 'warning'): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = [];
  text.split('\n').forEach((l, i) => {
    const m = new RegExp(`; ${kind}: (.*)$`).exec(l);
    if (m) out.push({ line: i + 1, text: m[1]!.trim() });
  });
  return out;
}

/** Each marker matches a problem at FILE:LINE with its text, and nothing else is reported. */
function checkMarkers(t: Test, problems: readonly ConfigError[], file: string, text: string, kind: 'error' | 'warning'): void {
  const expected = markers(text, kind);
  t.equal(problems.length, expected.length, `${kind} count in ${file}: ${problems.map((p) => p.message).join(' | ')}`);
  for (const m of expected) {
    const hit = problems.find((p) => p.message.startsWith(`${file}:${m.line}: `) && p.message.includes(m.text));
    t.ok(hit, `${kind} "${m.text}" at ${file}:${m.line}`);
    if (hit) {
      t.equal(hit.file, file);
      t.equal(hit.line, m.line);
    }
  }
}

const ruleFixtures: [string, string][] = [
  ['two-soa.zone', 'a.test.'],
  ['soa-not-apex.zone', 'a.test.'],
  ['no-ns.zone', 'a.test.'],
  ['cname-other.zone', 'a.test.'],
  ['cname-twice.zone', 'a.test.'],
  ['cname-apex.zone', 'a.test.'],
  ['out-of-zone.zone', 'a.test.'],
  ['missing-glue.zone', 'a.test.'],
  ['dname.zone', 'a.test.'],
];

for (const [name, origin] of ruleFixtures) {
  t.test(`rule fixture ${name}`, async (t) => {
    const path = join(zonesDir, name);
    const file = relative(process.cwd(), path);
    const text = readFileSync(path, 'utf8');
    const r = compileZone({ origin: parseName(origin), records: parseZone(text, origin, file), source: file, declaredAt: { file: 'cfg.yaml', line: 1 } });
    t.equal(r.value, undefined, 'zone refused');
    t.ok(markers(text, 'error').length > 0, 'fixture has markers');
    checkMarkers(t, r.errors, file, text, 'error');
  });
}

t.test('no SOA is reported where the zone is declared', async (t) => {
  const path = join(zonesDir, 'no-soa.zone');
  const r = compileZone({
    origin: parseName('a.test.'),
    records: parseZone(readFileSync(path, 'utf8'), 'a.test.', 'no-soa.zone'),
    source: 'no-soa.zone',
    declaredAt: { file: 'vigil.yaml', line: 7, column: 5, path: 'zones[2]' },
  });
  t.equal(r.value, undefined);
  t.equal(r.errors.length, 1);
  t.equal(r.errors[0]!.message, 'vigil.yaml:7:5: zones[2]: zone a.test. (no-soa.zone) has no SOA record at its apex');
});

t.test('warnings fixture loads, with each warning at its line', async (t) => {
  const path = join(zonesDir, 'warnings.zone');
  const file = relative(process.cwd(), path);
  const text = readFileSync(path, 'utf8');
  const r = compileZone({ origin: parseName('w.test.'), records: parseZone(text, 'w.test.', file), source: file, declaredAt: { file: 'cfg.yaml', line: 1 } });
  t.same(r.errors, []);
  checkMarkers(t, r.warnings, file, text, 'warning');
  const zone = r.value!;
  // Occluded data and glue are kept; only serving decides what is visible.
  t.ok(zone.nodes.get(parseName('www.sub.w.test.'))?.rrsets.get(TYPE.A));
  t.ok(zone.nodes.get(parseName('sub.w.test.'))?.rrsets.get(TYPE.TXT));
  t.ok(zone.nodes.get(parseName('sub.w.test.'))?.isCut);
  // Duplicate merged; the last differing TTL wins, as in Knot DNS.
  const api = zone.nodes.get(parseName('api.w.test.'))!.rrsets.get(TYPE.A)!;
  t.equal(api.rdatas.length, 2);
  t.equal(api.ttl, 300);
  t.same([...api.rdatas[0]!], [192, 0, 2, 10]);
  t.same([...api.rdatas[1]!], [192, 0, 2, 11]);
});

t.test('TTL mismatch: last record wins, one warning per differing record', async (t) => {
  const r = compileText(`$TTL 300
@ SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
ns1 A 192.0.2.1
x 300 A 192.0.2.10
x 7200 A 192.0.2.11
x 100 A 192.0.2.12
`);
  const x = r.value!.nodes.get(parseName('x.example.test.'))!.rrsets.get(TYPE.A)!;
  t.equal(x.ttl, 100);
  t.equal(x.rdatas.length, 3);
  t.equal(r.warnings.length, 2);
  t.match(r.warnings[0]!.message, /^inline\.zone:6: x\.example\.test\. A: TTL 7200 differs from 300/);
  t.match(r.warnings[1]!.message, /^inline\.zone:7: .*TTL 100 differs from 7200/);
});

t.test('nodes, empty non-terminals, cuts and negative TTL', async (t) => {
  const r = compileText(`$TTL 300
@ 3600 SOA ns1 hostmaster 1 7200 3600 1209600 600
@ NS ns1
ns1 A 192.0.2.1
a.b.deep A 192.0.2.2
*.apps A 192.0.2.3
sub NS ns.sub
ns.sub A 192.0.2.4
`);
  t.same(r.errors, []);
  const z = r.value!;
  t.equal(z.origin, parseName('example.test.'));
  t.equal(z.negativeTtl, 600);
  t.equal(z.soa.ttl, 3600);
  t.equal(z.soa.type, TYPE.SOA);
  t.equal(z.source, 'inline.zone');
  for (const ent of ['deep.example.test.', 'b.deep.example.test.', 'apps.example.test.']) {
    const n = z.nodes.get(parseName(ent));
    t.ok(n, `${ent} exists`);
    t.equal(n?.rrsets.size, 0, `${ent} is empty`);
    t.equal(n?.isCut, false);
  }
  t.equal(z.nodes.get(parseName('sub.example.test.'))?.isCut, true);
  t.equal(z.nodes.get(parseName('example.test.'))?.isCut, false, 'apex NS is not a cut');
  t.ok(z.nodes.get(parseName('*.apps.example.test.')));
  t.equal(z.nodes.size, 9);
  t.notOk(z.nodes.has(parseName('test.')), 'nothing above the apex');

  const low = compileText(`@ 300 SOA ns1 hostmaster 1 7200 3600 1209600 900
@ 300 NS ns1
ns1 300 A 192.0.2.1
`);
  t.equal(low.value!.negativeTtl, 300, 'SOA TTL lower than MINIMUM');
});

t.test('owner names are compared case-insensitively', async (t) => {
  const r = compileText(`$TTL 300
@ SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
NS1 A 192.0.2.1
WWW CNAME ns1
www A 192.0.2.9
`);
  t.equal(r.errors.length, 1);
  t.match(r.errors[0]!.message, /^inline\.zone:5: CNAME at www\.example\.test\. beside other data \(A at inline\.zone:6\)/);
});

t.test('an RRset keeps each record once, in file order, small or large', async (t) => {
  // Below 16 records duplicates are found by comparing bytes, from 16 on by a set: both paths.
  for (const distinct of [3, 15, 16, 40]) {
    const lines = ['$TTL 300', '@ SOA ns1 hostmaster 1 7200 3600 1209600 300', '@ NS ns1', 'ns1 A 192.0.2.1'];
    for (let i = 0; i < distinct; i++) {
      lines.push(`h A 10.0.0.${i}`);
      // Some at once, some again after the last distinct one.
      if (i % 2 === 0) lines.push(`h A 10.0.0.${i}`);
    }
    for (let i = 0; i < distinct; i += 3) lines.push(`h IN A 10.0.0.${i}`);
    const r = compileText(`${lines.join('\n')}\n`);
    t.same(r.errors, [], `${distinct}: no errors`);
    const rdatas = r.value!.nodes.get(parseName('h.example.test.'))!.rrsets.get(TYPE.A)!.rdatas;
    t.same(
      rdatas.map((rd) => [...rd].join('.')),
      Array.from({ length: distinct }, (_, i) => `10.0.0.${i}`),
      `${distinct} distinct records, each once, in the order first written`,
    );
  }
});

t.test('glue rules', async (t) => {
  // Out-of-bailiwick and sibling targets need no glue in this zone.
  const ok = compileText(`$TTL 300
@ SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
ns1 A 192.0.2.1
a NS ns.b
a NS ns.elsewhere.test.
b NS ns.b
ns.b AAAA 2001:db8::1
`);
  t.same(ok.errors, []);
  t.same(ok.warnings, [], 'glue below another cut is not occluded');
});

t.test('compileServerSettings defaults and conversions', async (t) => {
  const s = compileServerSettings({ zones: [] });
  t.same(s, {
    listen: [{ host: '127.0.0.1', port: 5353 }],
    udpPayload: DEFAULTS.udpPayload,
    tcp: { ...DEFAULTS.tcp },
  });
  t.notOk('chaos' in s, 'chaos absent unless configured');
  const s2 = compileServerSettings({
    listen: ['[2001:db8::1]:53', '0.0.0.0:53'],
    edns: { udp_payload: 4096 },
    tcp: { idle_timeout: '2m', max_connections: 5, max_connections_per_client: 2, max_buffered_bytes: 4096, max_queries_per_connection: 7 },
    chaos: { version: 'v1' },
    zones: [],
  });
  t.same(s2, {
    listen: [
      { host: '2001:db8::1', port: 53 },
      { host: '0.0.0.0', port: 53 },
    ],
    udpPayload: 4096,
    tcp: { idleTimeoutMs: 120_000, maxConnections: 5, maxConnectionsPerClient: 2, maxBufferedBytes: 4096, maxQueriesPerConnection: 7 },
    chaos: { version: 'v1' },
  });
});

t.test('parseDuration', async (t) => {
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('10s'), 10_000);
  t.equal(parseDuration('2m'), 120_000);
  t.equal(parseDuration('1h'), 3_600_000);
  t.equal(parseDuration('1.5s'), 1500);
  t.equal(parseDuration(3), 3000);
  t.equal(parseDuration(0.25), 250);
  t.throws(() => parseDuration('10'), RangeError);
});

t.test('compileConfig: zones by origin, duplicates, hash', async (t) => {
  const zoneText = `$TTL 300
@ SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
ns1 A 192.0.2.1
`;
  const raw: RawConfig = { zones: [{ origin: 'example.test.', file: 'a.zone' }, { origin: 'Other.Test', file: 'b.zone' }] };
  const load = (bytes: string, origin: string) => ({ records: parseZone(bytes, origin, 'x.zone'), source: 'x.zone', bytes: Buffer.from(bytes) });
  const inputs = { configBytes: Buffer.from('cfg'), zones: [load(zoneText, 'example.test.'), load(zoneText, 'other.test.')] };
  const r = compileConfig(raw, 'vigil.yaml', inputs);
  t.same(r.errors, []);
  const cfg = r.value!;
  t.equal(cfg.file, 'vigil.yaml');
  t.same([...cfg.zones.keys()], [parseName('example.test.'), parseName('other.test.')]);
  t.match(cfg.hash, /^[0-9a-f]{64}$/);
  t.equal(compileConfig(raw, 'vigil.yaml', inputs).value!.hash, cfg.hash, 'hash is deterministic');
  const changed = { ...inputs, zones: [inputs.zones[0]!, load(zoneText + '; comment\n', 'other.test.')] };
  t.not(compileConfig(raw, 'vigil.yaml', changed).value!.hash, cfg.hash, 'a zone file change changes the hash');
  t.not(compileConfig(raw, 'vigil.yaml', { ...inputs, configBytes: Buffer.from('cfg2') }).value!.hash, cfg.hash, 'a config change changes the hash');

  const dup: RawConfig = { zones: [{ origin: 'example.test.', file: 'a.zone' }, { origin: 'EXAMPLE.TEST', file: 'b.zone' }] };
  const locate = (path: readonly (string | number)[]) => ({ line: path[1] === 0 ? 2 : 4, column: 13 });
  const d = compileConfig(dup, 'vigil.yaml', { ...inputs, locate });
  t.equal(d.value, undefined);
  t.equal(d.errors.length, 1);
  t.equal(d.errors[0]!.message, 'vigil.yaml:4:13: zones[1].origin: zone example.test. is already defined by zones[0] (line 2)');
});

t.test('a compiled zone keeps its rdatas in shared slabs, byte for byte', async (t) => {
  const lines = ['$TTL 300', '@ SOA ns1 hostmaster 1 7200 3600 1209600 300', '@ NS ns1', 'ns1 A 192.0.2.1'];
  for (let i = 0; i < 5000; i++) lines.push(`h${i} A 10.0.${i >> 8}.${i & 255}`, `h${i} TXT "record ${i}"`);
  // One rdata above a quarter of a slab (16 KiB): it keeps a buffer of its own.
  lines.push(`big TXT ${Array.from({ length: 80 }, () => `"${'x'.repeat(250)}"`).join(' ')}`);
  const text = `${lines.join('\n')}\n`;
  const records = parseZone(text, 'slab.test.', 'slab.zone');
  const r = compileText(text, 'slab.test.', 'slab.zone');
  t.same(r.errors, []);
  const rdatas = [...r.value!.nodes.values()].flatMap((node) => [...node.rrsets.values()].flatMap((rr) => [...rr.rdatas]));
  t.equal(rdatas.length, records.length, 'every record kept');
  const buffers = new Set(rdatas.map((rd) => rd.buffer));
  t.ok(buffers.size <= 6, `${rdatas.length} rdatas in ${buffers.size} buffers`);
  const hex = (xs: readonly Uint8Array[]): string[] => xs.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('hex')).sort();
  t.same(hex(rdatas), hex(records.map((rec) => rec.rdata)), 'the bytes are the parsed ones');
  const big = rdatas.find((rd) => rd.byteLength > 16 * 1024)!;
  t.same([big.byteOffset, big.buffer.byteLength], [0, big.byteLength], 'the large rdata has a buffer of its own');

  // A small zone's slab is the size of its rdatas, not 64 KiB: a config may hold thousands of such zones.
  const small = compileText('$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.2\n', 'small.test.', 'small.zone');
  const smallRdatas = [...small.value!.nodes.values()].flatMap((node) => [...node.rrsets.values()].flatMap((rr) => [...rr.rdatas]));
  const smallBuffers = new Set(smallRdatas.map((rd) => rd.buffer));
  t.same(
    [smallBuffers.size, [...smallBuffers][0]!.byteLength],
    [1, smallRdatas.reduce((n, rd) => n + rd.byteLength, 0)],
    'a small zone: one buffer, exactly as large as its rdatas',
  );
});
