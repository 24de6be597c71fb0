// Health churn through a real daemon (startDaemon: engine, metrics, drain
// tracker, the answer-change handlers): bursts of overrides, some of one
// member and some of many, and after them everything the incremental paths
// keep must equal what a computation from scratch gives:
//   - every service's answer (summary, TTL, degraded, failed open) and the
//     records served for it, against a fresh engine given the same overrides;
//   - the gauges a scrape shows (set from Engine.stateChanges, only for the
//     services that changed since the last scrape) against a fresh
//     VigilMetrics given the engine's whole state() and the drain report;
//   - stateChanges(): every service whose state() entry moved is listed,
//     with its current entry.
// Queries come from several loopback addresses, so the drain tracker has
// populations and the drain ratio gauge moves.

import t from 'tap';
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import packet from 'dns-packet';
import { pino } from 'pino';
import { startDaemon } from '../server/daemon.js';
import { Engine, type ServiceState } from '../server/engine.js';
import { VigilMetrics } from '../server/metrics/registry.js';
import { respond } from '../server/answer/respond.js';
import { LocalStore } from '../probes/replication/local-store.js';
import type { OverrideAction } from '../probes/replication/types.js';
import { rng } from './helpers/rng.js';

const SERVICES = 40;

const ZONE = `$ORIGIN churn.test.
$TTL 300
@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
ns1 A 192.0.2.53
`;

function serviceYaml(i: number): string {
  // Mostly failover; a few multivalue and weighted (their answers rotate, so they are compared as sets).
  const policy = i % 10 === 8 ? 'multivalue' : i % 10 === 9 ? 'weighted' : 'failover';
  return [
    `  - name: s${i}.churn.test.`,
    `    policy: ${policy}`,
    '    ttl: 60',
    '    degraded_ttl: 10',
    '    settle: 0s',
    '    failback: immediate',
    '    probe: { type: none }',
    '    members:',
    `      - { name: a, addresses: ["10.1.${i}.1"${i % 2 === 0 ? `, "2001:db8::${i}:1"` : ''}], priority: 1 }`,
    `      - { name: b, addresses: ["10.1.${i}.2", "2001:db8::${i}:2"], priority: 2 }`,
    `      - { name: c, addresses: ["10.1.${i}.3"], priority: 3 }`,
  ].join('\n');
}

const YAML = `listen: ["127.0.0.1:0"]
zones:
  - origin: churn.test.
    file: churn.test.zone
services:
${Array.from({ length: SERVICES }, (_, i) => serviceYaml(i)).join('\n')}
`;

/** The gauges set from the engine's state and the drain tracker. */
const GAUGES = new Set([
  'vigil_member_up',
  'vigil_member_local_up',
  'vigil_member_override',
  'vigil_health_epoch',
  'vigil_service_failed_open',
  'vigil_service_degraded',
  'vigil_service_diverged',
  'vigil_failover_drain_ratio',
]);

function gaugeLines(exposition: string): string[] {
  return exposition
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#') && GAUGES.has(l.slice(0, l.search(/[{ ]/))))
    .sort();
}

function aQuery(name: string, type: 'A' | 'AAAA', id = 1): Buffer {
  return packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ name: name.replace(/\.$/, ''), type }] });
}

/**
 * Records served for a name over one full turn of its alternatives (n
 * consecutive queries take each of n alternatives once), order aside: what
 * two engines with the same health must agree on, whatever their rotation.
 */
function served(engine: Engine, name: string, type: 'A' | 'AAAA', alternatives: number): string {
  const seen: string[] = [];
  for (let i = 0; i < alternatives; i++) {
    const q = aQuery(name, type);
    const r = respond(q, q.length, engine.current(), 'udp', '127.0.0.1');
    if (r === undefined) {
      seen.push('dropped');
      continue;
    }
    const p = packet.decode(r) as packet.DecodedPacket & { rcode?: string };
    const records = (p.answers ?? []).map((a) => `${a.name} ${(a as { ttl?: number }).ttl} ${a.type} ${String((a as { data?: unknown }).data)}`).sort();
    seen.push(`${p.rcode ?? ''} ${records.join(' ')}`);
  }
  return JSON.stringify(seen.sort());
}

/** state() of a service without what follows the clock or the node's history: reasons, votes, since, epoch. */
function comparable(s: ServiceState): unknown {
  return {
    name: s.name,
    answer: s.answer,
    ttl: s.ttl,
    degraded: s.degraded,
    failedOpen: s.failedOpen,
    diverged: s.diverged,
    members: s.members.map((m) => ({ member: m.member, family: m.family, status: m.status, held: m.held, local: m.local.status, override: m.override?.action })),
  };
}

t.test('bursts of overrides: answers, state changes and gauges equal a computation from scratch', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-churn-daemon-'));
  writeFileSync(join(dir, 'churn.test.zone'), ZONE);
  writeFileSync(join(dir, 'vigil.yaml'), YAML);
  const daemon = await startDaemon(join(dir, 'vigil.yaml'), pino({ level: 'silent' }), { levelFixed: true });
  const clients: Socket[] = [];
  t.teardown(async () => {
    for (const c of clients) c.close();
    await daemon.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const engine = daemon.engine;
  const port = daemon.server.addresses.udp[0]!.port;

  // Resolvers at four loopback addresses, each asking for some services and waiting for the answers.
  for (let i = 0; i < 4; i++) {
    const s = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(0, `127.0.0.${11 + i}`, () => resolve());
    });
    clients.push(s);
  }
  let nextId = 1;
  const ask = async (client: Socket, names: readonly string[]): Promise<void> => {
    for (const name of names) {
      const id = nextId++ & 0xffff;
      const got = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer for ${name} within 5 s`)), 5000);
        const onMessage = (msg: Buffer): void => {
          if (msg.readUInt16BE(0) !== id) return;
          clearTimeout(timer);
          client.off('message', onMessage);
          resolve();
        };
        client.on('message', onMessage);
      });
      client.send(aQuery(name, 'A', id), port, '127.0.0.1');
      await got;
    }
  };
  const names = Array.from({ length: SERVICES }, (_, i) => `s${i}.churn.test.`);
  for (const c of clients) await ask(c, names.slice(0, 20));

  const compareGauges = async (when: string): Promise<void> => {
    // The scrape sets the gauges from the services changed since the last one; the fresh registry is given everything.
    const rendering = daemon.metrics.render();
    const fresh = new VigilMetrics({ node: 'x', pop: 'y', processMetrics: false });
    fresh.updateState(engine.state(), daemon.drain.report(Date.now()));
    const got = gaugeLines(await rendering);
    const want = gaugeLines(await fresh.render());
    t.same(got, want, `${when}: every gauge as set from the whole state (${want.length} series)`);
  };
  await compareGauges('before any change');

  const random = rng(777);
  const overridden = new Set<string>();
  let version = engine.stateChanges(0).version;
  let before = new Map(engine.state().services.map((s) => [s.key, comparable(s)]));
  const sizes = [1, 30, 5, 1, 40, 2, 1, 25, 3, 40, 1, 10];
  for (const [round, size] of sizes.entries()) {
    const picked = new Set<number>();
    while (picked.size < size) picked.add(Math.floor(random() * SERVICES));
    const actions: Promise<unknown>[] = [];
    for (const i of picked) {
      const member = `s${i}.churn.test./${random() < 0.7 ? 'a' : 'b'}`;
      if (overridden.has(member) && random() < 0.5) {
        overridden.delete(member);
        actions.push(engine.clearOverride(member, 'test', 'churn'));
      } else {
        const action: OverrideAction = (['force_down', 'drain', 'force_up'] as const)[Math.floor(random() * 3)]!;
        overridden.add(member);
        actions.push(engine.setOverride({ member, action, reason: `round ${round}`, by: 'test' }));
      }
    }
    await Promise.all(actions);
    // Let the epoch claims and the answer-change handlers (drain tracker, metrics) run.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));

    const changes = engine.stateChanges(version);
    version = changes.version;
    t.notOk(changes.all, `round ${round}: not everything changed`);
    const listed = new Map(changes.services.map((s) => [s.key, s]));
    const now = engine.state().services;
    const moved = now.filter((s) => JSON.stringify(comparable(s)) !== JSON.stringify(before.get(s.key))).map((s) => s.key);
    const missing = moved.filter((k) => !listed.has(k));
    t.same(missing, [], `round ${round} (${size} flips): every service whose state moved is listed (${moved.length} moved, ${listed.size} listed)`);
    const stale = now.filter((s) => listed.has(s.key) && JSON.stringify(listed.get(s.key)) !== JSON.stringify(s)).map((s) => s.key);
    t.same(stale, [], `round ${round}: each listed entry is the service's current state`);
    before = new Map(now.map((s) => [s.key, comparable(s)]));

    // Some resolvers come back for the new answers, some do not (drain ratios between 0 and 1).
    await ask(clients[round % clients.length]!, names.slice(0, 20));
    if (round % 3 === 2) await compareGauges(`after round ${round}`);
  }
  await compareGauges('after the last round');
  const ratios = gaugeLines(await daemon.metrics.render()).filter((l) => l.startsWith('vigil_failover_drain_ratio'));
  t.ok(ratios.some((l) => !l.endsWith(' 1')), `some drain is under way, so the ratio gauge was exercised: ${ratios.length} series`);

  // From scratch: a new engine whose store holds the same overrides computes every answer at once.
  const { config } = engine.servingState();
  const store = new LocalStore(config.operations.replication.node);
  for (const o of engine.store.overrides()) await store.setOverride(o);
  const fresh = new Engine(config, { store, logger: pino({ level: 'silent' }) });
  t.teardown(() => fresh.close());
  const mine = new Map(engine.state().services.map((s) => [s.key, comparable(s)]));
  const theirs = fresh.state().services;
  const differ = theirs.filter((s) => JSON.stringify(comparable(s)) !== JSON.stringify(mine.get(s.key))).map((s) => `${s.name}: ${s.answer} vs ${JSON.stringify(mine.get(s.key))}`);
  t.same(differ, [], `every service's answer, TTL and flags as computed from scratch (${theirs.length} services, ${overridden.size} overrides left)`);
  const answers = engine.servingState().answers;
  const freshAnswers = fresh.servingState().answers;
  const variantsDiffer = [...answers].filter(([k, a]) => JSON.stringify([a.variants, a.ttl]) !== JSON.stringify([freshAnswers.get(k)?.variants, freshAnswers.get(k)?.ttl])).map(([k]) => k);
  t.same(variantsDiffer, [], 'every service\'s alternatives as computed from scratch');
  const alternatives = new Map(config.services.map((s, i) => [names[i]!, answers.get(engine.state().services[i]!.key)?.variants.length ?? 1]));
  const recordsDiffer = names.flatMap((n) =>
    (['A', 'AAAA'] as const).filter((ty) => served(engine, n, ty, alternatives.get(n)!) !== served(fresh, n, ty, alternatives.get(n)!)).map((ty) => `${n} ${ty}`),
  );
  t.same(recordsDiffer, [], 'every service name serves the same records as a snapshot built from scratch');
});

t.test('health from probes: state changes and gauges follow members going down and up', async (t) => {
  // Each service's primary is probed at its own loopback address; closing its listener takes it down.
  const COUNT = 6;
  const listeners = new Map<number, Server>();
  const listen = (i: number, port: number): Promise<Server> =>
    new Promise((resolve, reject) => {
      const s = createServer((sock) => sock.destroy());
      s.once('error', reject);
      s.listen(port, `127.0.0.${31 + i}`, () => resolve(s));
    });
  const first = await listen(0, 0);
  const port = (first.address() as { port: number }).port;
  listeners.set(0, first);
  for (let i = 1; i < COUNT; i++) listeners.set(i, await listen(i, port));
  const backup = await listen(COUNT, port);

  const dir = mkdtempSync(join(tmpdir(), 'vigil-churn-probes-'));
  writeFileSync(join(dir, 'churn.test.zone'), ZONE);
  const services = Array.from({ length: COUNT }, (_, i) =>
    [
      `  - name: p${i}.churn.test.`,
      '    settle: 0s',
      '    failback: immediate',
      `    probe: { type: tcp, port: ${port}, interval: 100ms, recheck: 100ms, timeout: 500ms, jitter: 0ms, rise: 1, fall: 1 }`,
      '    damping: false',
      '    members:',
      `      - { name: a, addresses: ["127.0.0.${31 + i}"], priority: 1 }`,
      `      - { name: b, addresses: ["127.0.0.${31 + COUNT}"], priority: 2 }`,
    ].join('\n'),
  );
  writeFileSync(join(dir, 'vigil.yaml'), `listen: ["127.0.0.1:0"]\nzones:\n  - origin: churn.test.\n    file: churn.test.zone\nservices:\n${services.join('\n')}\n`);
  const daemon = await startDaemon(join(dir, 'vigil.yaml'), pino({ level: 'silent' }), { levelFixed: true });
  t.teardown(async () => {
    await daemon.close();
    for (const s of [...listeners.values(), backup]) s.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const engine = daemon.engine;
  const waitFor = async (what: string, cond: () => boolean): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const primaryUp = (i: number): boolean => engine.state().services[i]!.members.every((m) => m.member.endsWith('/a') === false || m.status === 'up');
  const answer = (i: number): string => engine.state().services[i]!.answer;
  await waitFor('every member up', () => engine.state().services.every((s) => s.members.every((m) => m.status === 'up' && m.local.status === 'up')));

  const scrapeMatches = async (when: string): Promise<void> => {
    const rendering = daemon.metrics.render();
    const fresh = new VigilMetrics({ node: 'x', pop: 'y', processMetrics: false });
    fresh.updateState(engine.state(), daemon.drain.report(Date.now()));
    t.same(gaugeLines(await rendering), gaugeLines(await fresh.render()), `${when}: every gauge as set from the whole state`);
  };
  await scrapeMatches('all up');
  let version = engine.stateChanges(0).version;
  let before = new Map(engine.state().services.map((s) => [s.key, comparable(s)]));
  const check = (when: string): void => {
    const changes = engine.stateChanges(version);
    version = changes.version;
    const listed = new Set(changes.services.map((s) => s.key));
    const moved = engine.state().services.filter((s) => JSON.stringify(comparable(s)) !== JSON.stringify(before.get(s.key)));
    t.ok(moved.length > 0, `${when}: some services moved (${moved.length})`);
    t.same(moved.filter((s) => !listed.has(s.key)).map((s) => s.name), [], `${when}: every service whose state moved is listed`);
    before = new Map(engine.state().services.map((s) => [s.key, comparable(s)]));
  };

  for (const i of [0, 2, 3]) listeners.get(i)!.close();
  await waitFor('three primaries down', () => [0, 2, 3].every((i) => !primaryUp(i) && answer(i).includes(`127.0.0.${31 + COUNT}`)));
  t.ok([1, 4, 5].every((i) => primaryUp(i)), 'the others stay up');
  check('after three primaries went down');
  await scrapeMatches('three primaries down');

  for (const i of [0, 3]) listeners.set(i, await listen(i, port));
  await waitFor('two primaries back', () => [0, 3].every((i) => primaryUp(i) && answer(i).includes(`127.0.0.${31 + i}`)));
  check('after two came back');
  await scrapeMatches('two primaries back');
});
