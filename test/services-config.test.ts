import t, { type Test } from 'tap';
import { fileURLToPath } from 'node:url';
import { dirname, join, relative } from 'node:path';
import { readFileSync } from 'node:fs';
import { ConfigErrors, parseConfig } from '../zones/config.js';
import { loadConfig } from '../zones/load.js';
import { formatCidr, parseCidr, PROBE_DEFAULTS, SERVICE_DEFAULTS } from '../zones/services.js';
import type { CompiledService } from '../zones/service.js';
import { formatName, parseName } from '../server/wire/name.js';
import { TYPE } from '../server/wire/constants.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const fixtures = join(here, 'fixtures', 'services');
const fx = (...p: string[]): string => relative(process.cwd(), join(fixtures, ...p));
const example = relative(process.cwd(), join(root, 'zones', 'examples', 'failover.yaml'));
const ZONE = readFileSync(join(fixtures, 'example.test.zone'), 'utf8');

async function loadErrors(path: string): Promise<ConfigErrors> {
  try {
    await loadConfig(path);
  } catch (e) {
    if (e instanceof ConfigErrors) return e;
    throw e;
  }
  throw new Error(`${path} loaded without errors`);
}

/** "line:column path: detail" for each error of a config given as text. */
function errs(text: string): string[] {
  try {
    parseConfig(text, 'v.yaml');
  } catch (e) {
    if (e instanceof ConfigErrors) return e.errors.map((x) => `${x.line}:${x.column} ${x.path}: ${x.detail}`);
    throw e;
  }
  return [];
}

/** Lines of YAML, joined; the first is line 1, which keeps asserted line numbers readable. */
const yaml = (...lines: string[]): string => lines.join('\n') + '\n';

const ZONES = ['zones:', '  - origin: example.test.', '    file: example.test.zone'];

/** Loads a config written into a fresh directory beside the fixture zone. */
async function loadText(t: Test, text: string, files: Record<string, string> = {}) {
  const dir = t.testdir({ 'v.yaml': text, 'example.test.zone': ZONE, ...files });
  return loadConfig(join(dir, 'v.yaml'));
}
async function loadTextErrors(t: Test, text: string): Promise<string[]> {
  const dir = t.testdir({ 'v.yaml': text, 'example.test.zone': ZONE });
  const e = await loadErrors(join(dir, 'v.yaml'));
  return e.errors.map((x) => `${x.line} ${x.path}: ${x.detail.split(dir + '/').join('')}`);
}

const named = (c: { services: readonly CompiledService[] }, name: string, view?: string): CompiledService => {
  const s = c.services.find((x) => formatName(x.name) === name && (view === undefined || x.views.includes(view)));
  if (!s) throw new Error(`no service ${name}`);
  return s;
};

t.test('the example loads and compiles', async (t) => {
  const { config, warnings } = await loadConfig(example);
  t.same(warnings, []);
  t.same(config.operations.admin, { host: '127.0.0.1', port: 8053 });
  t.same(config.operations.metrics, { host: '127.0.0.1', port: 9153 });
  t.same(
    config.views.map((v) => ({ name: v.name, match: v.match.map(formatCidr), useEcs: v.useEcs })),
    [
      { name: 'internal', match: ['127.0.0.2/32', '::1/128'], useEcs: false },
      { name: 'external', match: [], useEcs: false },
    ],
  );
  t.same([...config.zones.keys()].map(formatName), ['failover.test.']);
  t.same([...config.viewZones.keys()], ['internal', 'external']);
  t.same([...config.viewZones.get('internal')!.keys()].map(formatName), ['corp.failover.test.']);
  t.equal(config.viewZones.get('external')!.size, 0);

  t.same(
    config.services.map((s) => [formatName(s.name), s.views, s.kind, s.policy, formatName(s.zone)]),
    [
      ['www.failover.test.', ['external'], 'address', 'failover', 'failover.test.'],
      ['www.failover.test.', ['internal'], 'address', 'failover', 'failover.test.'],
      ['pool.failover.test.', [], 'address', 'multivalue', 'failover.test.'],
      ['cdn.failover.test.', [], 'address', 'weighted', 'failover.test.'],
      ['_https._tcp.failover.test.', [], 'srv', 'multivalue', 'failover.test.'],
      ['failover.test.', [], 'mx', 'failover', 'failover.test.'],
    ],
  );

  const www = named(config, 'www.failover.test.', 'external');
  t.equal(www.name, parseName('www.failover.test.'), 'a name key');
  t.same(www.where, { file: example, line: 47 });
  t.same(
    { ...www, members: undefined, name: undefined, zone: undefined, where: undefined },
    {
      views: ['external'],
      kind: 'address',
      policy: 'failover',
      ttl: 60,
      degradedTtl: 10,
      settleMs: 60_000,
      minHealthy: 1,
      maxAnswers: 8,
      count: 1,
      whenAllDown: { mode: 'fail_open' },
      failback: { mode: 'ramp', percent: [10, 50, 100], stepMs: 20_000 },
      damping: { enabled: true, penalty: 1000, suppress: 2000, reuse: 750, halfLifeMs: 60_000 },
      initialState: 'unknown',
      members: undefined,
      name: undefined,
      zone: undefined,
      where: undefined,
    },
  );
  const [primary, secondary] = www.members;
  t.same({ ...primary, probeKey: undefined }, {
    id: 'www.failover.test./primary',
    name: 'primary',
    v4: ['127.0.0.1'],
    v6: [],
    priority: 1,
    weight: 1,
    probe: {
      type: 'http',
      params: { scheme: 'http', path: '/', host: 'www.failover.test', expect_status: [[200, 399]], port: 8081 },
      intervalMs: 500,
      timeoutMs: 200,
      recheckMs: 200,
      jitterMs: 50,
      rise: 3,
      fall: 5,
    },
    probeKey: undefined,
  });
  t.equal(secondary?.id, 'www.failover.test./secondary');
  t.equal(secondary?.priority, 2);
  t.same(secondary?.probe.params, { scheme: 'http', path: '/', host: 'www.failover.test', expect_status: [[200, 399]], port: 8082 }, 'member port over the service probe');
  t.match(primary?.probeKey, /^[0-9a-f]{64}$/);
  t.not(primary?.probeKey, secondary?.probeKey);

  const inside = named(config, 'www.failover.test.', 'internal');
  t.equal(inside.ttl, 300);
  t.same(inside.members.map((m) => [m.id, m.v4, m.probe.type, m.probe.params, m.probe.timeoutMs]), [['www.failover.test./intranet', ['127.0.0.10'], 'none', {}, 1000]]);

  const pool = named(config, 'pool.failover.test.');
  t.same(pool.whenAllDown, { mode: 'last_resort', v4: ['127.0.0.99'], v6: [] });
  t.same(
    pool.members.map((m) => [m.name, m.v4, m.v6, m.probe.type, m.probe.params, m.probe.timeoutMs]),
    [
      ['a', ['127.0.0.1'], [], 'tcp', { port: 8081 }, 200],
      ['b', ['127.0.0.3'], [], 'tcp', { port: 8082 }, 200],
      // Another type: the service's timing carries over, its tcp keys do not.
      ['c', ['127.0.0.4'], ['::1'], 'none', {}, 200],
    ],
  );

  const cdn = named(config, 'cdn.failover.test.');
  t.same(cdn.failback, { mode: 'immediate' });
  t.equal(cdn.damping.enabled, false);
  t.same(cdn.members.map((m) => m.weight), [3, 1]);
  const body = cdn.members[0]!.probe.params['expect_body'];
  t.ok(body instanceof RegExp, '"/regex/flags" is a regex');
  t.equal(String(body), '/directory listing/i');

  const srv = named(config, '_https._tcp.failover.test.');
  t.same(
    srv.members.map((m) => [m.srv && formatName(m.srv.target), m.srv?.port, m.priority, m.weight, m.probe.type]),
    [
      ['web1.failover.test.', 8081, 10, 60, 'tcp'],
      ['web2.failover.test.', 8082, 10, 40, 'tcp'],
    ],
  );
  const mx = named(config, 'failover.test.');
  t.same(mx.failback, { mode: 'manual' });
  t.same(
    mx.members.map((m) => [m.mx && formatName(m.mx.exchange), m.priority, m.v4, m.probe.type]),
    [
      ['mail1.failover.test.', 10, [], 'none'],
      ['mail2.failover.test.', 20, [], 'none'],
    ],
  );
});

t.test('probeKey: stable across loads, changed by what is probed', async (t) => {
  const text = readFileSync(example, 'utf8');
  const zone = readFileSync(join(root, 'zones', 'examples', 'failover.test.zone'), 'utf8');
  const keys = async (yamlText: string): Promise<Map<string, string>> => {
    const dir = t.testdir({ 'failover.yaml': yamlText, 'failover.test.zone': zone });
    const { config } = await loadConfig(join(dir, 'failover.yaml'));
    return new Map(config.services.flatMap((s) => s.members.map((m): [string, string] => [`${s.views.join()}|${m.id}`, m.probeKey])));
  };
  const a = (await loadConfig(example)).config;
  const b = (await loadConfig(example)).config;
  t.same(
    a.services.map((s) => s.members.map((m) => m.probeKey)),
    b.services.map((s) => s.members.map((m) => m.probeKey)),
  );
  const base = await keys(text);
  t.same(await keys(text), base, 'same text, same keys');

  const moved = await keys(text.replace('addresses: ["127.0.0.3"]\n        priority: 2', 'addresses: ["127.0.0.5"]\n        priority: 2'));
  t.not(moved.get('external|www.failover.test./secondary'), base.get('external|www.failover.test./secondary'), 'an address change');
  t.equal(moved.get('external|www.failover.test./primary'), base.get('external|www.failover.test./primary'), 'the other member keeps its key');

  const probed = await keys(text.replace('path: /\n      host: www.failover.test', 'path: /health\n      host: www.failover.test'));
  t.not(probed.get('external|www.failover.test./primary'), base.get('external|www.failover.test./primary'), 'a probe change');

  const reordered = await keys(text.replace('path: /\n      host: www.failover.test', 'host: www.failover.test\n      path: /'));
  t.same(reordered, base, 'key order in the YAML does not matter');

  const reweighted = await keys(text.replace('priority: 2\n        probe: { port: 8082 }', 'priority: 3\n        probe: { port: 8082 }'));
  t.same(reweighted, base, 'priority is not part of what is probed');
});

t.test('defaults of a minimal service', async (t) => {
  const { config } = await loadText(t, yaml(...ZONES, 'services:', '  - name: api.example.test', '    members:', '      - { name: one, addresses: ["192.0.2.7", "2001:DB8:0::7"] }'));
  const s = named(config, 'api.example.test.');
  t.same(s, {
    name: parseName('api.example.test.'),
    zone: parseName('example.test.'),
    views: [],
    kind: SERVICE_DEFAULTS.type,
    policy: SERVICE_DEFAULTS.policy,
    ttl: 60,
    degradedTtl: 10,
    settleMs: 60_000,
    minHealthy: 1,
    maxAnswers: 8,
    count: 1,
    whenAllDown: { mode: 'fail_open' },
    failback: { mode: 'ramp', percent: [10, 50, 100], stepMs: 20_000 },
    damping: { enabled: true, penalty: 1000, suppress: 2000, reuse: 750, halfLifeMs: 60_000 },
    initialState: 'unknown',
    members: [
      {
        id: 'api.example.test./one',
        name: 'one',
        v4: ['192.0.2.7'],
        v6: ['2001:db8::7'],
        priority: 1,
        weight: 1,
        probe: { type: 'none', params: {}, intervalMs: 500, timeoutMs: 1000, recheckMs: 200, jitterMs: 50, rise: 3, fall: 5 },
        probeKey: s.members[0]!.probeKey,
      },
    ],
    where: { file: s.where.file, line: 5 },
  });
  t.same(
    { type: PROBE_DEFAULTS.type, i: PROBE_DEFAULTS.intervalMs, t: PROBE_DEFAULTS.timeoutMs, r: PROBE_DEFAULTS.recheckMs },
    { type: 'none', i: 500, t: 1000, r: 200 },
  );
  t.same(config.views, []);
  t.same([...config.viewZones.keys()], []);
  t.equal(config.operations.admin, undefined);

  const low = await loadText(t, yaml(...ZONES, 'services:', '  - name: api.example.test', '    ttl: 5', '    members:', '      - { name: one, addresses: ["192.0.2.7"] }'));
  t.equal(named(low.config, 'api.example.test.').degradedTtl, 5, 'the default degraded_ttl never exceeds ttl');
});

t.test('probes: merge, per-type params, durations, matchers', async (t) => {
  const { config } = await loadText(
    t,
    yaml(
      ...ZONES,
      'services:',
      '  - name: api.example.test',
      '    ttl: 1h',
      '    degraded_ttl: 30s',
      '    settle: 0s',
      '    damping: { suppress: 3000, half_life: 2m }',
      '    probe: { type: https, port: 8443, servername: api.example.test, headers: { x-probe: vigil }, expect_status: [200, [300, 302]], tls_verify: false, interval: 2s, jitter: 0ms, rise: 2 }',
      '    members:',
      '      - { name: a, addresses: ["192.0.2.1"], probe: { path: /ready, expect_body: ok, fall: 9, timeout: 0.25 } }',
      '      - { name: b, addresses: ["192.0.2.2"], probe: { type: tcp, port: 25, expect: "/^220 /" } }',
      '      - { name: c, addresses: ["192.0.2.3"], probe: { type: dns, name: api.example.test, qtype: aaaa, expect_rcode: noerror, expect_answer: "2001:db8::1" } }',
    ),
  );
  const s = named(config, 'api.example.test.');
  t.equal(s.ttl, 3600);
  t.equal(s.degradedTtl, 30);
  t.equal(s.settleMs, 0);
  t.same(s.damping, { enabled: true, penalty: 1000, suppress: 3000, reuse: 750, halfLifeMs: 120_000 });
  const [a, b, c] = s.members;
  t.same(a?.probe, {
    type: 'https',
    params: {
      scheme: 'https',
      port: 8443,
      servername: 'api.example.test',
      headers: { 'x-probe': 'vigil' },
      expect_status: [200, [300, 302]],
      tls_verify: false,
      path: '/ready',
      expect_body: 'ok',
    },
    intervalMs: 2000,
    timeoutMs: 250,
    recheckMs: 200,
    jitterMs: 0,
    rise: 2,
    fall: 9,
  });
  t.equal(b?.probe.type, 'tcp');
  t.same(Object.keys(b?.probe.params ?? {}), ['port', 'expect'], 'https keys of the service do not carry over to another type');
  t.equal(String(b?.probe.params['expect']), '/^220 /');
  t.same([b?.probe.intervalMs, b?.probe.rise, b?.probe.jitterMs], [2000, 2, 0], 'timing does carry over');
  t.same(c?.probe.params, { name: 'api.example.test', qtype: 'AAAA', expect_rcode: 'NOERROR', expect_answer: '2001:db8::1' }, 'qtype and rcode upper-cased');
});

t.test('CIDR parsing', async (t) => {
  const c = (s: string): [number, number[], number] => {
    const x = parseCidr(s);
    return [x.family, [...x.bytes], x.prefix];
  };
  t.same(c('10.0.0.0/8'), [4, [10, 0, 0, 0], 8]);
  t.same(c('127.0.0.2'), [4, [127, 0, 0, 2], 32], 'a bare address is a /32');
  t.same(c('127.0.0.2/32'), [4, [127, 0, 0, 2], 32]);
  t.same(c('0.0.0.0/0'), [4, [0, 0, 0, 0], 0]);
  t.same(c('192.0.2.64/26'), [4, [192, 0, 2, 64], 26]);
  t.same(c('::1/128'), [6, [...Array<number>(15).fill(0), 1], 128]);
  t.same(c('::1'), [6, [...Array<number>(15).fill(0), 1], 128], 'a bare address is a /128');
  t.same(c('2001:DB8::/32'), [6, [0x20, 0x01, 0x0d, 0xb8, ...Array<number>(12).fill(0)], 32]);
  t.same(c('fe80::/10'), [6, [0xfe, 0x80, ...Array<number>(14).fill(0)], 10]);
  t.same(c('::/0'), [6, Array<number>(16).fill(0), 0]);
  t.equal(formatCidr(parseCidr('2001:db8:0:0:1::/80')), '2001:db8:0:0:1::/80');
  t.equal(formatCidr(parseCidr('2001:db8::/32')), '2001:db8::/32');

  t.throws(() => parseCidr('192.0.2.1/24'), { message: '192.0.2.1/24 has host bits set (the network is 192.0.2.0/24)' });
  t.doesNotThrow(() => parseCidr('10.0.0.128/25'));
  t.throws(() => parseCidr('10.0.0.129/25'), { message: /the network is 10\.0\.0\.128\/25/ });
  t.throws(() => parseCidr('2001:db8::1/64'), { message: '2001:db8::1/64 has host bits set (the network is 2001:db8::/64)' });
  t.throws(() => parseCidr('10.0.0.0/33'), { message: /bad prefix length "33" \(0\.\.32 for IPv4\)/ });
  t.throws(() => parseCidr('::/129'), { message: /bad prefix length "129" \(0\.\.128 for IPv6\)/ });
  t.throws(() => parseCidr('10.0.0.0/'), { message: /bad prefix length ""/ });
  t.throws(() => parseCidr('10.0.0/8'), { message: /"10\.0\.0" is not an IP address/ });
  t.throws(() => parseCidr('fe80::1%eth0/128'), { message: /is not an IP address/ });
  t.throws(() => parseCidr('example.test/8'), { message: /is not an IP address/ });
  t.throws(() => parseCidr('::ffff:10.0.0.0/104'), { message: /IPv4-mapped.*write "10\.0\.0\.0\/8"/ });
});

t.test('views: order, the default last, errors at their lines', async (t) => {
  const { config } = await loadConfig(fx('views.yaml'));
  t.same(
    config.views.map((v) => [v.name, v.match.map(formatCidr), v.useEcs]),
    [
      ['lab', ['192.0.2.0/26', '2001:db8:1::/48'], false],
      ['internal', ['10.0.0.0/8', '127.0.0.2/32', '::1/128'], false],
      ['external', [], false],
    ],
  );
  t.ok(config.views[1]!.match[0]!.bytes instanceof Uint8Array);

  t.same(
    errs(
      yaml(
        'views:',
        '  - name: everyone',
        '  - name: inside',
        '    match: ["10.0.0.1/8", "10.0.0.0/8", "not-an-ip", "2001:db8::1/32", "::1/200"]',
        '  - name: inside',
        '    match: ["192.0.2.0/24"]',
        '  - name: bad name',
        '    match: []',
        '  - { name: x, match: ["10.0.0.0/8"], colour: blue }',
        'zones: []',
      ),
    ),
    [
      '2:5 views[0]: view "everyone" has no "match", so it matches every client and must be the last view; views after it would never be used',
      '4:13 views[1].match[0]: 10.0.0.1/8 has host bits set (the network is 10.0.0.0/8)',
      '4:41 views[1].match[2]: "not-an-ip" is not a CIDR prefix: "not-an-ip" is not an IP address',
      '4:54 views[1].match[3]: 2001:db8::1/32 has host bits set (the network is 2001:db8::/32)',
      '4:72 views[1].match[4]: "::1/200" has a bad prefix length "200" (0..128 for IPv6)',
      '5:11 views[2].name: view "inside" is already defined by views[1]',
      '7:11 views[3].name: must be a view name: letters, digits, "_", "." and "-", starting with a letter or digit',
      '8:12 views[3].match: must NOT have fewer than 1 items',
      '9:39 views[4].colour: unknown key "colour" (expected one of: name, match, ecs)',
    ],
  );
  t.same(errs(yaml('views:', '  - name: a', '    match: ["10.0.0.0/8"]', '  - name: b', 'zones: []')), [], 'the default last is fine');
  t.same(errs(yaml('views:', '  - name: a', '    match: ["10.0.0.0/8"]', '  - name: b', '    match: ["::/0"]', 'zones: []')), [], 'no default at all is fine');
});

t.test('view zones', async (t) => {
  const { config } = await loadConfig(fx('views.yaml'));
  const shared = config.zones.get(parseName('example.test.'))!;
  const internal = config.viewZones.get('internal')!.get(parseName('example.test.'))!;
  t.ok(shared.nodes.get(parseName('www.example.test.'))?.rrsets.get(TYPE.A), 'the shared zone has static www');
  t.equal(internal.nodes.get(parseName('www.example.test.')), undefined, 'the view zone has not');
  t.equal(config.viewZones.get('lab')!.get(parseName('example.test.')), internal, 'one zone object for both of its views');
  t.equal(config.viewZones.get('external')!.size, 0);
  t.same(
    config.services.map((s) => [formatName(s.name), s.views]),
    [
      ['www.example.test.', ['internal']],
      ['www.example.test.', ['lab']],
      ['api.example.test.', []],
    ],
  );

  const views = ['views:', '  - name: in', '    match: ["10.0.0.0/8"]', '  - name: out'];
  // Overlapping views for one origin, and an unknown view.
  const e = await loadTextErrors(
    t,
    yaml(
      ...views,
      'zones:',
      '  - origin: example.test.',
      '    file: example.test.zone',
      '    views: [in]',
      '  - origin: example.test',
      '    file: example.test.zone',
      '    views: [out, in]',
      '  - origin: example.test.',
      '    file: example.test.zone',
      '    views: [out]',
    ),
  );
  t.same(e, ['9 zones[1].origin: zone example.test. is already defined for view "in" by zones[0] (line 6)']);
  t.same(errs(yaml(...views, 'zones:', '  - origin: a.test.', '    file: x', '    views: [in, elsewhere]')), [
    '8:17 zones[0].views[1]: unknown view "elsewhere" (declared views: in, out)',
  ]);
  t.same(errs(yaml('zones:', '  - origin: a.test.', '    file: x', '    views: [in]')), ['4:13 zones[0].views[0]: unknown view "in" (the configuration declares no views)']);
  t.same(errs(yaml(...views, 'zones:', '  - origin: a.test.', '    file: x', '    views: [in, in]')), ['8:12 zones[0].views: lists a view twice']);

  // A shared zone's static A clashes with a service only in the views that serve that zone:
  // in "in" the view zone replaces it.
  const clash = await loadTextErrors(
    t,
    yaml(
      ...views,
      'zones:',
      '  - origin: example.test.',
      '    file: example.test.zone',
      '  - origin: example.test.',
      '    views: [in]',
      '    records: ["@ SOA ns1 hostmaster 1 2 3 4 5", "@ NS ns1", "ns1 A 10.0.0.1"]',
      'services:',
      '  - name: www.example.test.', // 12
      '    members:',
      '      - { name: a, addresses: ["192.0.2.1"] }',
    ),
  );
  t.same(clash, [
    '12 services[0].name: www.example.test. has static A record at example.test.zone:8 and is also a service at v.yaml:12 (view "out")',
    '12 services[0].name: www.example.test. has static AAAA record at example.test.zone:9 and is also a service at v.yaml:12 (view "out")',
  ]);
  const ok = await loadText(
    t,
    yaml(
      ...views,
      'zones:',
      '  - origin: example.test.',
      '    file: example.test.zone',
      '  - origin: example.test.',
      '    views: [in]',
      '    records: ["@ SOA ns1 hostmaster 1 2 3 4 5", "@ NS ns1", "ns1 A 10.0.0.1"]',
      'services:',
      '  - name: www.example.test.',
      '    views: [in]',
      '    members:',
      '      - { name: a, addresses: ["192.0.2.1"] }',
    ),
  );
  t.same(ok.config.services.map((s) => [formatName(s.name), formatName(s.zone), s.views]), [['www.example.test.', 'example.test.', ['in']]]);
});

t.test('admin', async (t) => {
  const { config } = await loadText(t, yaml('admin:', '  listen: "[::1]:0"', ...ZONES));
  t.same(config.operations.admin, { host: '::1', port: 0 });
  t.equal(config.operations.adminToken, undefined);
  t.same(await loadTextErrors(t, yaml('admin:', '  listen: "192.0.2.1:8053"', ...ZONES)), [
    '2 admin.listen: the admin API listens on 192.0.2.1, off loopback: set admin.token_file or $VIGIL_ADMIN_TOKEN',
  ]);
  t.same(errs(yaml('admin:', '  listen: localhost:8053', '  token: x', 'zones: []')), [
    '2:11 admin.listen: must be "ipv4:port" or "[ipv6]:port", e.g. "127.0.0.1:5353" or "[::1]:5353"',
    '3:3 admin.token: unknown key "token" (expected one of: listen, token_file)',
  ]);
});

t.test('service rules checked with the config alone, each at its line', async (t) => {
  const V = ['views:', '  - name: in', '    match: ["10.0.0.0/8"]', '  - name: out', 'zones: []', 'services:'];
  t.same(
    errs(
      yaml(
        ...V, // 1-6
        '  - name: a.example.test.', // 7
        '    views: [in, ghost]', // 8
        '    ttl: 30', // 9
        '    degraded_ttl: 1m', // 10
        '    policy: weighted', // 11
        '    members:', // 12
        '      - { name: m, addresses: ["192.0.2.1", "192.0.2.1", "10.0.0"], weight: 0 }', // 13
        '      - { name: m, weight: 0, target: t.example.test }', // 14
        '      - name: v6', // 15
        '        weight: 0', // 16
        '        addresses: ["fe80::1%eth0", "2001:db8::1"]', // 17
      ),
    ),
    [
      '8:17 services[0].views[1]: unknown view "ghost" (declared views: in, out)',
      '10:19 services[0].degraded_ttl: degraded_ttl 60 is longer than ttl 30; it must be at most ttl',
      '13:7 services[0].members: the weighted policy needs at least one member with a weight above 0',
      '13:45 services[0].members[0].addresses[1]: "192.0.2.1" is listed twice (also at [0])',
      '13:58 services[0].members[0].addresses[2]: "10.0.0" is not an IP address',
      '14:9 services[0].members[1]: member "m" of an address service needs "addresses"',
      '14:17 services[0].members[1].name: member "m" is already defined by members[0] (line 13)',
      '14:31 services[0].members[1].target: "target" applies to srv services only (this service has type address)',
      '17:21 services[0].members[2].addresses[0]: "fe80::1%eth0" is not an IP address',
    ],
  );

  t.same(
    errs(
      yaml(
        ...V,
        '  - name: _x._tcp.example.test.', // 7
        '    type: srv', // 8
        '    members:', // 9
        '      - { name: a, target: t.example.test }', // 10
        '      - { name: b, port: 5, exchange: mx.example.test }', // 11
        '      - { name: c, target: t.example.test, port: 5, probe: { type: tcp, port: 5 } }', // 12
        '  - name: example.test.', // 13
        '    type: mx', // 14
        '    members:', // 15
        '      - { name: a, addresses: ["192.0.2.1"], target: x }', // 16
        '      - { name: b, exchange: "bad..name" }', // 17
      ),
    ),
    [
      '10:9 services[0].members[0]: member "a" of an srv service needs "port"',
      '11:9 services[0].members[1]: member "b" of an srv service needs "target"',
      '11:29 services[0].members[1].exchange: "exchange" applies to mx services only (this service has type srv)',
      '12:9 services[0].members[2]: member "c" has a tcp probe but no "addresses" to probe',
      '16:9 services[1].members[0]: member "a" of an mx service needs "exchange"',
      '16:46 services[1].members[0].target: "target" applies to srv services only (this service has type mx)',
      '17:30 services[1].members[1].exchange: bad name: empty label in name "bad..name."',
    ],
  );

  t.same(
    errs(
      yaml(
        ...V,
        '  - name: a.example.test.', // 7
        '    failback: { ramp: [50, 50, 90], step: 0s }', // 8
        '    damping: { reuse: 2500 }', // 9
        '    when_all_down: { last_resort: ["192.0.2.1", "nope"] }', // 10
        '    members: [{ name: m, addresses: ["192.0.2.1"] }]', // 11
        '  - name: b.example.test.', // 12
        '    failback: { ramp: [10, 50] }', // 13
        '    damping: { suppress: 700 }', // 14
        '    when_all_down: last_resort', // 15
        '    members: [{ name: m, addresses: ["192.0.2.1"] }]', // 16
        '  - name: "*.example.test."', // 17
        '    failback: soon', // 18
        '    damping: { penalty: 0 }', // 19
        '    members: []', // 20
      ),
    ),
    [
      '8:28 services[0].failback.ramp[1]: ramp percentages must increase: 50 follows 50',
      '8:32 services[0].failback.ramp[2]: the last ramp step must be 100 (all answers back on the recovered members)',
      '8:43 services[0].failback.step: must be longer than 0',
      '9:23 services[0].damping.reuse: reuse (2500) must be below suppress (2000)',
      '10:49 services[0].when_all_down.last_resort[1]: "nope" is not an IP address',
      '13:28 services[1].failback.ramp[1]: the last ramp step must be 100 (all answers back on the recovered members)',
      '14:26 services[1].damping.suppress: reuse (750) must be below suppress (700)',
      '15:20 services[1].when_all_down: must be "fail_open" or { last_resort: [addresses] }',
      '17:11 services[2].name: a service name cannot be a wildcard',
      '18:15 services[2].failback: must be "immediate", "manual" or { ramp: [percentages], step: duration }',
      '19:25 services[2].damping.penalty: must be >= 1',
      '20:14 services[2].members: needs at least one member',
    ],
  );
});

t.test('probe rules', async (t) => {
  const head = ['zones: []', 'services:', '  - name: a.example.test.'];
  t.same(
    errs(
      yaml(
        ...head, // 1-3
        '    probe: { type: tcp, path: /x, interval: 0s }', // 4
        '    members:', // 5
        '      - { name: a, addresses: ["192.0.2.1"] }', // 6
        '      - { name: b, addresses: ["192.0.2.1"], probe: { port: 80, expect_body: x } }', // 7
        '      - { name: c, addresses: ["192.0.2.1"], probe: { type: http, send: x, expect_body: "/(/" } }', // 8
        '      - { name: d, addresses: ["192.0.2.1"], probe: { type: dns } }', // 9
        '      - { name: e, addresses: ["192.0.2.1"], probe: { type: https, servername: "192.0.2.1" } }', // 10
        '      - { name: f, addresses: ["192.0.2.1"], probe: { type: dns, name: x.test, qtype: BOGUS } }', // 11
        '      - { name: g, addresses: ["192.0.2.1"], probe: { type: none, port: 1 } }', // 12
        '      - { name: h, addresses: ["192.0.2.1"], probe: { type: ftp } }', // 13
      ),
    ),
    [
      '4:12 services[0].probe: a tcp probe needs "port"',
      '4:25 services[0].probe.path: "path" does not apply to a tcp probe (tcp probes take: port, send, expect)',
      '4:45 services[0].probe.interval: must be longer than 0',
      '7:65 services[0].members[1].probe.expect_body: "expect_body" does not apply to a tcp probe (tcp probes take: port, send, expect)',
      '8:67 services[0].members[2].probe.send: "send" does not apply to an http probe (http probes take: port, path, method, host, servername, headers, expect_status, expect_body, tls_verify)',
      '8:89 services[0].members[2].probe.expect_body: bad regular expression: Invalid regular expression: /(/: Unterminated group',
      '9:53 services[0].members[3].probe: a dns probe needs "name" (the name to query)',
      '10:53 services[0].members[4].probe: bad probe: servername must be a DNS name',
      '11:53 services[0].members[5].probe: bad probe: qtype: unknown BOGUS',
      '12:67 services[0].members[6].probe.port: "port" does not apply to a probe of type none (it is never probed; only timing keys are allowed)',
      '13:61 services[0].members[7].probe.type: must be one of: http, https, tcp, dns, none',
    ],
  );
  // A service probe without a type: its checker keys are judged by each member's type.
  t.same(
    errs(
      yaml(
        ...head,
        '    probe: { path: /x, timeout: 100ms }', // 4
        '    members:', // 5
        '      - { name: a, addresses: ["192.0.2.1"], probe: { type: http } }', // 6
        '      - { name: b, addresses: ["192.0.2.1"] }', // 7
      ),
    ),
    ['4:14 services[0].probe.path: "path" does not apply to a probe of type none (it is never probed; only timing keys are allowed)'],
  );
});

t.test('services sharing a name', async (t) => {
  const V = ['views:', '  - name: in', '    match: ["10.0.0.0/8"]', '  - name: out', 'zones: []', 'services:'];
  const svc = (name: string, views: string | undefined, member: string): string[] => [
    `  - name: ${name}`,
    ...(views ? [`    views: ${views}`] : []),
    `    members: [${member}]`,
  ];
  const m1 = '{ name: m, addresses: ["192.0.2.1"] }';
  const m2 = '{ name: m, addresses: ["192.0.2.2"] }';
  t.same(errs(yaml(...V, ...svc('a.example.test.', '[in]', m1), ...svc('A.example.test', '[out]', m1))), [], 'disjoint views, same member');
  t.same(errs(yaml(...V, ...svc('a.example.test.', '[in]', m1), ...svc('a.example.test.', '[in, out]', m1))), [
    '10:11 services[1].name: service a.example.test. is already defined in view "in" by services[0] (line 7); the same name may only be a service again in other views',
  ]);
  t.same(errs(yaml(...V, ...svc('a.example.test.', undefined, m1), ...svc('a.example.test.', '[out]', m1))), [
    '9:11 services[1].name: service a.example.test. is already defined in view "out" by services[0] (line 7); the same name may only be a service again in other views',
  ]);
  t.same(errs(yaml('zones: []', 'services:', ...svc('a.example.test.', undefined, m1), ...svc('a.example.test.', undefined, m1))), [
    '5:11 services[1].name: service a.example.test. is already defined by services[0] (line 3); the same name may only be a service again in other views',
  ]);
  t.same(errs(yaml(...V, ...svc('a.example.test.', '[in]', m1), ...svc('a.example.test.', '[out]', m2))), [
    '12:23 services[1].members[0].name: member a.example.test./m is also in services[0] with other addresses or another probe; health is kept per member name, so name this one differently',
  ]);
});

t.test('service rules that need the zones', async (t) => {
  const e = await loadErrors(fx('clash.yaml'));
  const zone = fx('example.test.zone');
  const cfg = fx('clash.yaml');
  t.same(
    e.errors.map((x) => `${x.line}:${x.column} ${x.path}: ${x.detail}`),
    [
      `5:11 services[0].name: www.example.test. has static A record at ${zone}:8 and is also a service at ${cfg}:5`,
      `5:11 services[0].name: www.example.test. has static AAAA record at ${zone}:9 and is also a service at ${cfg}:5`,
      `8:11 services[1].name: alias.example.test. has static CNAME record at ${zone}:10 and is also a service at ${cfg}:8`,
      `11:11 services[2].name: example.test. has static MX record at ${zone}:5 and is also a service at ${cfg}:11`,
      `15:11 services[3].name: _sip._tcp.example.test. has static SRV record at ${zone}:11 and is also a service at ${cfg}:15`,
      `19:11 services[4].name: x.sub.example.test. is below the delegation sub.example.test. in zone example.test.; a service must be in the zone's own data`,
      `22:11 services[5].name: sub.example.test. is at the delegation sub.example.test. in zone example.test.; a service must be in the zone's own data`,
      `25:11 services[6].name: www.elsewhere.test. is not inside any zone served`,
    ],
  );
  t.equal(e.errors[0]!.message, `${cfg}:5:11: services[0].name: www.example.test. has static A record at ${zone}:8 and is also a service at ${cfg}:5`);

  // A service in different zones in two views.
  const split = await loadTextErrors(
    t,
    yaml(
      'views:',
      '  - name: in',
      '    match: ["10.0.0.0/8"]',
      '  - name: out',
      'zones:',
      '  - origin: example.test.',
      '    file: example.test.zone',
      '  - origin: deep.example.test.',
      '    views: [in]',
      '    records: ["@ SOA ns1 hostmaster 1 2 3 4 5", "@ NS ns1", "ns1 A 10.0.0.1"]',
      'services:',
      '  - name: a.deep.example.test.',
      '    members: [{ name: m, addresses: ["192.0.2.1"] }]',
    ),
  );
  t.same(split, [
    '12 services[0].name: a.deep.example.test. is in zone deep.example.test. in one view but in zone example.test.; a service must be in the same zone in all its views (view "out")',
  ]);
});

t.test('schema: unknown keys and shapes in services', async (t) => {
  t.same(
    errs(
      yaml(
        'zones: []',
        'services:',
        '  - name: a.example.test.',
        '    type: cname', // 4
        '    policy: random', // 5
        '    ttl: -1', // 6
        '    max_answers: 65', // 7
        '    initial_state: maybe', // 8
        '    colour: red', // 9
        '    members:',
        '      - { name: "a/b", addresses: "192.0.2.1", priority: -1, weight: 1.5, port: 0, extra: 1 }', // 11
        '  - members: [{ name: m, addresses: ["192.0.2.1"] }]', // 12
      ),
    ),
    [
      '4:11 services[0].type: must be one of: address, srv, mx',
      '5:13 services[0].policy: must be one of: failover, multivalue, weighted',
      '6:10 services[0].ttl: must be >= 0',
      '7:18 services[0].max_answers: must be <= 64',
      '8:20 services[0].initial_state: must be one of: unknown, up, down',
      '9:5 services[0].colour: unknown key "colour" (expected one of: name, views, type, policy, ttl, degraded_ttl, settle, min_healthy, max_answers, count, when_all_down, failback, damping, initial_state, probe, members)',
      '11:17 services[0].members[0].name: must be a member name: letters, digits, "_", "." and "-", starting with a letter or digit',
      '11:35 services[0].members[0].addresses: must be array',
      '11:58 services[0].members[0].priority: must be >= 0',
      '11:70 services[0].members[0].weight: must be integer',
      '11:75 services[0].members[0].port: "port" applies to srv services only (this service has type address)',
      '11:81 services[0].members[0].port: must be >= 1',
      '11:84 services[0].members[0].extra: unknown key "extra" (expected one of: name, addresses, priority, weight, probe, target, port, exchange)',
      '12:5 services[1]: missing required key "name"',
    ],
  );
});

t.test('views: ecs is refused until EDNS Client Subnet matching exists', async (t) => {
  const errors = await loadTextErrors(t, yaml('views:', '  - name: inside', '    match: ["10.0.0.0/8"]', '    ecs: true', ...ZONES));
  t.match(errors, [/^4 views\[0\]\.ecs: EDNS Client Subnet matching is not implemented yet/]);
});
