// zones/load.ts reuses the compiled zone of an unchanged file at a reload
// (loadConfig(path, { previous })): what counts as unchanged, and that a
// reused zone still reports problems with the file and line of its records.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, formatErrors } from '../zones/load.js';
import { lowerKey, parseName } from '../server/wire/name.js';
import type { CompiledConfig, Zone } from '../zones/zone.js';

const dir = mkdtempSync(join(tmpdir(), 'vigil-zone-reuse-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'v.yaml');
const origin = lowerKey(parseName('r.test.'));
const zoneOf = (c: CompiledConfig): Zone => c.zones.get(origin)!;

const ZONE = `$ORIGIN r.test.
@ 300 IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@ 300 NS ns1
ns1 300 A 127.0.0.1
www A 192.0.2.1
`;

function write(zone: string, config: string): void {
  writeFileSync(join(dir, 'r.zone'), zone);
  writeFileSync(file, config);
}

t.test('reused only when path, origin, default TTL and bytes are the same', async (t) => {
  const base = 'zones:\n  - origin: r.test.\n    file: r.zone\n    ttl: 600\n';
  write(ZONE, base);
  const first = (await loadConfig(file)).config;
  const again = (await loadConfig(file, { previous: first })).config;
  t.equal(zoneOf(again), zoneOf(first), 'nothing changed: the same compiled zone');
  t.equal(again.hash, first.hash, 'and the same config hash');
  t.not(zoneOf((await loadConfig(file)).config), zoneOf(first), 'without previous: compiled anew');

  // www has no TTL of its own, so the zone's ttl: changes its records.
  writeFileSync(file, base.replace('ttl: 600', 'ttl: 900'));
  const ttl = (await loadConfig(file, { previous: first })).config;
  t.not(zoneOf(ttl), zoneOf(first), 'another default TTL: compiled anew');
  t.equal(zoneOf(ttl).nodes.get(lowerKey(parseName('www.r.test.')))!.rrsets.get(1)!.ttl, 900, 'with the new default TTL');

  writeFileSync(file, base);
  writeFileSync(join(dir, 'r.zone'), `${ZONE}new A 192.0.2.2\n`);
  const edited = (await loadConfig(file, { previous: first })).config;
  t.not(zoneOf(edited), zoneOf(first), 'other bytes: compiled anew');
  t.ok(zoneOf(edited).nodes.has(lowerKey(parseName('new.r.test.'))), 'with the new record');
  t.not(edited.hash, first.hash, 'and another config hash');

  writeFileSync(join(dir, 'copy.zone'), `${ZONE}new A 192.0.2.2\n`);
  writeFileSync(file, base.replace('r.zone', 'copy.zone'));
  const moved = (await loadConfig(file, { previous: edited })).config;
  t.not(zoneOf(moved), zoneOf(edited), 'the same bytes from another file: compiled anew (Zone.source names the file)');
  t.equal(zoneOf(moved).source, join(dir, 'copy.zone'));
});

t.test('a reused zone still points at the line of a record a new service clashes with', async (t) => {
  write(ZONE, 'zones:\n  - origin: r.test.\n    file: r.zone\n');
  const first = (await loadConfig(file)).config;
  writeFileSync(
    file,
    'zones:\n  - origin: r.test.\n    file: r.zone\nservices:\n  - name: www.r.test.\n    members:\n      - { name: a, addresses: ["192.0.2.9"] }\n',
  );
  const err = await loadConfig(file, { previous: first }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err, 'the clash is refused');
  t.match(formatErrors(err), `www.r.test. has static A record at ${join(dir, 'r.zone')}:5 and is also a service at ${file}:5`, 'at the record\'s own line');
});
