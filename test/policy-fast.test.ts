// The helpers that make computing a service's answer cheap (server/answer/policy):
// each must give exactly what the plain version it replaced gave, so every
// check here compares against that plain version or against the rule itself.

import t from 'tap';
import { computeServiceAnswer } from '../server/answer/policy/compute.js';
import { addressesOfAll, DistinctList, memberHealthKey, uniq } from '../server/answer/policy/members.js';
import { sameVariants } from '../server/answer/policy/variants.js';
import type { AnswerSet } from '../server/answer/policy/types.js';
import { healthKey, type FamilyHealth, type HealthSnapshot, type HealthStatus } from '../probes/health/state.js';
import type { CompiledMember, CompiledService } from '../zones/service.js';
import { T0, member as fixtureMember, service } from './helpers/policy-fixtures.js';

// Members named by their id, as in a config without service prefixes: health() below takes ids.
function member(id: string, v4: string[], v6: string[] = [], priority = 1): CompiledMember {
  return { ...fixtureMember(id, { v4, v6, priority }), id };
}

function failover(members: readonly CompiledMember[], minHealthy = 1): CompiledService {
  return service({ members, minHealthy, settleMs: 0, damping: { enabled: false, penalty: 1000, suppress: 2000, reuse: 750, halfLifeMs: 60_000 } });
}

function health(down: readonly string[]): HealthSnapshot {
  const members = new Map<string, FamilyHealth>();
  for (const id of down) {
    const status: HealthStatus = 'down';
    members.set(healthKey(id, 'v4'), { status, since: T0 - 1000, reason: 'refused', held: false });
  }
  return { members, failbackApproved: new Map() };
}

/** A deterministic sequence of n values drawn from `distinct` names (a small LCG). */
function sequence(n: number, distinct: number, seed: number): string[] {
  const out: string[] = [];
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out.push(`192.0.2.${x % distinct}`);
  }
  return out;
}

t.test('uniq and DistinctList: first occurrence wins, order kept, below and past the scan limit', async (t) => {
  t.same(uniq([]), []);
  t.same(uniq(['a', 'b', 'a', 'c', 'b']), ['a', 'b', 'c']);
  // Lengths around the switch from a scan to a Set (16 entries), with repeats
  // before and after the switch, against the Set-based original.
  for (const n of [1, 15, 16, 17, 18, 40, 200]) {
    for (const distinct of [3, 16, 17, 50]) {
      const xs = sequence(n, distinct, n * 31 + distinct);
      t.same(uniq(xs), [...new Set(xs)], `n=${n} distinct=${distinct}`);
    }
  }
  // Repeats of entries seen before the Set took over must still be dropped.
  const many = Array.from({ length: 20 }, (_, i) => `x${i}`);
  const d = new DistinctList();
  d.addAll(many);
  d.addAll(many);
  d.add('x0');
  d.add('x16');
  d.add('new');
  t.same(d.items, [...many, 'new']);
});

t.test('addressesOfAll: the members\' addresses in order, without repeats', async (t) => {
  const ms = [member('a', ['192.0.2.1', '192.0.2.2'], ['2001:db8::1']), member('b', ['192.0.2.2', '192.0.2.3']), member('c', [], ['2001:db8::1', '2001:db8::2'])];
  t.same(addressesOfAll(ms, 'v4'), ['192.0.2.1', '192.0.2.2', '192.0.2.3']);
  t.same(addressesOfAll(ms, 'v6'), ['2001:db8::1', '2001:db8::2']);
  t.same(addressesOfAll([], 'v4'), []);
  const big = Array.from({ length: 30 }, (_, i) => member(`m${i}`, sequence(3, 40, i + 1)));
  t.same(addressesOfAll(big, 'v4'), [...new Set(big.flatMap((m) => m.v4))]);
});

t.test('memberHealthKey: the same key as healthKey, per member and family', async (t) => {
  const a = member('www.example.test./a', ['192.0.2.1']);
  const b = member('www.example.test./b', ['192.0.2.2']);
  for (const m of [a, b, a]) {
    t.equal(memberHealthKey(m, 'v4'), healthKey(m.id, 'v4'));
    t.equal(memberHealthKey(m, 'v6'), healthKey(m.id, 'v6'));
  }
  t.not(memberHealthKey(a, 'v4'), memberHealthKey(b, 'v4'));
  t.not(memberHealthKey(a, 'v4'), memberHealthKey(a, 'v6'));
  // Another member object with the same id (a reload) reads the same health.
  t.equal(memberHealthKey(member(a.id, ['198.51.100.1']), 'v4'), memberHealthKey(a, 'v4'));
});

t.test('sameVariants: equal exactly when the JSON texts are equal', async (t) => {
  const set = (o: Partial<AnswerSet> = {}): AnswerSet => ({ v4: ['192.0.2.1', '192.0.2.2'], v6: ['2001:db8::1'], srv: [], mx: [], ...o });
  const srv = { priority: 10, weight: 60, port: 5060, target: 'sip1' };
  const mx = { preference: 10, exchange: 'mx1' };
  const base = [set(), set({ srv: [srv], mx: [mx] })];
  const copy = structuredClone(base);
  t.ok(sameVariants(base, copy), 'a deep copy is the same');
  t.ok(sameVariants([], []));
  const others: AnswerSet[][] = [
    [set()],
    [set(), set({ srv: [srv], mx: [mx] }), set()],
    [set({ v4: ['192.0.2.2', '192.0.2.1'] }), base[1]!],
    [set({ v4: ['192.0.2.1'] }), base[1]!],
    [set({ v6: [] }), base[1]!],
    [set(), set({ srv: [{ ...srv, priority: 20 }], mx: [mx] })],
    [set(), set({ srv: [{ ...srv, weight: 40 }], mx: [mx] })],
    [set(), set({ srv: [{ ...srv, port: 5061 }], mx: [mx] })],
    [set(), set({ srv: [{ ...srv, target: 'sip2' }], mx: [mx] })],
    [set(), set({ srv: [srv, srv], mx: [mx] })],
    [set(), set({ srv: [srv], mx: [{ ...mx, preference: 20 }] })],
    [set(), set({ srv: [srv], mx: [{ ...mx, exchange: 'mx2' }] })],
    [set(), set({ srv: [srv], mx: [] })],
  ];
  for (const [i, o] of others.entries()) {
    t.equal(sameVariants(base, o), JSON.stringify(base) === JSON.stringify(o), `case ${i}`);
    t.notOk(sameVariants(o, base), `case ${i}, the other way round`);
  }
});

t.test('failover groups: config order does not decide the priority order', async (t) => {
  // The backup is listed first and the primaries are not adjacent.
  const ms = [member('b', ['198.51.100.1'], [], 2), member('a1', ['192.0.2.1'], [], 1), member('c', ['203.0.113.1'], [], 3), member('a2', ['192.0.2.2'], [], 1)];
  const v4 = (down: string[], minHealthy = 1): string[][] => computeServiceAnswer(failover(ms, minHealthy), health(down), {}, T0).variants.map((v) => [...v.v4]);
  t.same(v4([]), [['192.0.2.1', '192.0.2.2']], 'priority 1, in config order');
  t.same(v4(['a1']), [['192.0.2.2']]);
  t.same(v4(['a1', 'a2']), [['198.51.100.1']], 'then priority 2');
  t.same(v4(['a1', 'a2', 'b']), [['203.0.113.1']], 'then priority 3');
  t.same(v4(['a1'], 2), [['198.51.100.1']], 'min_healthy 2: one primary is not enough, the one-member backup group qualifies');
  const a = computeServiceAnswer(failover(ms, 2), health(['a1', 'b', 'c']), {}, T0);
  t.same(a.variants.map((v) => [...v.v4]), [['192.0.2.2']], 'no group qualifies: the served primary, not a fail-open');
  t.match(a.summary, /p1 below min_healthy/);
  t.equal(computeServiceAnswer(failover(ms), health(['a1']), {}, T0).runtime.activePriority, 1);
  t.equal(computeServiceAnswer(failover(ms), health(['a1', 'a2']), {}, T0).runtime.activePriority, 2);
});
