import t from 'tap';
import {
  DampingOptionsError,
  NO_PENALTY,
  addPenalty,
  decayedPenalty,
  releaseAt,
  settleDamping,
  validateDamping,
  type DampingOptions,
  type DampingState,
} from '../probes/health/damping.js';
import { NO_CHECK_YET, createMemberState, isSteady, memberReleaseAt, observeMember, tickMember, type MemberState } from '../probes/health/member.js';
import type { FamilyHealth } from '../probes/health/state.js';

const D: DampingOptions = { enabled: true, penalty: 1000, suppress: 2000, reuse: 750, halfLifeMs: 60_000 };
const OK = { ok: true, reason: 'http 200' };
const FAIL = { ok: false, reason: 'refused' };

t.test('penalty decays by half every half life', async (t) => {
  const s = addPenalty(NO_PENALTY, D, 1_000);
  t.equal(s.penalty, 1000);
  t.equal(decayedPenalty(s, D, 1_000), 1000);
  t.equal(decayedPenalty(s, D, 61_000), 500);
  t.equal(decayedPenalty(s, D, 121_000), 250);
  t.equal(decayedPenalty(s, D, 0), 1000, 'no growth backwards in time');
  t.equal(decayedPenalty(NO_PENALTY, D, 5_000), 0);
});

t.test('suppressed only above suppress; released when decayed to reuse', async (t) => {
  let s: DampingState = NO_PENALTY;
  s = addPenalty(s, D, 0);
  s = addPenalty(s, D, 0);
  t.equal(s.penalty, 2000);
  t.notOk(s.suppressed, 'exactly suppress is not above it');
  s = addPenalty(s, D, 10_000);
  t.ok(s.penalty > 2000);
  t.ok(s.suppressed, 'third flap in quick succession holds the member');
  const at = releaseAt(s, D)!;
  // 2000 * 2^(-10/60) + 1000 = 2781.8...; down to 750 takes log2(2781.8/750) half lives.
  const expected = 10_000 + 60_000 * Math.log2(s.penalty / 750);
  t.ok(at >= expected && at < expected + 1, `release at ${at}, expected ~${expected}`);
  t.ok(decayedPenalty(s, D, at) <= 750);
  t.ok(decayedPenalty(s, D, at - 1) > 750);
  t.equal(settleDamping(s, D, at - 1), s, 'still held just before');
  const released = settleDamping(s, D, at);
  t.notOk(released.suppressed);
  t.equal(releaseAt(released, D), undefined);
  t.ok(Math.abs(released.penalty - 750) < 1, 'penalty carried on, decayed');
});

t.test('hysteresis: between reuse and suppress, a held member stays held and a free one stays free', async (t) => {
  const opts: DampingOptions = { ...D, penalty: 1500, suppress: 2000, reuse: 1000 };
  let s = addPenalty(addPenalty(NO_PENALTY, opts, 0), opts, 0); // 3000, held
  t.ok(s.suppressed);
  // Halfway between: 1500 after one half life.
  t.equal(settleDamping(s, opts, 60_000).suppressed, true);
  t.equal(releaseAt(s, opts), Math.ceil(60_000 * Math.log2(3)));
  s = settleDamping(s, opts, 200_000);
  t.notOk(s.suppressed);
  // Released at ~305 (decayed from 3000 at 0 to ~297 at 200 s), one more flap: ~1797, below suppress.
  s = addPenalty(s, opts, 200_000);
  t.ok(s.penalty > opts.reuse && s.penalty < opts.suppress);
  t.notOk(s.suppressed, 'above reuse is not enough to be held');
});

t.test('a flap while held pushes the release back', async (t) => {
  const s1 = addPenalty(addPenalty(addPenalty(NO_PENALTY, D, 0), D, 0), D, 0);
  const r1 = releaseAt(s1, D)!;
  const s2 = addPenalty(s1, D, 30_000);
  t.ok(s2.suppressed);
  t.ok(releaseAt(s2, D)! > r1);
});

t.test('disabled damping never holds', async (t) => {
  const off = { ...D, enabled: false };
  let s: DampingState = NO_PENALTY;
  for (let i = 0; i < 10; i++) s = addPenalty(s, off, i);
  t.notOk(s.suppressed);
  t.equal(s, NO_PENALTY);
  validateDamping({ enabled: false, penalty: -1, suppress: 0, reuse: 5, halfLifeMs: 0 });
});

t.test('validateDamping', async (t) => {
  validateDamping(D);
  t.throws(() => validateDamping({ ...D, reuse: 2000 }), DampingOptionsError);
  t.throws(() => validateDamping({ ...D, halfLifeMs: 0 }), DampingOptionsError);
  t.throws(() => validateDamping({ ...D, penalty: Number.NaN }), DampingOptionsError);
});

// ------------------------------------------------------------ member state

const PROBE = { rise: 2, fall: 3, intervalMs: 1000, recheckMs: 100 };

interface Run {
  state: MemberState;
  now: number;
  published: Array<{ at: number; health: FamilyHealth }>;
}

/** Drives a member the way the worker does: each check nextCheckInMs after the previous one's start. */
function drive(run: Run, ok: boolean, count = 1): Run {
  let { state, now } = run;
  const published = [...run.published];
  for (let i = 0; i < count; i++) {
    const o = observeMember(state, ok ? OK : FAIL, now);
    state = o.state;
    if (o.changed) published.push({ at: now, health: o.health });
    now += o.nextCheckInMs;
  }
  return { state, now, published };
}

t.test('member: initial status, since, and first verdicts', async (t) => {
  const s = createMemberState({ probe: PROBE, damping: D, initial: 'unknown' }, 5_000);
  t.same(s.health, { status: 'unknown', since: 5_000, reason: NO_CHECK_YET, held: false });
  const o = observeMember(s, OK, 5_000);
  t.equal(o.health.status, 'unknown');
  t.equal(o.health.reason, 'http 200');
  t.notOk(o.changed);
  // Unknown: the earliest verdict either way; rise 2 after one success is one recheck away.
  t.equal(o.health.nextChangeAt, 5_100);
  const o2 = observeMember(o.state, OK, 5_100);
  t.ok(o2.changed);
  t.same(o2.health, { status: 'up', since: 5_100, reason: 'http 200', held: false });
  t.equal(o2.health.nextChangeAt, undefined, 'settled');
  t.ok(isSteady(o2.state));

  const down = createMemberState({ probe: PROBE, damping: D, initial: 'down' }, 0);
  t.equal(down.health.status, 'down');
  const first = observeMember(down, FAIL, 0);
  t.notOk(first.changed);
  t.equal(first.health.nextChangeAt, undefined);
});

t.test('member: nextChangeAt follows a streak against the status', async (t) => {
  let r: Run = { state: createMemberState({ probe: PROBE, damping: D, initial: 'up' }, 0), now: 0, published: [] };
  r = drive(r, true);
  t.equal(r.state.health.nextChangeAt, undefined);
  t.equal(r.now, 1000);
  r = drive(r, false); // failure at 1000: down earliest after 2 more rechecks
  t.equal(r.state.health.status, 'up');
  t.equal(r.state.health.nextChangeAt, 1000 + 2 * 100);
  t.notOk(isSteady(r.state));
  r = drive(r, false); // at 1100
  t.equal(r.state.health.nextChangeAt, 1200);
  r = drive(r, false); // at 1200: down
  t.same(r.published.at(-1), { at: 1200, health: { status: 'down', since: 1200, reason: 'refused', held: false } });
  r = drive(r, true); // 2200: success while down, rise 2
  t.equal(r.state.health.nextChangeAt, 2300);
  r = drive(r, false); // streak broken
  t.equal(r.state.health.nextChangeAt, undefined);
  t.equal(r.state.health.since, 1200);
});

t.test('member: a flapping member is held down, reported held while its checks pass, then released', async (t) => {
  const damping: DampingOptions = { enabled: true, penalty: 1000, suppress: 1500, reuse: 800, halfLifeMs: 10_000 };
  let r: Run = { state: createMemberState({ probe: PROBE, damping, initial: 'unknown' }, 0), now: 0, published: [] };
  r = drive(r, true, 2); // up at 100
  r = drive(r, false, 3); // down: penalty 1000
  t.equal(r.state.health.status, 'down');
  t.notOk(r.state.damping.suppressed);
  const firstDown = r.published.at(-1)!.at;
  r = drive(r, true, 2); // up again
  t.equal(r.state.health.status, 'up');
  r = drive(r, false, 3); // second flap: ~1000·2^(-Δ/10s) + 1000 > 1500
  const secondDown = r.published.at(-1)!.at;
  t.ok(r.state.damping.suppressed, 'held after the second flap');
  t.same(r.state.health, { status: 'down', since: secondDown, reason: 'refused', held: false }, 'down for real: not "held"');
  const release = memberReleaseAt(r.state)!;
  const expectedPenalty = 1000 * Math.pow(2, -(secondDown - firstDown) / 10_000) + 1000;
  t.equal(release, secondDown + Math.ceil(10_000 * Math.log2(expectedPenalty / 800)));

  r = drive(r, true, 1);
  t.equal(r.state.health.nextChangeAt, release, 'coming back: the release dominates the rise');
  r = drive(r, true, 1); // checks pass: confirm says up, damping holds it
  t.equal(r.state.confirm.status, 'up');
  t.same(r.published.at(-1)!.health, { status: 'down', since: secondDown, reason: 'http 200', held: true, nextChangeAt: release });
  r = drive(r, true, 3);
  t.equal(r.state.health.status, 'down', 'still held while checks pass');
  t.ok(r.now < release);

  // The worker's release timer.
  t.notOk(tickMember(r.state, release - 1).changed);
  t.equal(tickMember(r.state, release - 1).state, r.state);
  const u = tickMember(r.state, release);
  t.ok(u.changed);
  t.same(u.health, { status: 'up', since: release, reason: 'http 200', held: false });
  t.equal(memberReleaseAt(u.state), undefined);

  // Without the timer, the next check after the release ends the hold too.
  const viaCheck = observeMember(r.state, OK, release + 5);
  t.same(viaCheck.health, { status: 'up', since: release + 5, reason: 'http 200', held: false });
});

t.test('member: held and failing again is plain down, no longer held', async (t) => {
  const damping: DampingOptions = { enabled: true, penalty: 1000, suppress: 1500, reuse: 800, halfLifeMs: 10_000 };
  let r: Run = { state: createMemberState({ probe: PROBE, damping, initial: 'up' }, 0), now: 0, published: [] };
  r = drive(r, false, 3);
  r = drive(r, true, 2);
  r = drive(r, false, 3);
  r = drive(r, true, 2);
  t.same([r.state.health.status, r.state.health.held], ['down', true]);
  r = drive(r, false, 1);
  t.equal(r.state.health.nextChangeAt, memberReleaseAt(r.state), 'a failure while held: only the release can change the status');
  r = drive(r, false, 2);
  t.same([r.state.health.status, r.state.health.held], ['down', false]);
  t.equal(r.published.at(-1)!.health.held, false, 'the end of "held" is published');
});

t.test('member: first verdict down after a start is not a flap', async (t) => {
  const damping: DampingOptions = { enabled: true, penalty: 1000, suppress: 1500, reuse: 800, halfLifeMs: 10_000 };
  let r: Run = { state: createMemberState({ probe: PROBE, damping, initial: 'unknown' }, 0), now: 0, published: [] };
  r = drive(r, false, 3);
  t.equal(r.state.health.status, 'down');
  t.equal(r.state.damping.penalty, 0);
});
