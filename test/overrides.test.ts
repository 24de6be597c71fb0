import t from 'tap';
import { healthKey, type FamilyHealth, type HealthSnapshot } from '../probes/health/state.js';
import { applyOverrides, isActive, overrideReason } from '../probes/replication/overrides.js';
import type { Override, OverrideAction } from '../probes/replication/types.js';

const NOW = 2_000_000;
const M = 'www.example.test./primary';
const M4 = healthKey(M, 'v4');
const M6 = healthKey(M, 'v6');
const OTHER4 = healthKey('www.example.test./secondary', 'v4');

function fh(status: FamilyHealth['status'], reason: string, extra: Partial<FamilyHealth> = {}): FamilyHealth {
  return { status, since: 100, reason, held: false, ...extra };
}

function snap(entries: Record<string, FamilyHealth>): HealthSnapshot {
  return { members: new Map(Object.entries(entries)), failbackApproved: new Map([['www.example.test.', 7]]) };
}

function ov(action: OverrideAction, extra: Partial<Override> = {}): Override {
  return { member: M, action, reason: 'maintenance', by: 'alice', at: NOW - 1_000, ...extra };
}

const BASE = snap({
  [M4]: fh('up', 'http 200'),
  [M6]: fh('down', 'timeout', { held: true, nextChangeAt: NOW + 5 }),
  [OTHER4]: fh('up', 'http 200'),
});

t.test('each action on both families', async (t) => {
  const cases: [OverrideAction, FamilyHealth['status'], string][] = [
    ['force_down', 'down', 'forced down by alice: maintenance'],
    ['force_up', 'up', 'forced up by alice: maintenance'],
    ['drain', 'down', 'drained by alice: maintenance'],
  ];
  for (const [action, status, reason] of cases) {
    const r = applyOverrides(BASE, [ov(action)], NOW);
    const expected = { status, since: NOW - 1_000, reason, held: false };
    t.same(r.health.members.get(M4), expected, `${action} v4`);
    t.same(r.health.members.get(M6), expected, `${action} v6 (held and nextChangeAt replaced)`);
    t.notOk('nextChangeAt' in r.health.members.get(M6)!, `${action}: no expiry, no nextChangeAt`);
    t.equal(r.health.members.get(OTHER4), BASE.members.get(OTHER4), 'other members untouched (same entry)');
    t.equal(r.health.failbackApproved, BASE.failbackApproved);
    t.same([...r.active.keys()], [M]);
    t.equal(r.nextExpiry, undefined);
  }
  t.equal(BASE.members.get(M4)?.status, 'up', 'input not mutated');
  t.equal(BASE.members.size, 3);
  t.equal(overrideReason(ov('drain', { reason: '', by: 'bob' })), 'drained by bob', 'no reason given: no colon');
});

t.test('expiry: ignored once lapsed; nextChangeAt and nextExpiry', async (t) => {
  const expiring = ov('force_down', { expiresAt: NOW + 30_000 });
  const r = applyOverrides(BASE, [expiring], NOW);
  t.equal(r.health.members.get(M4)?.status, 'down');
  t.equal(r.health.members.get(M4)?.nextChangeAt, NOW + 30_000, 'answers must not outlive the override');
  t.equal(r.nextExpiry, NOW + 30_000);

  t.ok(isActive(expiring, NOW + 29_999));
  t.notOk(isActive(expiring, NOW + 30_000), 'expiresAt <= now is expired');
  const lapsed = applyOverrides(BASE, [expiring], NOW + 30_000);
  t.equal(lapsed.health, BASE, 'lapsed: the input itself');
  t.equal(lapsed.active.size, 0);
  t.equal(lapsed.nextExpiry, undefined);

  const several = applyOverrides(
    BASE,
    [
      ov('drain', { expiresAt: NOW + 50_000 }),
      ov('force_up', { member: 'www.example.test./secondary', expiresAt: NOW + 20_000 }),
      ov('force_down', { member: 'www.example.test./third' }),
      ov('force_down', { member: 'www.example.test./old', expiresAt: NOW - 1 }),
    ],
    NOW,
  );
  t.equal(several.nextExpiry, NOW + 20_000, 'earliest among active');
  t.same([...several.active.keys()].sort(), [M, 'www.example.test./secondary', 'www.example.test./third']);
  t.notOk(several.health.members.has(healthKey('www.example.test./old', 'v4')), 'expired override creates nothing');
});

t.test('newest at wins, whatever the order', async (t) => {
  const older = ov('force_down', { at: NOW - 5_000, by: 'alice' });
  const newer = ov('force_up', { at: NOW - 2_000, by: 'bob', reason: 'fixed' });
  for (const list of [
    [older, newer],
    [newer, older],
  ]) {
    const r = applyOverrides(BASE, list, NOW);
    t.equal(r.active.get(M), newer);
    t.same(r.health.members.get(M4), { status: 'up', since: NOW - 2_000, reason: 'forced up by bob: fixed', held: false });
  }
  // The newer one lapses: the older one applies again.
  const r = applyOverrides(BASE, [older, { ...newer, expiresAt: NOW }], NOW);
  t.equal(r.active.get(M), older);
  t.equal(r.health.members.get(M4)?.status, 'down');

  // Same ms: a fixed order (the more cautious action), not list order.
  const a = ov('force_up', { at: NOW - 10 });
  const b = ov('drain', { at: NOW - 10 });
  const c = ov('force_down', { at: NOW - 10 });
  t.equal(applyOverrides(BASE, [a, b], NOW).active.get(M), b);
  t.equal(applyOverrides(BASE, [b, a], NOW).active.get(M), b);
  t.equal(applyOverrides(BASE, [b, c, a], NOW).active.get(M), c);
  t.equal(applyOverrides(BASE, [c, a, b], NOW).active.get(M), c);
  const x = ov('drain', { at: NOW - 10, by: 'alice' });
  const y = ov('drain', { at: NOW - 10, by: 'bob' });
  t.equal(applyOverrides(BASE, [x, y], NOW).active.get(M), applyOverrides(BASE, [y, x], NOW).active.get(M));
});

t.test('missing keys: created when neither exists, else only those present', async (t) => {
  const empty = snap({});
  const r = applyOverrides(empty, [ov('force_down')], NOW);
  t.same([...r.health.members.keys()].sort(), [M4, M6].sort(), 'a forced state applies before the first verdict');
  t.equal(r.health.members.get(M4)?.status, 'down');

  const v4only = snap({ [M4]: fh('up', 'http 200') });
  const r4 = applyOverrides(v4only, [ov('drain')], NOW);
  t.same([...r4.health.members.keys()], [M4], 'a member without IPv6 does not gain a v6 entry');
  t.equal(r4.health.members.get(M4)?.reason, 'drained by alice: maintenance');

  const v6only = snap({ [M6]: fh('unknown', 'starting') });
  const r6 = applyOverrides(v6only, [ov('force_up')], NOW);
  t.same([...r6.health.members.keys()], [M6]);
  t.equal(r6.health.members.get(M6)?.status, 'up');
});

t.test('the input itself when no override is active', async (t) => {
  const none = applyOverrides(BASE, [], NOW);
  t.equal(none.health, BASE);
  t.equal(none.active.size, 0);
  t.equal(none.nextExpiry, undefined);
  t.notOk('nextExpiry' in none);

  const unknownAction = { ...ov('drain'), action: 'reboot' } as unknown as Override;
  const ignored = applyOverrides(BASE, [unknownAction], NOW);
  t.equal(ignored.health, BASE, 'an action this version does not know is ignored');
  t.equal(overrideReason(unknownAction), undefined);
});
