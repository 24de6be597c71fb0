// The engine's incremental recompute when health comes from other nodes:
// a remote verdict moves one service's answer, a remote node going stale
// (no event at all: the engine's own timer) moves it back. Only the services
// whose inputs changed are computed again and the consensus is reused while
// its inputs stand, so after each step every answer must still equal what a
// fresh engine computes from the same reports, and stateChanges() must list
// the service that moved (neither its local health nor an override changed,
// so only the recompute can say so).

import t, { type Test } from 'tap';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../zones/load.js';
import type { CompiledConfig } from '../zones/zone.js';
import { Engine, type AnswerChange, type ServiceState } from '../server/engine.js';
import { LocalStore } from '../probes/replication/local-store.js';
import type { AuditEntry, HealthStore, NodeIdentity, NodeReport, Override, StoreEvents, Verdict } from '../probes/replication/types.js';
import { resolve } from '../server/answer/resolve.js';
import { parseName, lowerKey } from '../server/wire/name.js';

/** A store whose other nodes are whatever the test says: overrides, epochs and audit are a LocalStore's. */
class ScriptedStore implements HealthStore {
  readonly connected = true;
  readonly disconnectedSince: number | undefined = undefined;
  private readonly local: LocalStore;
  private readonly events = new EventEmitter();
  private remote: readonly NodeReport[] = [];
  /** Epoch claims fail (Redis erroring): the engine must count on by itself. */
  failClaims = false;
  /** Epoch claims take this long (a round trip to Redis). */
  claimDelayMs = 0;

  constructor(readonly node: NodeIdentity) {
    this.local = new LocalStore(node);
    this.local.on('change', () => this.events.emit('change'));
  }

  /** New reports, announced the way a store announces them. */
  setReports(reports: readonly NodeReport[]): void {
    this.remote = reports;
    this.events.emit('change');
  }

  start(): Promise<void> {
    return this.local.start();
  }
  publishVerdicts(_verdicts: ReadonlyMap<string, Verdict>): void {}
  publishServed(_served: ReadonlyMap<string, number>): void {}
  reports(): readonly NodeReport[] {
    return this.remote;
  }
  async claimEpoch(service: string, hash: string): Promise<number> {
    if (this.claimDelayMs > 0) await new Promise((r) => setTimeout(r, this.claimDelayMs));
    if (this.failClaims) throw new Error('claims fail');
    return this.local.claimEpoch(service, hash);
  }
  overrides(): readonly Override[] {
    return this.local.overrides();
  }
  setOverride(o: Override): Promise<void> {
    return this.local.setOverride(o);
  }
  clearOverride(member: string, by: string, reason: string): Promise<boolean> {
    return this.local.clearOverride(member, by, reason);
  }
  audit(event: string, by: string, reason: string, fields: Record<string, string>): Promise<void> {
    return this.local.audit(event, by, reason, fields);
  }
  auditLog(count: number): Promise<readonly AuditEntry[]> {
    return this.local.auditLog(count);
  }
  on<K extends keyof StoreEvents>(event: K, listener: (...args: StoreEvents[K]) => void): this {
    this.events.on(event, listener as (...args: unknown[]) => void);
    return this;
  }
  off<K extends keyof StoreEvents>(event: K, listener: (...args: StoreEvents[K]) => void): this {
    this.events.off(event, listener as (...args: unknown[]) => void);
    return this;
  }
  close(): Promise<void> {
    return this.local.close();
  }
}

const SERVICES = 10;
const STALE_MS = 2000;

const yaml = (services: number): string => `listen: ["127.0.0.1:0"]
node: { id: alpha, pop: one }
replication: { quorum: 1, heartbeat: 500ms, stale_after: ${STALE_MS}ms }
zones:
  - origin: churn.test.
    records: ["@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300", "@ 3600 IN NS ns1", "ns1 3600 IN A 192.0.2.53"]
services:
${Array.from(
  { length: services },
  (_, i) => `  - name: s${i}.churn.test.
    settle: 0s
    failback: immediate
    members:
      - { name: a, addresses: ["10.2.${i}.1"], priority: 1 }
      - { name: b, addresses: ["10.2.${i}.2"], priority: 2 }`,
).join('\n')}
`;

function comparable(s: ServiceState): unknown {
  return { name: s.name, answer: s.answer, ttl: s.ttl, degraded: s.degraded, failedOpen: s.failedOpen, members: s.members.map((m) => [m.member, m.family, m.status, m.held]) };
}

function report(node: string, lastSeen: number, down: readonly string[]): NodeReport {
  const verdicts = new Map<string, Verdict>();
  for (const k of down) verdicts.set(k, { status: 'down', since: lastSeen, reason: 'refused' });
  return { node, pop: 'two', lastSeen, verdicts, served: new Map() };
}

/** A config of `services` services in a temporary directory, and an engine on it with a ScriptedStore; both go at teardown. */
async function engineOn(t: Test, services: number, recomputeChunk?: number): Promise<{ dir: string; config: CompiledConfig; store: ScriptedStore; engine: Engine }> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-churn-engine-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'vigil.yaml'), yaml(services));
  const { config } = await loadConfig(join(dir, 'vigil.yaml'));
  const store = new ScriptedStore(config.operations.replication.node);
  const engine = new Engine(config, { store, logger: pino({ level: 'silent' }), ...(recomputeChunk !== undefined ? { recomputeChunk } : {}) });
  t.teardown(() => engine.close());
  return { dir, config, store, engine };
}

t.test('remote verdicts and a remote node going stale: answers as from scratch, the moved service listed', async (t) => {
  const { config, store, engine } = await engineOn(t, SERVICES);

  const sameAsFresh = async (when: string): Promise<void> => {
    const fresh = new ScriptedStore(config.operations.replication.node);
    fresh.setReports(store.reports());
    const scratch = new Engine(config, { store: fresh, logger: pino({ level: 'silent' }) });
    const want = scratch.state().services.map(comparable);
    await scratch.close();
    t.same(engine.state().services.map(comparable), want, `${when}: every answer as a fresh engine computes it`);
  };
  const waitFor = async (what: string, cond: () => boolean): Promise<void> => {
    const deadline = Date.now() + 15_000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const answerOf = (i: number): string => engine.state().services[i]!.answer;

  // The first answers and their epochs (claimed after the first recompute) are in place.
  await waitFor('the first answers', () => answerOf(3) === 'v4=10.2.3.1' && engine.state().services.every((s) => s.epoch > 0));
  let version = engine.stateChanges(0).version;

  // Another node sees s3's primary down; with a quorum of 1 that is enough.
  store.setReports([report('beta', Date.now(), ['s3.churn.test./a|v4'])]);
  await waitFor('s3 to fail over', () => answerOf(3).startsWith('v4=10.2.3.2') && engine.state().services[3]!.epoch > 1);
  let changes = engine.stateChanges(version);
  version = changes.version;
  t.same(
    changes.services.map((s) => s.name),
    ['s3.churn.test.'],
    'the service the remote verdict moved is listed, and only it',
  );
  t.equal(changes.services[0]!.members[0]!.status, 'down', 'with its primary down');
  await sameAsFresh('after the remote verdict');

  // A heartbeat with the same verdicts: a new report object, nothing to move.
  store.setReports([report('beta', Date.now(), ['s3.churn.test./a|v4'])]);
  await new Promise((r) => setTimeout(r, 50));
  changes = engine.stateChanges(version);
  version = changes.version;
  t.same(changes.services.map((s) => s.name), [], 'a heartbeat that changes nothing lists nothing');
  await sameAsFresh('after a heartbeat');

  // s5's backup down: its answer stays (no answer change, no new epoch) but turns degraded.
  store.setReports([report('beta', Date.now(), ['s3.churn.test./a|v4', 's5.churn.test./b|v4'])]);
  await waitFor('s5 to turn degraded', () => engine.state().services[5]!.degraded);
  changes = engine.stateChanges(version);
  version = changes.version;
  t.same(
    changes.services.map((s) => [s.name, s.answer, s.ttl, s.members[1]!.status]),
    [['s5.churn.test.', 'v4=10.2.5.1', 10, 'down']],
    'a member down that moves no answer: the service is listed, degraded',
  );
  await sameAsFresh('after the backup went down');

  // beta falls silent: after stale_after it no longer counts, with no event but the engine's timer.
  const silentAt = Date.now();
  await waitFor('beta to go stale and s3 to come back', () => answerOf(3) === 'v4=10.2.3.1' && engine.state().services[3]!.epoch > 2);
  t.ok(Date.now() - silentAt >= STALE_MS - 600, 'not before beta went stale');
  changes = engine.stateChanges(version);
  t.same(
    changes.services.map((s) => s.name),
    ['s3.churn.test.', 's5.churn.test.'],
    'the services that moved back are listed',
  );
  await sameAsFresh('after beta went stale');
});

t.test('a large recompute spread over turns: answers committed all at once, equal to a computation from scratch', async (t) => {
  // Three services per turn: a burst of all ten takes four turns to compute.
  const { config, store, engine } = await engineOn(t, SERVICES, 3);
  const answers = (): string[] => engine.state().services.map((s) => s.answer);
  const initial = answers();
  t.ok(initial.every((a, i) => a === `v4=10.2.${i}.1`), 'every primary serves');

  /** Samples the answers at every turn until `until` settles; returns the samples taken before it did. */
  const sampleTurns = async (until: Promise<unknown>): Promise<string[][]> => {
    const samples: string[][] = [];
    let settled = false;
    void until.finally(() => (settled = true));
    while (!settled) {
      samples.push(answers());
      await new Promise((r) => setImmediate(r));
    }
    return samples;
  };

  const burst = Promise.all(
    Array.from({ length: SERVICES }, (_, i) => engine.setOverride({ member: `s${i}.churn.test./a`, action: 'force_down', reason: 'burst', by: 'test' })),
  );
  const samples = await sampleTurns(burst);
  const after = answers();
  t.ok(after.every((a, i) => a.startsWith(`v4=10.2.${i}.2`)), 'every service failed over');
  t.ok(samples.length >= 4, `the event loop turned while the burst was computed (${samples.length} turns seen)`);
  const mixed = samples.filter((s) => s.some((a, i) => a !== initial[i]) && s.some((a, i) => a !== after[i]));
  t.same(mixed, [], 'no turn saw some services changed and others not: the commit is whole');

  const scratch = new Engine(config, { store, logger: pino({ level: 'silent' }) });
  t.same(engine.state().services.map(comparable), scratch.state().services.map(comparable), 'the answers a fresh engine computes from the same overrides');
  await scratch.close();

  // A reload while a spread recompute is under way: the reload's own computes from the current inputs, the spread is dropped.
  const clear = Promise.all(Array.from({ length: SERVICES }, (_, i) => engine.clearOverride(`s${i}.churn.test./a`, 'test', 'over')));
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  engine.reload(config);
  await clear;
  t.same(answers(), initial, 'after a reload in the middle, every primary serves again');
  const scratch2 = new Engine(config, { store, logger: pino({ level: 'silent' }) });
  t.same(engine.state().services.map(comparable), scratch2.state().services.map(comparable), 'and every answer is what a fresh engine computes');
  await scratch2.close();
  // Nothing half-done is committed later.
  await new Promise((r) => setTimeout(r, 50));
  t.same(answers(), initial, 'the dropped recompute left nothing behind');
});

t.test("a burst of answer changes is reported a slice per turn after the swap, each service's epochs in order", async (t) => {
  const N = 250;
  const { dir, store, engine } = await engineOn(t, N);

  // Numbers the turns of the event loop, to say which turn each report came in.
  let turn = 0;
  let ticking = true;
  const tick = (): void => {
    turn++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  t.teardown(() => (ticking = false));
  const seen: { change: AnswerChange; turn: number; served: string }[] = [];
  engine.on('answerChange', (change) => {
    const i = Number(/^s(\d+)\./.exec(change.service)![1]);
    seen.push({ change, turn, served: engine.state().services[i]?.answer ?? 'not in the config' });
  });
  const reported = async (n: number): Promise<void> => {
    for (let i = 0; i < 2000 && seen.length < n; i++) await new Promise((r) => setImmediate(r));
  };
  // The start's answers are reported too (from nothing to the first answer).
  await reported(N);
  const start = seen.splice(0);
  t.equal(start.length, N, 'the first answers are reported');
  const epochAt = new Map(start.map((s) => [s.change.service, s.change.epoch]));

  await Promise.all(Array.from({ length: N }, (_, i) => engine.setOverride({ member: `s${i}.churn.test./a`, action: 'force_down', reason: 'burst', by: 'test' })));
  const committedAt = turn;
  await reported(N);
  t.equal(seen.length, N, `every change is reported (${seen.length})`);
  t.ok(seen.every((s) => s.served === s.change.to), 'each report comes after its answer is served');
  t.ok(seen.every((s) => s.turn > committedAt), "none in the commit's own turn");
  const perTurn = new Map<number, number>();
  for (const s of seen) perTurn.set(s.turn, (perTurn.get(s.turn) ?? 0) + 1);
  t.ok(perTurn.size >= 3 && Math.max(...perTurn.values()) <= 100, `spread over turns: ${[...perTurn.values()].join(', ')} reports a turn`);
  t.ok(
    seen.every((s) => s.change.epoch === epochAt.get(s.change.service)! + 1),
    'each service one epoch further',
  );
  for (const s of seen) epochAt.set(s.change.service, s.change.epoch);

  // Two changes of one service reported together (the slice before is still waiting for its claim),
  // the store failing every claim: the epochs the engine counts by itself follow the order of the changes.
  seen.length = 0;
  store.failClaims = true;
  store.claimDelayMs = 50;
  await engine.clearOverride('s8.churn.test./a', 'test', 'back');
  await new Promise((r) => setImmediate(r));
  await engine.clearOverride('s7.churn.test./a', 'test', 'back');
  await engine.setOverride({ member: 's7.churn.test./a', action: 'force_down', reason: 'again', by: 'test' });
  await reported(3);
  for (let i = 0; i < 50 && seen.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
  const e = epochAt.get('s7.churn.test.')!;
  t.same(
    seen.map((s) => [s.change.service, s.change.from, s.change.to, s.change.epoch]),
    [
      ['s8.churn.test.', 'v4=10.2.8.2', 'v4=10.2.8.1', epochAt.get('s8.churn.test.')! + 1],
      ['s7.churn.test.', 'v4=10.2.7.2', 'v4=10.2.7.1', e + 1],
      ['s7.churn.test.', 'v4=10.2.7.1', 'v4=10.2.7.2', e + 2],
    ],
    'all reported, in order, with increasing epochs',
  );
  t.equal(new Set(seen.slice(1).map((s) => s.turn)).size, 1, 'the two changes of one service were reported together');

  // A reload that removes services before their changes are reported: theirs are not (their metrics
  // and drain series are gone with them), the others' are.
  store.failClaims = false;
  store.claimDelayMs = 0;
  seen.length = 0;
  writeFileSync(join(dir, 'fewer.yaml'), yaml(200));
  const fewer = (await loadConfig(join(dir, 'fewer.yaml'))).config;
  await Promise.all(Array.from({ length: N }, (_, i) => engine.clearOverride(`s${i}.churn.test./a`, 'test', 'back')));
  engine.reload(fewer);
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  const names = new Set(seen.map((s) => s.change.service));
  t.ok(names.has('s0.churn.test.') && names.has('s199.churn.test.'), `the changes of services kept are reported (${names.size})`);
  t.notOk([...names].some((n) => Number(/^s(\d+)\./.exec(n)![1]) >= 200), 'none of a service the reload removed');
});

t.test('a reload at any turn of a spread recompute, or none: the snapshot served holds the answers reported', async (t) => {
  const { config, engine } = await engineOn(t, SERVICES, 3);
  /** What the served snapshot answers for each service, as "v4=..." like state()'s answer. */
  const served = (): string[] =>
    engine.state().services.map((s) => {
      const ans = resolve(engine.current().views[0]!, lowerKey(parseName(s.name)), 1, 1);
      const addrs = ans.answer.map((e) => [...(e.rrset.variants?.[0] ?? e.rrset).rdatas[0]!].join('.'));
      return `v4=${addrs.sort().join(',')}`;
    });
  const mismatches: string[] = [];
  const check = (label: string): void => {
    const want = engine.state().services.map((s) => s.answer.split(' ')[0]!);
    const got = served();
    if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push(`${label}: served ${got.join(' ')}, state ${want.join(' ')}`);
  };
  // Ten services three a turn: prepare, four chunks, the prebuild and the commit take seven turns.
  // A reload at turn k < 7 drops the spread recompute; later ones come after its commit. Rounds without one commit it.
  const rounds = [...Array.from({ length: 10 }, (_, k) => k), undefined, undefined, undefined];
  for (const [n, k] of rounds.entries()) {
    const down = n % 2 === 0;
    const burst = Promise.all(
      Array.from({ length: SERVICES }, (_, i) =>
        down ? engine.setOverride({ member: `s${i}.churn.test./a`, action: 'force_down', reason: 'burst', by: 'test' }) : engine.clearOverride(`s${i}.churn.test./a`, 'test', 'over'),
      ),
    );
    const label = k === undefined ? `round ${n}, no reload` : `round ${n}, reload after ${k} turns`;
    if (k !== undefined) {
      for (let j = 0; j < k; j++) await new Promise((r) => setImmediate(r));
      engine.reload(config);
    }
    await burst;
    check(label);
    // One more change, computed in one turn and built from the last snapshot (incrementally).
    await engine.setOverride({ member: 's0.churn.test./b', action: 'force_down', reason: 'one more', by: 'test' });
    await engine.clearOverride('s0.churn.test./b', 'test', 'over');
    check(`${label}, then one more change`);
  }
  t.same(mismatches, [], 'every round: served = reported');
});
