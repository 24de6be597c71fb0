// The incremental snapshot builder (server/answer/snapshot.ts, SnapshotBuilder)
// against building from scratch: after every round of health changes to some
// services, the snapshot built from the last one must hold the same records
// and give byte for byte the same responses as buildSnapshot(config, answers),
// for every question in both views, although its answer memo carried encoded
// answers over from earlier rounds. The zones make answers depend on services
// in every way resolve() follows: the service's own name, CNAME chains (within
// a zone and from another zone), MX and SRV targets, NS glue at the apex and
// at a delegation, SRV and MX services whose targets are address services,
// a name served by two services in disjoint views, and static data beside and
// below service names.

import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import packet from 'dns-packet';
import { loadConfig } from '../zones/load.js';
import { computeServiceAnswer } from '../server/answer/policy/compute.js';
import type { ServiceAnswer, ServiceRuntime } from '../server/answer/policy/types.js';
import { buildSnapshot, serviceKey, SnapshotBuilder, type Snapshot } from '../server/answer/snapshot.js';
import { respond } from '../server/answer/respond.js';
import { parseQuery } from '../server/wire/query.js';
import { formatName } from '../server/wire/name.js';
import { healthKey, type FamilyHealth, type HealthSnapshot } from '../probes/health/state.js';
import type { CompiledConfig, RRset } from '../zones/zone.js';
import { rng } from './helpers/rng.js';

const CONFIG = `
views:
  - name: inside
    match: ["127.0.0.2/32"]
  - name: outside
zones:
  - origin: churn.test.
    records:
      - "@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300"
      - "@ 3600 IN NS ns1"
      - "@ 3600 IN NS s0"
      - "@ 300 IN MX 20 s3"
      - "ns1 3600 IN A 192.0.2.53"
      - "alias 300 IN CNAME s1"
      - "chain 300 IN CNAME alias"
      - "mail 300 IN MX 10 s2"
      - "mail 300 IN MX 30 static"
      - "_sip._tcp 300 IN SRV 0 0 5060 s4"
      - "sub 3600 IN NS s5"
      - "static 300 IN A 192.0.2.99"
      - "txt.s1 300 IN TXT below"
      - "s6 300 IN TXT beside"
      - "other 300 IN CNAME s7"
      - "split 300 IN CNAME s8"
  - origin: other.test.
    records:
      - "@ 3600 IN SOA ns1.churn.test. hostmaster.churn.test. 1 7200 3600 1209600 300"
      - "@ 3600 IN NS ns1.churn.test."
      - "far 300 IN CNAME s1.churn.test."
      - "plain 300 IN A 192.0.2.77"
services:
${[0, 1, 2, 3, 4, 5, 6, 7]
  .map(
    (i) => `  - name: s${i}.churn.test.
    settle: 0s
    failback: immediate
    members:
      - { name: a, addresses: ["10.0.${i}.1"${i % 2 === 0 ? `, "2001:db8::${i}:1"` : ''}], priority: 1 }
      - { name: b, addresses: ["10.0.${i}.2", "2001:db8::${i}:2"], priority: 2 }`,
  )
  .join('\n')}
  - name: s8.churn.test.
    views: [inside]
    settle: 0s
    failback: immediate
    members:
      - { name: a, addresses: ["10.8.0.1"], priority: 1 }
      - { name: b, addresses: ["10.8.0.2"], priority: 2 }
  - name: s8.churn.test.
    views: [outside]
    settle: 0s
    failback: immediate
    members:
      - { name: c, addresses: ["10.9.0.1"], priority: 1 }
      - { name: d, addresses: ["10.9.0.2"], priority: 2 }
  - name: _svc._tcp.churn.test.
    type: srv
    settle: 0s
    failback: immediate
    members:
      - { name: one, target: s1.churn.test., port: 443, priority: 1 }
      - { name: two, target: s2.churn.test., port: 443, priority: 2 }
  - name: mx.churn.test.
    type: mx
    settle: 0s
    failback: immediate
    members:
      - { name: one, exchange: s3.churn.test., priority: 10 }
      - { name: two, exchange: static.churn.test., priority: 20 }
`;

const NAMES = [
  'churn.test.',
  'ns1.churn.test.',
  'alias.churn.test.',
  'chain.churn.test.',
  'mail.churn.test.',
  '_sip._tcp.churn.test.',
  'sub.churn.test.',
  'host.sub.churn.test.',
  'static.churn.test.',
  'txt.s1.churn.test.',
  'other.churn.test.',
  'split.churn.test.',
  '_svc._tcp.churn.test.',
  'mx.churn.test.',
  'nothing.churn.test.',
  'far.other.test.',
  'plain.other.test.',
  ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => `s${i}.churn.test.`),
];
const TYPES = ['A', 'AAAA', 'MX', 'SRV', 'NS', 'TXT', 'CNAME', 'SOA', 'ANY'] as const;
const CLIENTS = ['127.0.0.2', '127.0.0.1'];

interface Question {
  readonly label: string;
  readonly msg: Buffer;
}

const questions: Question[] = [];
for (const name of NAMES) {
  for (const type of TYPES) {
    // Mixed case too: the memo is keyed by the lowercased name, and the response must keep the query's case.
    for (const spelled of [name, name.toUpperCase()]) {
      questions.push({
        label: `${spelled} ${type}`,
        msg: packet.encode({
          type: 'query',
          id: 4242,
          flags: packet.RECURSION_DESIRED,
          questions: [{ name: spelled.replace(/\.$/, ''), type: type as 'A' }],
          additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as never],
        }),
      });
    }
  }
}

function rrsetJson(rr: RRset): unknown {
  return {
    owner: rr.owner,
    type: rr.type,
    ttl: rr.ttl,
    rdatas: rr.rdatas.map((r) => Buffer.from(r).toString('hex')),
    variants: rr.variants?.map((v) => ({ ttl: v.ttl, rdatas: v.rdatas.map((r) => Buffer.from(r).toString('hex')) })),
  };
}

/** Everything a snapshot answers from, as plain data (not the memo, which is filled lazily). */
function contents(snap: Snapshot): unknown {
  return snap.views.map((v) => ({
    name: v.name,
    zones: [...v.zones].map(([origin, z]) => ({
      origin,
      soa: rrsetJson(z.soa),
      nodes: [...z.nodes]
        .map(([k, n]) => ({ k, isCut: n.isCut, rrsets: [...n.rrsets].map(([type, rr]) => [type, rrsetJson(rr)]) }))
        .sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0)),
    })),
    negativeSoa: [...v.negativeSoa].map(([o, rr]) => [o, rrsetJson(rr)]),
    services: [...v.services].sort(([a], [b]) => (a < b ? -1 : 1)),
    chaos: [...v.chaos].map(([k, rr]) => [k, rrsetJson(rr)]),
    transfers: [...v.transfers.keys()].sort(),
  }));
}

function ask(snap: Snapshot, q: Question, client: string): string {
  return respond(q.msg, q.msg.length, snap, 'udp', client)?.toString('hex') ?? 'dropped';
}

t.test('built from the last snapshot = built from scratch, round after round of changes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-churn-snapshot-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'vigil.yaml'), CONFIG);
  const { config } = await loadConfig(join(dir, 'vigil.yaml'));

  const status = new Map<string, 'up' | 'down'>();
  const memberKeys = config.services.flatMap((s) => s.members.flatMap((m) => (['v4', 'v6'] as const).map((f) => healthKey(m.id, f))));
  for (const k of memberKeys) status.set(k, 'up');
  const health = (): HealthSnapshot => {
    const members = new Map<string, FamilyHealth>();
    for (const [k, st] of status) members.set(k, { status: st, since: 0, reason: 'test', held: false });
    return { members, failbackApproved: new Map() };
  };
  const runtimes = new Map<string, ServiceRuntime>();
  const answers = new Map<string, ServiceAnswer>();
  let now = 1_000_000;
  const compute = (cfg: CompiledConfig, only?: ReadonlySet<string>): Set<string> => {
    const h = health();
    const done = new Set<string>();
    for (const s of cfg.services) {
      const key = serviceKey(s);
      if (only !== undefined && !s.members.some((m) => only.has(m.id))) continue;
      const a = computeServiceAnswer(s, h, runtimes.get(key) ?? {}, now);
      runtimes.set(key, a.runtime);
      answers.set(key, a);
      done.add(key);
    }
    return done;
  };
  compute(config);

  const builder = new SnapshotBuilder();
  let snap = builder.build(config, answers);
  t.same(contents(snap), contents(buildSnapshot(config, answers)), 'the first build is a full one');
  for (const q of questions) for (const c of CLIENTS) ask(snap, q, c);

  const random = rng(20261123);
  const memberIds = config.services.flatMap((s) => s.members.map((m) => m.id));
  const mismatches: string[] = [];
  let carried = 0;
  let rebuilt = 0;
  let staged = 0;
  const ROUNDS = 80;
  for (let round = 1; round <= ROUNDS; round++) {
    now += 1000;
    // One to three members flip, in one or both families; now and then a service is computed
    // again with nothing changed (a new answer object with the same records).
    const flipped = new Set<string>();
    const flips = 1 + Math.floor(random() * 3);
    for (let i = 0; i < flips; i++) {
      const id = memberIds[Math.floor(random() * memberIds.length)]!;
      flipped.add(id);
      for (const f of ['v4', 'v6'] as const) {
        if (f === 'v6' && random() < 0.5) continue;
        const k = healthKey(id, f);
        status.set(k, status.get(k) === 'up' ? 'down' : 'up');
      }
    }
    if (random() < 0.2) flipped.add(memberIds[Math.floor(random() * memberIds.length)]!);
    const before = snap;
    const changedKeys = compute(config, flipped);
    // The engine stages the records of a burst's answers as it computes them (SnapshotBuilder.stage),
    // and a recompute it drops leaves staged answers that are never built: both must build the same.
    if (round % 2 === 0) {
      for (const s of config.services) if (changedKeys.has(serviceKey(s))) builder.stage(config, s, answers.get(serviceKey(s))!);
      staged++;
    }
    if (round % 5 === 0) {
      const s = config.services[round % config.services.length]!;
      const dropped = computeServiceAnswer(s, { members: new Map(), failbackApproved: new Map() }, {}, now);
      builder.stage(config, s, dropped);
    }
    snap = builder.build(config, answers, changedKeys);
    const fresh = buildSnapshot(config, answers);
    const want = contents(fresh);
    if (JSON.stringify(contents(snap)) !== JSON.stringify(want)) mismatches.push(`round ${round}: contents differ`);
    // Some rounds ask only some questions, so memo entries also come from memos more than one build back.
    const asked = round % 3 === 0 ? questions.filter((_, i) => i % 4 === round % 4) : questions;
    for (const q of asked) {
      for (const c of CLIENTS) {
        const view = c === CLIENTS[0] ? 0 : 1;
        const got = ask(snap, q, c);
        const expected = ask(fresh, q, c);
        if (got !== expected) mismatches.push(`round ${round}: ${q.label} from ${c} (view ${view}) differs`);
        // Again: now from the memo.
        if (ask(snap, q, c) !== expected) mismatches.push(`round ${round}: ${q.label} from ${c}, asked again, differs`);
      }
    }
    for (let v = 0; v < snap.views.length; v++) {
      const was = before.views[v]!.answerCache;
      for (const [k, e] of snap.views[v]!.answerCache) {
        if (Map.prototype.get.call(was, k) === e) carried++;
        else rebuilt++;
      }
    }
    if (mismatches.length > 20) break;
  }
  t.same(mismatches.slice(0, 20), [], `every round: same records and same bytes as a fresh build (${ROUNDS} rounds, ${staged} of them staged, ${questions.length * CLIENTS.length} questions)`);
  // Not vacuous: the memo did carry answers over, and did make others again.
  t.ok(carried > 1000, `memo entries carried over from earlier builds: ${carried}`);
  t.ok(rebuilt > 100, `memo entries made again after a change: ${rebuilt}`);
});

t.test('what a change drops from the memo, and what it keeps', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-churn-snapshot-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'vigil.yaml'), CONFIG);
  const { config } = await loadConfig(join(dir, 'vigil.yaml'));
  const allUp: HealthSnapshot = { members: new Map(), failbackApproved: new Map() };
  const answers = new Map<string, ServiceAnswer>();
  for (const s of config.services) answers.set(serviceKey(s), computeServiceAnswer(s, allUp, {}, 0));
  const builder = new SnapshotBuilder();
  const first = builder.build(config, answers);

  /** Asks from the outside view and returns the memo entry the answer came from. */
  const entryOf = (snap: Snapshot, name: string, type: string): unknown => {
    const question = questions.find((x) => x.label === `${name} ${type}`)!;
    ask(snap, question, '127.0.0.1');
    const parsed = parseQuery(question.msg);
    return parsed.kind === 'query' ? snap.views[1]!.answerCache.get(parsed.key) : undefined;
  };
  // [name, type, whether its encoded answer survives a change of s1]
  const watched: [string, string, boolean][] = [
    ['static.churn.test.', 'A', true],
    ['plain.other.test.', 'A', true],
    ['mail.churn.test.', 'MX', true],
    ['s2.churn.test.', 'A', true],
    ['s6.churn.test.', 'TXT', true],
    ['s1.churn.test.', 'A', false],
    ['s1.churn.test.', 'TXT', false],
    ['alias.churn.test.', 'A', false],
    ['chain.churn.test.', 'A', false],
    ['far.other.test.', 'A', false],
    ['_svc._tcp.churn.test.', 'SRV', false],
  ];
  const before = watched.map(([n, ty]) => entryOf(first, n, ty));
  t.ok(before.every((e) => e !== undefined), 'every watched answer is memoised');

  // s1's primary goes down: its records change, and with them every answer that reads them.
  const s1 = config.services.find((s) => formatName(s.name) === 's1.churn.test.')!;
  const down: HealthSnapshot = {
    members: new Map([[healthKey('s1.churn.test./a', 'v4'), { status: 'down', since: 1, reason: 'test', held: false }]]),
    failbackApproved: new Map(),
  };
  answers.set(serviceKey(s1), computeServiceAnswer(s1, down, {}, 1));
  const second = builder.build(config, answers, [serviceKey(s1)]);
  watched.forEach(([n, ty, kept], i) => {
    const e = entryOf(second, n, ty);
    if (kept) t.equal(e, before[i], `${n} ${ty}: the encoded answer is carried over`);
    else t.not(e, before[i], `${n} ${ty}: encoded again, it reads s1's records`);
  });
  t.not(second.views[0], first.views[0], 's1 is in the inside view too: that view is new');

  // s8 of the inside view only: the outside view, its memo included, is the last snapshot's.
  const s8in = config.services.find((s) => s.views.includes('inside'))!;
  answers.set(serviceKey(s8in), computeServiceAnswer(s8in, { members: new Map([[healthKey(s8in.members[0]!.id, 'v4'), { status: 'down', since: 2, reason: 'test', held: false }]]), failbackApproved: new Map() }, {}, 2));
  const third = builder.build(config, answers, [serviceKey(s8in)]);
  t.equal(third.views[1], second.views[1], 'a view without a changed service is kept whole');
  t.not(third.views[0], second.views[0], 'the view with the changed service is new');
  t.equal(builder.build(config, answers, [serviceKey(s8in)]), third, 'nothing changed since: the same snapshot');
});
