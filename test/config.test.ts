import t from 'tap';
import { fileURLToPath } from 'node:url';
import { dirname, join, relative } from 'node:path';
import { ConfigError, ConfigErrors, parseConfig, formatPath } from '../zones/config.js';
import { formatErrors, loadConfig } from '../zones/load.js';
import { formatName, parseName } from '../server/wire/name.js';
import { TYPE, typeName } from '../server/wire/constants.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const fixtures = join(here, 'fixtures', 'config');
/** Fixture paths as tests pass them: relative to the working directory (the project root under tap). */
const fx = (...p: string[]): string => relative(process.cwd(), join(fixtures, ...p));

async function loadErrors(path: string): Promise<ConfigErrors> {
  try {
    await loadConfig(path);
  } catch (e) {
    if (e instanceof ConfigErrors) return e;
    throw e;
  }
  throw new Error(`${path} loaded without errors`);
}

function parseErrors(text: string, file = 'vigil.yaml'): ConfigErrors {
  try {
    parseConfig(text, file);
  } catch (e) {
    if (e instanceof ConfigErrors) return e;
    throw e;
  }
  throw new Error('parsed without errors');
}

t.test('the minimal config loads', async (t) => {
  const path = fx('minimal', 'vigil.yaml');
  const { config, warnings } = await loadConfig(path);
  t.same(warnings, []);
  t.equal(config.file, path);
  t.same(config.server.listen, [{ host: '127.0.0.1', port: 5353 }]);
  t.equal(config.server.udpPayload, 1232);
  t.equal(config.server.tcp.idleTimeoutMs, 10_000);
  t.equal(config.server.chaos, undefined);
  const zone = config.zones.get(parseName('example.test.'));
  t.ok(zone);
  t.equal(zone?.source, fx('minimal', 'example.test.zone'));
  t.ok(zone?.nodes.get(parseName('www.example.test.'))?.rrsets.get(TYPE.A));
  t.match(config.hash, /^[0-9a-f]{64}$/);
});

t.test('listen defaults when absent', async (t) => {
  const p = parseConfig('zones:\n  - origin: a.test.\n    file: a.zone\n', 'v.yaml');
  t.same(p.raw, { zones: [{ origin: 'a.test.', file: 'a.zone' }] });
  const dir = t.testdir({
    'v.yaml': 'zones:\n  - origin: a.test\n    records:\n      - "@ SOA ns hostmaster 1 2 3 4 5"\n      - "@ NS ns"\n      - ns A 192.0.2.1\n',
  });
  const { config } = await loadConfig(join(dir, 'v.yaml'));
  t.same(config.server.listen, [{ host: '127.0.0.1', port: 5353 }]);
  t.equal(config.zones.get(parseName('a.test.'))?.source, '<config>');
});

t.test('the examples load', async (t) => {
  const { config, warnings } = await loadConfig(relative(process.cwd(), join(root, 'zones', 'examples', 'vigil.yaml')));
  t.same(warnings, []);
  t.same([...config.zones.keys()].map(formatName), ['example.test.', 'internal.test.']);
  t.same(config.server.chaos, { version: 'vigil example', identity: 'example-1' });

  const z = config.zones.get(parseName('example.test.'))!;
  t.equal(z.negativeTtl, 600, 'min(SOA TTL 3600, MINIMUM 600)');
  const types = (name: string): string[] => [...(z.nodes.get(parseName(name))?.rrsets.keys() ?? [])].map(typeName);
  t.same(types('example.test.'), ['SOA', 'NS', 'MX', 'TXT', 'CAA']);
  t.same(types('api.example.test.'), ['A']);
  t.equal(z.nodes.get(parseName('api.example.test.'))!.rrsets.get(TYPE.A)!.rdatas.length, 3);
  t.same(types('_sip._tcp.example.test.'), ['SRV']);
  t.same(types('_tcp.example.test.'), [], 'empty non-terminal');
  t.same(types('deep.example.test.'), []);
  t.same(types('b.deep.example.test.'), []);
  t.same(types('*.apps.example.test.'), ['A']);
  t.same(types('*.txt-only.example.test.'), ['TXT']);
  t.same(types('shop.example.test.'), ['CNAME']);
  t.same(types('cdn.example.test.'), ['CNAME']);
  t.same(types('unknown.example.test.'), ['TYPE65534']);
  t.same(types('ptr.example.test.'), ['PTR']);
  t.equal(z.nodes.get(parseName('sub.example.test.'))?.isCut, true);
  t.same(types('ns.sub.example.test.'), ['A', 'AAAA'], 'glue kept');
  const dkim = z.nodes.get(parseName('dkim._domainkey.example.test.'))!.rrsets.get(TYPE.TXT)!.rdatas[0]!;
  t.ok(dkim.length > 256, 'TXT longer than one character-string');
  t.ok(dkim[0]! <= 255 && dkim[0]! + 1 < dkim.length, 'split into several strings');

  const internal = config.zones.get(parseName('internal.test.'))!;
  t.equal(internal.source, '<config>');
  t.equal(internal.negativeTtl, 300);
  t.equal(internal.nodes.get(parseName('db.internal.test.'))!.rrsets.get(TYPE.A)!.rdatas.length, 2);
  t.equal(internal.nodes.get(parseName('db.internal.test.'))!.rrsets.get(TYPE.A)!.ttl, 300, 'zone ttl applies');
  t.equal(internal.nodes.get(parseName('cache.internal.test.'))!.rrsets.get(TYPE.AAAA)!.ttl, 60);
});

t.test('YAML syntax errors name file, line and column', async (t) => {
  const path = fx('bad-yaml', 'syntax.yaml');
  const e = await loadErrors(path);
  t.equal(e.errors.length, 1);
  t.match(e.errors[0]!.message, new RegExp(`^${path}:5:1: YAML syntax: .*quote`));
  t.equal(e.errors[0]!.line, 5);

  const e2 = parseErrors('zones:\n  - origin: a.test.\n    origin: b.test.\n    file: x\n');
  t.match(e2.errors[0]!.message, /^vigil\.yaml:3:5: YAML syntax: Map keys must be unique/);
});

t.test('schema errors name file, line, column and path', async (t) => {
  const path = fx('bad-yaml', 'schema.yaml');
  const e = await loadErrors(path);
  t.same(
    e.errors.map((x) => x.message.slice(path.length)),
    [
      `:1:28: listen[1]: must be "ipv4:port" or "[ipv6]:port", e.g. "127.0.0.1:5353" or "[::1]:5353"`,
      ':3:16: edns.udp_payload: must be <= 4096',
      `:5:17: tcp.idle_timeout: must be a duration such as "500ms", "10s", "2m" or "1h", or a positive number of seconds`,
      ':6:3: tcp.max_conections: unknown key "max_conections" (expected one of: idle_timeout, max_connections, max_connections_per_client, max_buffered_bytes, max_queries_per_connection)',
      ':8:13: zones[0].origin: must be string',
      ':10:5: zones[1]: needs exactly one of "file" or "records"',
      ':13:5: zones[2]: missing required key "origin"',
      ':16:58: zones[3].records[0].comment: unknown key "comment" (expected one of: name, type, ttl, data)',
      `:17:9: zones[3].records[1]: must be a record line starting with its owner name ("@" for the apex); directives such as $TTL are not allowed here`,
      ':18:1: probes: unknown key "probes" (expected one of: listen, server, edns, tcp, chaos, rate_limit, cookies, admin, views, zones, services, metrics, node, replication, log)',
    ],
  );
  const first = e.errors[0]!;
  t.ok(first instanceof ConfigError);
  t.equal(first.file, path);
  t.equal(first.line, 1);
  t.equal(first.column, 28);
  t.equal(first.path, 'listen[1]');
});

t.test('rules beyond the schema', async (t) => {
  const e = parseErrors(`listen: ["[::1]:70000", "1.2.3:53", "[fe80::zz]:53"]
zones:
  - origin: a..test
    file: a.zone
  - origin: ${'x'.repeat(64)}.test
    file: b.zone
`);
  t.same(
    e.errors.map((x) => x.message),
    [
      'vigil.yaml:1:10: listen[0]: port 70000 is out of range (0..65535)',
      'vigil.yaml:1:25: listen[1]: "1.2.3" is not an IP address',
      'vigil.yaml:1:37: listen[2]: must be "ipv4:port" or "[ipv6]:port", e.g. "127.0.0.1:5353" or "[::1]:5353"',
      'vigil.yaml:3:13: zones[0].origin: bad zone name: empty label in name "a..test."',
      `vigil.yaml:5:13: zones[1].origin: bad zone name: label longer than 63 octets in name "${'x'.repeat(64)}.test."`,
    ],
  );
});

t.test('a missing zone file names the config line and the missing path', async (t) => {
  const path = fx('bad-yaml', 'missing-file.yaml');
  const e = await loadErrors(path);
  t.equal(e.errors.length, 1);
  t.equal(e.errors[0]!.message, `${path}:5:5: zones[1].file: cannot read zone file ${fx('bad-yaml', 'no', 'such', 'missing.test.zone')}: no such file`);
});

t.test('a missing config file', async (t) => {
  const e = await loadErrors(fx('nope.yaml'));
  t.equal(e.errors[0]!.message, `${fx('nope.yaml')}: cannot read configuration file: no such file`);
  t.equal(e.errors[0]!.line, 0);
});

t.test('two zones with one origin', async (t) => {
  const path = fx('bad-yaml', 'duplicate.yaml');
  const e = await loadErrors(path);
  t.same(
    e.errors.map((x) => x.message),
    [`${path}:4:13: zones[1].origin: zone example.test. is already defined by zones[0] (line 2)`],
  );
});

t.test('errors in several zone files and in config records are all reported', async (t) => {
  const cfg = fx('two-bad', 'vigil.yaml');
  const zones = (f: string): string => fx('zones', f);
  const e = await loadErrors(cfg);
  t.same(
    e.errors.map((x) => x.message.replace(/ \(.*$|: .*$/, '')),
    [
      `${cfg}:8:5`,
      `${cfg}:17`,
      `${cfg}:22`,
      `${cfg}:23`,
      `${zones('cname-twice.zone')}:6`,
      `${zones('missing-glue.zone')}:5`,
      `${zones('missing-glue.zone')}:7`,
      `${zones('syntax.zone')}:4`,
      `${zones('syntax.zone')}:5`,
    ],
  );
  const text = e.errors.map((x) => x.message);
  t.match(text[0], 'zones[2]: zone c.test. (' + zones('no-soa.zone') + ') has no SOA record at its apex');
  t.match(text[1], /CNAME at www\.e\.test\. beside other data \(TXT at .*vigil\.yaml:18\)/);
  t.match(text[2], 'zones[5].records[1]: A: bad address "192.0.2.500"');
  t.match(text[3], 'zones[5].records[2]: unknown record type "NOPE"');
  t.match(text[4], 'second CNAME at www.a.test.');
  t.match(text[5], 'missing glue: NS target ns.sub.b.test.');
  t.match(text[6], 'missing glue: NS target deeper.b.test.');
  t.match(e.message, /^9 configuration errors:\n/);
  t.equal(formatErrors(e), e.message);
});

t.test('zone file paths resolve against the config file directory', async (t) => {
  const rel = fx('nested', 'conf', 'vigil.yaml');
  const a = await loadConfig(rel);
  const zone = a.config.zones.get(parseName('nested.test.'))!;
  t.equal(zone.source, fx('nested', 'zones', 'nested.test.zone'));
  t.equal(zone.nodes.get(parseName('ns1.nested.test.'))!.rrsets.get(TYPE.A)!.ttl, 3600, 'zone ttl "1h" is the default TTL');
  t.equal(zone.nodes.get(parseName('www.nested.test.'))!.rrsets.get(TYPE.A)!.ttl, 60);
  t.same(a.config.server.listen, [
    { host: '::1', port: 0 },
    { host: '127.0.0.1', port: 0 },
  ]);
  t.equal(a.config.server.tcp.idleTimeoutMs, 1500);

  const abs = await loadConfig(join(fixtures, 'nested', 'conf', 'vigil.yaml'));
  t.equal(abs.config.zones.get(parseName('nested.test.'))!.source, join(fixtures, 'nested', 'zones', 'nested.test.zone'));
  t.equal(abs.config.hash, a.config.hash, 'same bytes, same hash');

  const cwd = process.cwd();
  process.chdir(join(fixtures, 'nested'));
  t.teardown(() => process.chdir(cwd));
  const fromElsewhere = await loadConfig('conf/vigil.yaml');
  t.equal(fromElsewhere.config.zones.get(parseName('nested.test.'))!.source, join('zones', 'nested.test.zone'));
});

const GOOD_RECORDS_ZONE = `  - origin: r.test.
    ttl: 120
    records:
      - |
        @ 3600 SOA ns1 hostmaster (
            1 7200 3600 1209600 300 )
      - "@ NS ns1"
      - { name: ns1, type: A, data: 192.0.2.1 }
      - name: "@"
        type: MX
        ttl: 1h
        data: 10 mail.elsewhere.test.
      - { name: txt, type: TXT, data: '"two" "strings"' }
`;

t.test('records in the config: both forms, TTLs, block scalars', async (t) => {
  const dir = t.testdir({ 'v.yaml': `zones:\n${GOOD_RECORDS_ZONE}` });
  const ok = await loadConfig(join(dir, 'v.yaml'));
  const z = ok.config.zones.get(parseName('r.test.'))!;
  t.equal(z.nodes.get(parseName('ns1.r.test.'))!.rrsets.get(TYPE.A)!.ttl, 120, 'zone ttl');
  t.equal(z.nodes.get(parseName('r.test.'))!.rrsets.get(TYPE.MX)!.ttl, 3600, 'record ttl "1h"');
  t.same([...z.nodes.get(parseName('txt.r.test.'))!.rrsets.get(TYPE.TXT)!.rdatas[0]!], [3, ...Buffer.from('two'), 7, ...Buffer.from('strings')]);
  t.equal(z.negativeTtl, 300);
});

t.test('records in the config: errors point at the line inside a block scalar', async (t) => {
  const dir = t.testdir({
    'v.yaml': `zones:
${GOOD_RECORDS_ZONE}  - origin: bad.test.
    records:
      - |
        @ 3600 SOA ns1 hostmaster 1 7200 3600 1209600 300

        www A 192.0.2.999
`,
  });
  const file = join(dir, 'v.yaml');
  const e = await loadErrors(file);
  t.same(
    e.errors.map((x) => x.message),
    [`${file}:20: zones[1].records[0]: A: bad address "192.0.2.999": not a dotted-quad IPv4 address`],
  );
});

t.test('formatErrors and formatPath', async (t) => {
  t.equal(formatPath(['zones', 0, 'records', 3]), 'zones[0].records[3]');
  t.equal(formatPath(['a b']), '["a b"]');
  const one = new ConfigError('boom', { file: 'f.yaml', line: 2, column: 3, path: 'x' });
  t.equal(one.message, 'f.yaml:2:3: x: boom');
  t.equal(formatErrors(one), 'f.yaml:2:3: x: boom');
  t.equal(formatErrors(new ConfigErrors([one])), '1 configuration error:\nf.yaml:2:3: x: boom');
  t.equal(formatErrors(new TypeError('bad')), 'TypeError: bad');
  t.equal(formatErrors('plain'), 'plain');
});
