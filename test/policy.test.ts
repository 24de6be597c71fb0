// The answer policies (server/answer/policy): pure functions of the service,
// the health snapshot, the carried runtime and `now`, so every scenario here is
// simulated time, no timers and no sockets.

import t from 'tap';
import { computeServiceAnswer } from '../server/answer/policy/compute.js';
import { apportion, weightedDraws } from '../server/answer/policy/weighted.js';
import { combineFamilies, rotations, smoothOrder, spread } from '../server/answer/policy/variants.js';
import type { ServiceAnswer, ServiceRuntime } from '../server/answer/policy/types.js';
import { healthKey, type FamilyHealth, type HealthSnapshot, type HealthStatus } from '../probes/health/state.js';
import type { CompiledMember, CompiledService, Family } from '../zones/service.js';
import { LABEL, NAME, T0, member, service } from './helpers/policy-fixtures.js';

// ---------------------------------------------------------------- factories

type Entry = HealthStatus | { status: HealthStatus; nextChangeAt?: number };

/** Health by "member:family" ("a:v4"); members not listed have no verdict yet. */
function health(spec: Record<string, Entry> = {}, approvals: Record<string, number> = {}): HealthSnapshot {
  const members = new Map<string, FamilyHealth>();
  for (const [k, e] of Object.entries(spec)) {
    const [name, family] = k.split(':') as [string, Family];
    const { status, nextChangeAt } = typeof e === 'string' ? { status: e, nextChangeAt: undefined } : e;
    members.set(healthKey(`${LABEL}/${name}`, family), {
      status,
      since: T0 - 3_600_000,
      reason: status === 'down' ? 'http 503' : 'http 200',
      held: false,
      ...(nextChangeAt !== undefined ? { nextChangeAt } : {}),
    });
  }
  return { members, failbackApproved: new Map(Object.entries(approvals).map(([n, at]) => [n === LABEL ? NAME : n, at])) };
}

const compute = (s: CompiledService, h: HealthSnapshot, rt: ServiceRuntime = {}, now = T0): ServiceAnswer => computeServiceAnswer(s, h, rt, now);

/** The answer in steady state: the same health already held an hour ago, so no settle window. */
function steady(s: CompiledService, h: HealthSnapshot, now = T0): ServiceAnswer {
  const before = compute(s, h, {}, now - 3_600_000);
  return compute(s, h, before.runtime, now);
}

const v4s = (a: ServiceAnswer): string[][] => a.variants.map((v) => [...v.v4]);
const v6s = (a: ServiceAnswer): string[][] => a.variants.map((v) => [...v.v6]);

/** How often each value occurs. */
function tally(xs: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

// A dual-stack failover pair plus a backup group.
const pair = (o: Partial<CompiledService> = {}): CompiledService =>
  service({
    members: [
      member('a', { v4: ['192.0.2.1'], v6: ['2001:db8::1'], priority: 1 }),
      member('b', { v4: ['192.0.2.2'], v6: ['2001:db8::2'], priority: 2 }),
    ],
    ...o,
  });

const ALL_UP = { 'a:v4': 'up', 'a:v6': 'up', 'b:v4': 'up', 'b:v6': 'up' } as const;

// ---------------------------------------------------------------- failover

t.test('failover: healthy, one down, all down, unknown start', async (t) => {
  const s = pair();
  const ok = steady(s, health(ALL_UP));
  t.same(ok.variants, [{ v4: ['192.0.2.1'], v6: ['2001:db8::1'], srv: [], mx: [] }], 'the best group only');
  t.equal(ok.ttl, 300);
  t.equal(ok.degraded, false);
  t.equal(ok.failedOpen, false);
  t.equal(ok.summary, 'v4=192.0.2.1 v6=2001:db8::1');
  t.equal(ok.runtime.activePriority, 1);
  t.equal(ok.recomputeAt, undefined);

  const one = steady(s, health({ ...ALL_UP, 'a:v4': 'down', 'a:v6': 'down' }));
  t.same(v4s(one), [['192.0.2.2']], 'failed over to priority 2');
  t.same(v6s(one), [['2001:db8::2']]);
  t.equal(one.degraded, true);
  t.equal(one.ttl, 30, 'degraded TTL');
  t.equal(one.failedOpen, false);

  const none = steady(s, health({ 'a:v4': 'down', 'a:v6': 'down', 'b:v4': 'down', 'b:v6': 'down' }));
  t.same(v4s(none), [['192.0.2.1', '192.0.2.2']], 'fail open: every member');
  t.same(v6s(none), [['2001:db8::1', '2001:db8::2']]);
  t.equal(none.failedOpen, true);
  t.equal(none.degraded, true);
  t.equal(none.ttl, 30);
  t.equal(none.summary, 'v4=192.0.2.1,192.0.2.2 (failed open) v6=2001:db8::1,2001:db8::2 (failed open)');

  const fresh = compute(s, health());
  t.same(v4s(fresh), [['192.0.2.1']], 'no verdict yet (unknown) is served: a restart does not empty the answer');
  t.equal(fresh.failedOpen, false);
  t.equal(fresh.degraded, true, 'the first computation starts a settle window');
  t.equal(fresh.ttl, 30);

  const startDown = compute(pair({ initialState: 'down' }), health());
  t.equal(startDown.failedOpen, true, 'initial_state down with no verdict: all down, fail open');
  t.same(v4s(startDown), [['192.0.2.1', '192.0.2.2']]);
  const startUp = compute(pair({ initialState: 'down' }), health({ 'b:v4': 'up' }));
  t.same(v4s(startUp), [['192.0.2.2']], 'a verdict overrides initial_state');
});

t.test('failover: last resort', async (t) => {
  const down = health({ 'a:v4': 'down', 'a:v6': 'down', 'b:v4': 'down', 'b:v6': 'down' });
  const s = pair({ whenAllDown: { mode: 'last_resort', v4: ['198.51.100.9'], v6: ['2001:db8:ffff::9'] } });
  const a = steady(s, down);
  t.same(a.variants, [{ v4: ['198.51.100.9'], v6: ['2001:db8:ffff::9'], srv: [], mx: [] }]);
  t.equal(a.failedOpen, true);
  t.match(a.summary, /v4=198\.51\.100\.9 \(last resort\)/);
  t.same(v4s(steady(s, health(ALL_UP))), [['192.0.2.1']], 'the last resort is not used while a member serves');

  const v4only = pair({ whenAllDown: { mode: 'last_resort', v4: ['198.51.100.9'], v6: [] } });
  const b = steady(v4only, down);
  t.same(v4s(b), [['198.51.100.9']]);
  t.same(v6s(b), [['2001:db8::1', '2001:db8::2']], 'no v6 last resort: AAAA fails open rather than going empty');
  t.equal(b.failedOpen, true);
});

t.test('failover: families are decided independently', async (t) => {
  const s = pair();
  const a = steady(s, health({ ...ALL_UP, 'a:v4': 'down' }));
  t.same(a.variants, [{ v4: ['192.0.2.2'], v6: ['2001:db8::1'], srv: [], mx: [] }], 'A from priority 2, AAAA still from priority 1');
  t.equal(a.runtime.families?.v4?.activePriority, 2);
  t.equal(a.runtime.families?.v6?.activePriority, 1);
  t.equal(a.runtime.activePriority, 2, 'the top-level field mirrors v4');
  t.equal(a.degraded, true);

  // A member without a v6 address takes no part in v6.
  const mixed = service({
    members: [member('a', { v4: ['192.0.2.1'], priority: 1 }), member('b', { v4: ['192.0.2.2'], v6: ['2001:db8::2'], priority: 2 })],
  });
  const m = steady(mixed, health({ 'a:v4': 'up', 'b:v4': 'up', 'b:v6': 'up' }));
  t.same(m.variants, [{ v4: ['192.0.2.1'], v6: ['2001:db8::2'], srv: [], mx: [] }], 'AAAA from the only group with v6');

  // A service with no v6 at all answers AAAA empty, and that is not a failure.
  const v4only = service({ members: [member('a', { v4: ['192.0.2.1'] })] });
  const v = steady(v4only, health({ 'a:v4': 'down' }));
  t.same(v6s(v), [[]]);
  t.same(v4s(v), [['192.0.2.1']]);
  t.equal(v.summary, 'v4=192.0.2.1 (failed open)');
});

t.test('failover: min_healthy', async (t) => {
  const s = service({
    minHealthy: 2,
    members: [
      member('a', { v4: ['192.0.2.1'], priority: 1 }),
      member('b', { v4: ['192.0.2.2'], priority: 1 }),
      member('c', { v4: ['192.0.2.3'], priority: 1 }),
      member('d', { v4: ['192.0.2.4'], priority: 2 }),
      member('e', { v4: ['192.0.2.5'], priority: 2 }),
      member('f', { v4: ['192.0.2.6'], priority: 3 }),
    ],
  });
  const up = { 'a:v4': 'up', 'b:v4': 'up', 'c:v4': 'up', 'd:v4': 'up', 'e:v4': 'up', 'f:v4': 'up' } as const;
  t.same(v4s(steady(s, health(up))), [['192.0.2.1', '192.0.2.2', '192.0.2.3']]);
  t.same(v4s(steady(s, health({ ...up, 'a:v4': 'down' }))), [['192.0.2.2', '192.0.2.3']], 'two of three still meet min_healthy 2');
  t.same(v4s(steady(s, health({ ...up, 'a:v4': 'down', 'b:v4': 'down' }))), [['192.0.2.4', '192.0.2.5']], 'one of three does not: next group');
  t.same(
    v4s(steady(s, health({ ...up, 'a:v4': 'down', 'b:v4': 'down', 'd:v4': 'down' }))),
    [['192.0.2.6']],
    'a one-member group qualifies with its one member (min_healthy is capped at the group size)',
  );
  const partial = steady(s, health({ ...up, 'a:v4': 'down', 'b:v4': 'down', 'd:v4': 'down', 'f:v4': 'down' }));
  t.same(v4s(partial), [['192.0.2.3']], 'no group qualifies but some members are up: the best group with any, not fail open');
  t.equal(partial.failedOpen, false);
  t.match(partial.summary, /p1 below min_healthy/);
});

// ---------------------------------------------------------------- failback

t.test('failback immediate', async (t) => {
  const s = pair();
  const a = compute(s, health({ ...ALL_UP, 'a:v4': 'down', 'a:v6': 'down' }), {}, T0);
  t.same(v4s(a), [['192.0.2.2']]);
  const b = compute(s, health(ALL_UP), a.runtime, T0 + 1000);
  t.same(v4s(b), [['192.0.2.1']], 'back at once');
  t.equal(b.runtime.activePriority, 1);
  t.equal(b.recomputeAt, T0 + 1000 + 60_000, 'only the settle window is scheduled');
});

t.test('failback ramp: 10% → 50% → 100% over simulated time', async (t) => {
  const s = pair({ failback: { mode: 'ramp', percent: [10, 50, 100], stepMs: 20_000 } });
  const v4only = { 'a:v6': 'up', 'b:v6': 'up' } as const;
  const down = compute(s, health({ ...v4only, 'a:v4': 'down', 'b:v4': 'up' }), {}, T0);
  t.same(v4s(down), [['192.0.2.2']], 'failing away is immediate, no ramp');
  t.equal(down.runtime.ramp, undefined);

  const t1 = T0 + 300_000; // well past the settle window of the failover
  const r10 = compute(s, health({ ...v4only, 'a:v4': 'up', 'b:v4': 'up' }), down.runtime, t1);
  t.equal(r10.variants.length, 10);
  t.same(tally(r10.variants.map((v) => v.v4.join())), { '192.0.2.1': 1, '192.0.2.2': 9 }, '1 in 10 answers carries the recovered group');
  t.same(new Set(v6s(r10).map((v) => v.join())), new Set(['2001:db8::1']), 'AAAA is not ramping: v6 never failed');
  t.same(r10.runtime.ramp, { toPriority: 1, fromPriority: 2, step: 0, stepStartedAt: t1 });
  t.equal(r10.runtime.activePriority, 2, 'still on the old group until the ramp ends');
  t.equal(r10.recomputeAt, t1 + 20_000);
  t.equal(r10.degraded, true);
  t.equal(r10.ttl, 20, 'TTL capped to the next step (degraded 30 > 20 s)');
  t.equal(r10.summary, 'v4=192.0.2.1,192.0.2.2 (ramp 10% p1<-p2) v6=2001:db8::1');

  const mid = compute(s, health({ ...v4only, 'a:v4': 'up', 'b:v4': 'up' }), r10.runtime, t1 + 5_000);
  t.equal(mid.variants.length, 10, 'a recomputation inside the step keeps the step');
  t.equal(mid.recomputeAt, t1 + 20_000);
  t.equal(mid.ttl, 15);

  const r50 = compute(s, health({ ...v4only, 'a:v4': 'up', 'b:v4': 'up' }), mid.runtime, t1 + 20_000);
  t.equal(r50.variants.length, 2);
  t.same(tally(r50.variants.map((v) => v.v4.join())), { '192.0.2.1': 1, '192.0.2.2': 1 });
  t.equal(r50.runtime.ramp?.step, 1);
  t.equal(r50.recomputeAt, t1 + 40_000);
  t.equal(r50.ttl, 20);

  const r100 = compute(s, health({ ...v4only, 'a:v4': 'up', 'b:v4': 'up' }), r50.runtime, t1 + 40_000);
  t.same(v4s(r100), [['192.0.2.1']], 'at 100% the ramp ends');
  t.equal(r100.runtime.ramp, undefined);
  t.equal(r100.runtime.activePriority, 1);
  t.equal(r100.recomputeAt, t1 + 40_000 + 60_000, 'then only the settle window');

  const late = compute(s, health({ ...v4only, 'a:v4': 'up', 'b:v4': 'up' }), r10.runtime, t1 + 45_000);
  t.same(v4s(late), [['192.0.2.1']], 'a late recomputation catches up on the schedule');
});

t.test('failback ramp: revert when the better group fails again, fail away at once', async (t) => {
  const s = pair({ failback: { mode: 'ramp', percent: [10, 50, 100], stepMs: 20_000 } });
  const onB = compute(s, health({ 'a:v4': 'down', 'b:v4': 'up' }), {}, T0);
  const ramp = compute(s, health({ 'a:v4': 'up', 'b:v4': 'up' }), onB.runtime, T0 + 10_000);
  const r50 = compute(s, health({ 'a:v4': 'up', 'b:v4': 'up' }), ramp.runtime, T0 + 30_000);
  t.equal(r50.variants.length, 2, 'ramping at 50%');

  const revert = compute(s, health({ 'a:v4': 'down', 'b:v4': 'up' }), r50.runtime, T0 + 35_000);
  t.same(v4s(revert), [['192.0.2.2']], 'the recovered group failed again: all answers back on the current one');
  t.equal(revert.runtime.ramp, undefined, 'ramp dropped');
  t.equal(revert.runtime.activePriority, 2);
  t.equal(revert.recomputeAt, T0 + 35_000 + 60_000, 'no ramp step scheduled any more');

  const again = compute(s, health({ 'a:v4': 'up', 'b:v4': 'up' }), revert.runtime, T0 + 40_000);
  t.equal(again.variants.length, 10, 'a new recovery ramps from step 0');
  t.equal(again.runtime.ramp?.stepStartedAt, T0 + 40_000);

  const away = compute(s, health({ 'a:v4': 'up', 'b:v4': 'down' }), r50.runtime, T0 + 35_000);
  t.same(v4s(away), [['192.0.2.1']], 'the current group died during the ramp: straight to the recovered one');
  t.equal(away.runtime.ramp, undefined);
  t.equal(away.runtime.activePriority, 1);

  const onA = compute(s, health({ 'a:v4': 'up', 'b:v4': 'up' }), {}, T0);
  const drop = compute(s, health({ 'a:v4': 'down', 'b:v4': 'up' }), onA.runtime, T0 + 1000);
  t.same(v4s(drop), [['192.0.2.2']], 'failing away from a dead group never ramps');
  t.equal(drop.runtime.ramp, undefined);
});

t.test('failback manual: held until approved', async (t) => {
  const s = pair({ failback: { mode: 'manual' } });
  const onB = compute(s, health({ 'a:v4': 'down', 'b:v4': 'up' }), {}, T0);
  const t1 = T0 + 300_000;
  const held = compute(s, health({ 'a:v4': 'up', 'b:v4': 'up' }, { [LABEL]: T0 - 1000 }), onB.runtime, t1);
  t.same(v4s(held), [['192.0.2.2']], 'an approval older than the wait does not count');
  t.equal(held.runtime.waitingSince, t1);
  t.equal(held.degraded, true, 'a held failback is degraded');
  t.equal(held.ttl, 30);
  t.match(held.summary, /p1 awaits failback approval/);

  const later = compute(s, health({ 'a:v4': 'up', 'b:v4': 'up' }), held.runtime, t1 + 50_000);
  t.equal(later.runtime.waitingSince, t1, 'the wait keeps its start');
  t.same(v4s(later), [['192.0.2.2']]);

  const approved = compute(s, health({ 'a:v4': 'up', 'b:v4': 'up' }, { [LABEL]: t1 + 60_000 }), later.runtime, t1 + 60_000);
  t.same(v4s(approved), [['192.0.2.1']], 'approved: back on the better group');
  t.equal(approved.runtime.waitingSince, undefined);
  t.equal(approved.runtime.activePriority, 1);

  // The next outage needs a new approval: the old one predates the new wait.
  const out2 = compute(s, health({ 'a:v4': 'down', 'b:v4': 'up' }, { [LABEL]: t1 + 60_000 }), approved.runtime, t1 + 100_000);
  const held2 = compute(s, health({ 'a:v4': 'up', 'b:v4': 'up' }, { [LABEL]: t1 + 60_000 }), out2.runtime, t1 + 200_000);
  t.same(v4s(held2), [['192.0.2.2']]);
  t.equal(held2.runtime.waitingSince, t1 + 200_000);

  const gone = compute(s, health({ 'a:v4': 'down', 'b:v4': 'up' }), held.runtime, t1 + 10_000);
  t.equal(gone.runtime.waitingSince, undefined, 'the better group failing again ends the wait');
  const away = compute(s, health({ 'a:v4': 'up', 'b:v4': 'down' }), held.runtime, t1 + 10_000);
  t.same(v4s(away), [['192.0.2.1']], 'the current group failing during the wait: immediate');

  // A runtime in the original shape (no `families`) seeds both families.
  const seeded = compute(s, health({ 'a:v4': 'up', 'b:v4': 'up' }), { activePriority: 2 }, t1);
  t.same(v4s(seeded), [['192.0.2.2']]);
  t.equal(seeded.runtime.waitingSince, t1);
});

// ---------------------------------------------------------------- multivalue

t.test('multivalue: every served member, rotated; max_answers; fail open', async (t) => {
  const s = service({
    policy: 'multivalue',
    members: [
      member('a', { v4: ['192.0.2.1'], priority: 2 }),
      member('b', { v4: ['192.0.2.2'], priority: 1 }),
      member('c', { v4: ['192.0.2.3'], priority: 2 }),
    ],
  });
  const ok = steady(s, health());
  t.same(v4s(ok), [
    ['192.0.2.2', '192.0.2.1', '192.0.2.3'],
    ['192.0.2.1', '192.0.2.3', '192.0.2.2'],
    ['192.0.2.3', '192.0.2.2', '192.0.2.1'],
  ], 'sorted by priority then config order; one variant per rotation');
  t.equal(ok.ttl, 300);

  const one = steady(s, health({ 'a:v4': 'down' }));
  t.same(v4s(one), [['192.0.2.2', '192.0.2.3'], ['192.0.2.3', '192.0.2.2']], 'the dead member is dropped');
  t.equal(one.ttl, 30);

  const capped = steady({ ...s, maxAnswers: 2 }, health());
  t.same(v4s(capped), [['192.0.2.2', '192.0.2.1'], ['192.0.2.1', '192.0.2.2']], 'max_answers keeps the best-ranked');
  const capped1 = steady({ ...s, maxAnswers: 2 }, health({ 'b:v4': 'down' }));
  t.same(v4s(capped1), [['192.0.2.1', '192.0.2.3'], ['192.0.2.3', '192.0.2.1']], 'the next member fills in for a dead one');

  const all = steady(s, health({ 'a:v4': 'down', 'b:v4': 'down', 'c:v4': 'down' }));
  t.same(v4s(all), [['192.0.2.1', '192.0.2.2', '192.0.2.3']], 'fail open: every member, one variant');
  t.equal(all.failedOpen, true);

  const lr = steady({ ...s, whenAllDown: { mode: 'last_resort', v4: ['198.51.100.1'], v6: [] } }, health({ 'a:v4': 'down', 'b:v4': 'down', 'c:v4': 'down' }));
  t.same(v4s(lr), [['198.51.100.1']]);
  t.equal(lr.failedOpen, true);
});

t.test('multivalue: dual stack keeps each family uniform', async (t) => {
  const s = service({
    policy: 'multivalue',
    members: [
      member('a', { v4: ['192.0.2.1'], v6: ['2001:db8::1'] }),
      member('b', { v4: ['192.0.2.2'], v6: ['2001:db8::2'] }),
      member('c', { v4: ['192.0.2.3'] }),
    ],
  });
  const a = steady(s, health({ 'a:v6': 'up', 'b:v6': 'up' }));
  t.equal(a.variants.length, 6, 'lcm(3, 2) variants');
  t.same(tally(a.variants.map((v) => v.v4[0]!)), { '192.0.2.1': 2, '192.0.2.2': 2, '192.0.2.3': 2 }, 'each A rotation equally often');
  t.same(tally(a.variants.map((v) => v.v6[0]!)), { '2001:db8::1': 3, '2001:db8::2': 3 }, 'each AAAA rotation equally often');
  const b = steady(s, health({ 'a:v6': 'down' }));
  t.same(v6s(b).map((v) => v.join()), ['2001:db8::2', '2001:db8::2', '2001:db8::2'], 'v6 of a down, v4 untouched');
  t.equal(v4s(b).length, 3);

  t.equal(rotations(Array.from({ length: 100 }, (_, i) => `10.0.0.${i}`)).length, 64, 'rotations are capped at 64');
  t.equal(combineFamilies([['a'], ['b'], ['c'], ['d'], ['e'], ['f'], ['g'], ['h']], [['1'], ['2'], ['3'], ['4'], ['5'], ['6'], ['7'], ['8'], ['9']], 64).length, 64, 'combined variants are capped');
});

// ---------------------------------------------------------------- weighted

const weightedOf = (weights: number[], o: Partial<CompiledService> = {}): CompiledService =>
  service({
    policy: 'weighted',
    members: weights.map((w, i) => member(String.fromCharCode(97 + i), { v4: [`192.0.2.${i + 1}`], weight: w })),
    ...o,
  });

t.test('weighted count=1: variant frequencies are the weights', async (t) => {
  const a = steady(weightedOf([3, 1]), health());
  t.equal(a.variants.length, 4);
  t.same(tally(a.variants.map((v) => v.v4.join())), { '192.0.2.1': 3, '192.0.2.2': 1 });
  t.same(v4s(a).map((v) => v.join()), ['192.0.2.1', '192.0.2.1', '192.0.2.2', '192.0.2.1'], 'interleaved, not A A A B');

  const g = steady(weightedOf([60, 20]), health());
  t.equal(g.variants.length, 4, 'normalised by the gcd');

  const three = steady(weightedOf([1, 2, 4]), health());
  t.same(tally(three.variants.map((v) => v.v4.join())), { '192.0.2.1': 1, '192.0.2.2': 2, '192.0.2.3': 4 });

  const big = steady(weightedOf([33, 67]), health());
  t.equal(big.variants.length, 100);
  t.same(tally(big.variants.map((v) => v.v4.join())), { '192.0.2.1': 33, '192.0.2.2': 67 });

  const rounded = steady(weightedOf([2, 3, 997]), health());
  t.equal(rounded.variants.length, 100, 'a total above 100 is apportioned to 100');
  t.same(tally(rounded.variants.map((v) => v.v4.join())), { '192.0.2.1': 1, '192.0.2.2': 1, '192.0.2.3': 98 }, 'every served member keeps at least one slot');

  const down = steady(weightedOf([3, 1, 2]), health({ 'a:v4': 'down' }));
  t.same(tally(down.variants.map((v) => v.v4.join())), { '192.0.2.2': 1, '192.0.2.3': 2 }, 'a dead member is not drawn');
  t.equal(down.ttl, 30);

  const all = steady(weightedOf([3, 1]), health({ 'a:v4': 'down', 'b:v4': 'down' }));
  t.same(v4s(all), [['192.0.2.1', '192.0.2.2']], 'fail open');
  t.equal(all.failedOpen, true);

  const fresh = compute(weightedOf([3, 1]), health());
  t.equal(fresh.variants.length, 4, 'no verdict yet: drawn as up');
});

t.test('weighted: weight 0 members are standbys', async (t) => {
  const s = weightedOf([3, 0]);
  const a = steady(s, health());
  t.same(new Set(v4s(a).map((v) => v.join())), new Set(['192.0.2.1']), 'weight 0 is never drawn while a weighted member is up');
  const b = steady(s, health({ 'a:v4': 'down' }));
  t.same(v4s(b), [['192.0.2.2']], 'the standby serves before failing open');
  t.equal(b.failedOpen, false);
  t.match(b.summary, /standby/);
});

t.test('weighted count>1: distinct members, inclusion proportional to weight', async (t) => {
  const s = weightedOf([1, 2, 3, 4], { count: 2 });
  const a = steady(s, health());
  t.equal(a.variants.length, 5);
  for (const v of a.variants) {
    t.equal(v.v4.length, 2, 'count members per answer');
    t.equal(new Set(v.v4).size, 2, 'distinct members');
  }
  t.same(tally(a.variants.flatMap((v) => [...v.v4])), { '192.0.2.1': 1, '192.0.2.2': 2, '192.0.2.3': 3, '192.0.2.4': 4 }, 'inclusion 1:2:3:4');

  const heavy = steady(weightedOf([10, 1, 1], { count: 2 }), health());
  const inc = tally(heavy.variants.flatMap((v) => [...v.v4]));
  t.equal(inc['192.0.2.1'], heavy.variants.length, 'a member whose share exceeds one is in every answer');
  t.equal(inc['192.0.2.2'], inc['192.0.2.3'], 'the rest is shared by weight');

  const over = steady(weightedOf([1, 2], { count: 3 }), health());
  t.same(v4s(over), [['192.0.2.1', '192.0.2.2']], 'count ≥ members: every member, one variant');

  // Not a whole number of slots below 100: shares rounded to neighbours.
  const rows = weightedDraws([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3], 3);
  t.equal(rows.length, 100);
  const counts = new Array<number>(101).fill(0);
  for (const r of rows) {
    t.equal(new Set(r).size, 3);
    for (const i of r) counts[i]!++;
  }
  // π = 3w/103: 300/103 ≈ 2.91 per 100 for weight 1, 900/103 ≈ 8.74 for weight 3.
  t.ok(counts.slice(0, 100).every((c) => c === 2 || c === 3), 'weight 1: 2 or 3 of 100');
  t.ok(counts[100] === 8 || counts[100] === 9, `weight 3: 8 or 9 of 100 (${counts[100]})`);
});

t.test('weighted: dual stack tables align, long combinations are rebuilt at 100', async (t) => {
  const s = service({
    policy: 'weighted',
    members: [
      member('a', { v4: ['192.0.2.1'], v6: ['2001:db8::1'], weight: 3 }),
      member('b', { v4: ['192.0.2.2'], v6: ['2001:db8::2'], weight: 1 }),
    ],
  });
  const a = steady(s, health());
  t.equal(a.variants.length, 4);
  t.ok(a.variants.every((v) => v.v4[0]!.slice(-1) === v.v6[0]!.slice(-1)), 'A and AAAA of the same member in the same variant');

  const odd = service({
    policy: 'weighted',
    members: [
      member('a', { v4: ['192.0.2.1'], weight: 3 }),
      member('b', { v4: ['192.0.2.2'], v6: ['2001:db8::2'], weight: 4 }),
      member('c', { v6: ['2001:db8::3'], weight: 11 }),
    ],
  });
  const b = steady(odd, health());
  t.equal(b.variants.length, 100, 'lcm(7, 15) > 100: both tables at 100');
  const c4 = tally(b.variants.map((v) => v.v4.join()));
  const c6 = tally(b.variants.map((v) => v.v6.join()));
  t.same(c4, { '192.0.2.1': 43, '192.0.2.2': 57 }, '3:4 of 100');
  t.same(c6, { '2001:db8::2': 27, '2001:db8::3': 73 }, '4:11 of 100');
});

t.test('weighted: apportionment and ordering helpers', async (t) => {
  t.same(apportion([1, 1, 1], 100), [34, 33, 33], 'largest remainder, ties to the first');
  t.same(apportion([1, 1000], 100), [1, 99], 'at least one slot');
  t.same(apportion([1, 1, 1000], 100), [1, 1, 98]);
  t.same(smoothOrder([5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
  t.same(spread(10, 1), [true, false, false, false, false, false, false, false, false, false]);
  t.equal(spread(10, 3).filter(Boolean).length, 3);
});

// ---------------------------------------------------------------- srv and mx

t.test('srv: dead targets dropped, fields kept, fail open', async (t) => {
  const s = service({
    kind: 'srv',
    members: [
      member('a', { v4: ['192.0.2.1'], priority: 10, weight: 60, srv: { target: '\x04sip1\x07example\x04test\x00', port: 5060 } }),
      member('b', { v4: ['192.0.2.2'], v6: ['2001:db8::2'], priority: 10, weight: 40, srv: { target: '\x04sip2\x07example\x04test\x00', port: 5061 } }),
      member('c', { priority: 20, weight: 0, srv: { target: '\x04sip3\x07example\x04test\x00', port: 5062 } }),
    ],
    whenAllDown: { mode: 'last_resort', v4: ['198.51.100.1'], v6: [] },
  });
  const ok = steady(s, health());
  t.equal(ok.variants.length, 1);
  t.same(ok.variants[0]!.srv, [
    { priority: 10, weight: 60, port: 5060, target: '\x04sip1\x07example\x04test\x00' },
    { priority: 10, weight: 40, port: 5061, target: '\x04sip2\x07example\x04test\x00' },
    { priority: 20, weight: 0, port: 5062, target: '\x04sip3\x07example\x04test\x00' },
  ]);
  t.same(ok.variants[0]!.v4, []);
  t.equal(ok.summary, 'srv=10 40 5061 sip2.example.test.,10 60 5060 sip1.example.test.,20 0 5062 sip3.example.test.');

  const one = steady(s, health({ 'a:v4': 'down', 'b:v4': 'down', 'b:v6': 'up' }));
  t.same(one.variants[0]!.srv.map((r) => r.port), [5061, 5062], 'a dropped; b is served by its v6; c has no address to probe');
  t.equal(one.ttl, 30);
  t.equal(one.failedOpen, false);

  const s2 = { ...s, members: s.members.slice(0, 2) };
  const none = steady(s2, health({ 'a:v4': 'down', 'b:v4': 'down', 'b:v6': 'down' }));
  t.same(none.variants[0]!.srv.map((r) => r.port), [5060, 5061], 'all down: every member, the last-resort addresses are ignored');
  t.equal(none.failedOpen, true);
  t.same(none.variants[0]!.v4, []);
});

t.test('mx: preference is the priority; dead exchanges dropped', async (t) => {
  const s = service({
    kind: 'mx',
    members: [
      member('a', { v4: ['192.0.2.1'], priority: 10, mx: { exchange: '\x03mx1\x07example\x04test\x00' } }),
      member('b', { v4: ['192.0.2.2'], priority: 20, mx: { exchange: '\x03mx2\x07example\x04test\x00' } }),
    ],
  });
  t.same(steady(s, health()).variants[0]!.mx, [
    { preference: 10, exchange: '\x03mx1\x07example\x04test\x00' },
    { preference: 20, exchange: '\x03mx2\x07example\x04test\x00' },
  ]);
  t.same(steady(s, health({ 'a:v4': 'down' })).variants[0]!.mx, [{ preference: 20, exchange: '\x03mx2\x07example\x04test\x00' }]);
  const none = steady(s, health({ 'a:v4': 'down', 'b:v4': 'down' }));
  t.equal(none.variants[0]!.mx.length, 2);
  t.equal(none.failedOpen, true);
  t.match(none.summary, /^mx=10 mx1\.example\.test\.,20 mx2\.example\.test\. \(failed open\)$/);
});

// ---------------------------------------------------------------- ttl

t.test('ttl: steady, degraded, settle window', async (t) => {
  const s = pair();
  t.equal(steady(s, health(ALL_UP)).ttl, 300, 'steady: ttl');
  t.equal(steady(s, health({ ...ALL_UP, 'b:v6': 'down' })).ttl, 30, 'a member down in any family (even one not served): degraded_ttl');
  t.equal(steady(s, health({ ...ALL_UP, 'b:v6': 'unknown' })).ttl, 300, 'unknown is not degraded');

  const before = steady(s, health(ALL_UP));
  const change = compute(s, health({ ...ALL_UP, 'a:v4': 'down' }), before.runtime, T0 + 1000);
  t.equal(change.runtime.changedAt, T0 + 1000, 'the summary changed');
  const back = compute(s, health(ALL_UP), change.runtime, T0 + 2000);
  t.equal(back.runtime.changedAt, T0 + 2000);
  t.equal(back.degraded, true, 'within settle of the last change');
  t.equal(back.ttl, 30);
  t.equal(back.recomputeAt, T0 + 2000 + 60_000, 'recompute at the end of the settle window');

  const near = compute(s, health(ALL_UP), back.runtime, T0 + 2000 + 55_500);
  t.equal(near.ttl, 30, 'degraded, but not capped by the end of the settle window: it changes the TTL, not the records');
  t.equal(near.runtime.changedAt, T0 + 2000, 'same summary: changedAt kept');

  const settled = compute(s, health(ALL_UP), near.runtime, T0 + 2000 + 60_000);
  t.equal(settled.ttl, 300);
  t.equal(settled.degraded, false);
  t.equal(settled.recomputeAt, undefined);
});

t.test('ttl: capped by changes in progress that would alter the answer', async (t) => {
  const s = pair();
  const pending = steady(s, health({ ...ALL_UP, 'a:v4': { status: 'up', nextChangeAt: T0 + 3_500 } }));
  t.equal(pending.ttl, 4, 'the serving member may go down in 3.5 s');
  t.equal(pending.degraded, false, 'a change in progress is not yet degraded');

  const backup = steady(s, health({ ...ALL_UP, 'b:v4': { status: 'up', nextChangeAt: T0 + 3_500 } }));
  t.equal(backup.ttl, 300, 'the backup going down would not change the answer');

  const soon = steady(s, health({ ...ALL_UP, 'a:v6': { status: 'up', nextChangeAt: T0 + 200 } }));
  t.equal(soon.ttl, 1, 'floor 1 s');
  const past = steady(s, health({ ...ALL_UP, 'a:v6': { status: 'up', nextChangeAt: T0 - 5_000 } }));
  t.equal(past.ttl, 1, 'floor 1 s for an instant already past');

  const recovering = steady(s, health({ ...ALL_UP, 'a:v4': { status: 'down', nextChangeAt: T0 + 10_000 } }));
  t.equal(recovering.ttl, 10, 'a dead primary that may come back in 10 s (immediate failback)');

  const manual = pair({ failback: { mode: 'manual' } });
  const onB = compute(manual, health({ ...ALL_UP, 'a:v4': 'down' }), {}, T0 - 3_600_000);
  const held = compute(manual, health({ ...ALL_UP, 'a:v4': 'down' }), onB.runtime, T0 - 3_000_000);
  const m = compute(manual, health({ ...ALL_UP, 'a:v4': { status: 'down', nextChangeAt: T0 + 10_000 } }), held.runtime, T0);
  t.equal(m.ttl, 30, 'manual failback: its recovery would not change the answer, no cap');

  const mv = service({ policy: 'multivalue', members: [member('a', { v4: ['192.0.2.1'] }), member('b', { v4: ['192.0.2.2'] })] });
  t.equal(steady(mv, health({ 'a:v4': { status: 'unknown', nextChangeAt: T0 + 2_000 } })).ttl, 2, 'unknown with a verdict pending');

  const ramp = pair({ failback: { mode: 'ramp', percent: [10, 50, 100], stepMs: 20_000 }, degradedTtl: 10 });
  const r0 = compute(ramp, health({ 'a:v4': 'down', 'b:v4': 'up' }), {}, T0 - 600_000);
  const r1 = compute(ramp, health({ 'a:v4': 'up', 'b:v4': 'up' }), r0.runtime, T0 - 5_000);
  const r2 = compute(ramp, health({ 'a:v4': 'up', 'b:v4': 'up' }), r1.runtime, T0);
  t.equal(r2.recomputeAt, T0 + 15_000);
  t.equal(r2.ttl, 10, 'degraded_ttl below the step: no cap needed');
});

// ---------------------------------------------------------------- determinism

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}

t.test('determinism: same input, same output; inputs untouched', async (t) => {
  const cases: [CompiledService, HealthSnapshot, ServiceRuntime, number][] = [
    [pair(), health(ALL_UP), {}, T0],
    [pair({ failback: { mode: 'ramp', percent: [10, 50, 100], stepMs: 20_000 } }), health({ 'a:v4': 'up', 'b:v4': 'up' }), { activePriority: 2, summary: 'x', changedAt: T0 - 1 }, T0],
    [weightedOf([1, 2, 3, 4], { count: 2 }), health({ 'a:v4': { status: 'up', nextChangeAt: T0 + 5_000 } }), {}, T0],
    [weightedOf([2, 3, 997]), health(), {}, T0],
    [service({ policy: 'multivalue', members: [member('a', { v4: ['192.0.2.1'], v6: ['2001:db8::1'] }), member('b', { v4: ['192.0.2.2'] })] }), health({ 'b:v4': 'down' }), {}, T0],
  ];
  for (const [s, h, rt, now] of cases) {
    deepFreeze(s);
    deepFreeze(rt);
    const a = computeServiceAnswer(s, h, rt, now);
    const b = computeServiceAnswer(s, h, rt, now);
    t.same(a, b, `${s.policy}: deep-equal`);
    t.equal(JSON.stringify(a), JSON.stringify(b), `${s.policy}: byte-identical`);
  }
});
