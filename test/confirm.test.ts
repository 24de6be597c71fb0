import t from 'tap';
import {
  ConfirmOptionsError,
  DEFAULT_CONFIRM,
  createConfirmState,
  earliestDownInMs,
  earliestUpInMs,
  isServing,
  observe,
  type ConfirmState,
} from '../probes/health/confirm.js';

const OK = { ok: true, reason: 'http 200' };
const FAIL = { ok: false, reason: 'refused' };

interface Step {
  at: number;
  status: ConfirmState['status'];
  changed: boolean;
  next: number;
}

/**
 * Drives the machine the way a scheduler would: each check happens
 * nextCheckInMs after the previous one, and `outcome(t)` says whether the
 * backend is healthy at time t.
 */
function simulate(start: ConfirmState, outcome: (t: number) => boolean, untilMs: number): { steps: Step[]; state: ConfirmState } {
  let state = start;
  let now = 0;
  const steps: Step[] = [];
  while (now <= untilMs) {
    const o = observe(state, outcome(now) ? OK : FAIL, now);
    steps.push({ at: now, status: o.state.status, changed: o.changed, next: o.nextCheckInMs });
    state = o.state;
    now += o.nextCheckInMs;
  }
  return { steps, state };
}

t.test('defaults', async (t) => {
  t.same({ ...DEFAULT_CONFIRM }, { rise: 3, fall: 5, intervalMs: 500, recheckMs: 200 });
  const s = createConfirmState({});
  t.equal(s.status, 'unknown');
  t.equal(s.nextCheckInMs, 0, 'first check at once');
  t.ok(Object.isFrozen(s));
  t.throws(() => createConfirmState({ fall: 0 }), ConfirmOptionsError);
  t.throws(() => createConfirmState({ rise: 1.5 }), ConfirmOptionsError);
  t.throws(() => createConfirmState({ recheckMs: 0 }), ConfirmOptionsError);
  t.throws(() => createConfirmState({ intervalMs: Number.NaN }), ConfirmOptionsError);
});

t.test('hard failure: down after exactly fall failures, spaced by recheck', async (t) => {
  let s = createConfirmState({}, 'up');
  let o = observe(s, OK, 0);
  t.equal(o.nextCheckInMs, 500, 'settled up: interval');
  s = o.state;
  const times: number[] = [];
  let now = 500;
  for (let i = 1; i <= 5; i++) {
    o = observe(s, FAIL, now);
    times.push(now);
    if (i < 5) {
      t.equal(o.state.status, 'up', `still up after ${i} failure(s)`);
      t.equal(o.changed, false);
      t.equal(o.nextCheckInMs, 200, 'recheck while confirming');
      t.equal(o.state.failures, i);
    } else {
      t.equal(o.state.status, 'down', 'down on the fifth failure');
      t.equal(o.changed, true);
      t.equal(o.state.changedAt, now);
      t.equal(o.nextCheckInMs, 500, 'settled down: back to interval');
    }
    s = o.state;
    now += o.nextCheckInMs;
  }
  t.same(times, [500, 700, 900, 1100, 1300]);
  t.equal(times[4]! - times[0]!, 800, 'confirmed (fall-1) x recheck after the first failed check');
  t.equal(s.lastReason, 'refused');
  t.notOk(isServing(s));

  // Further failures change nothing and do not grow the counter.
  o = observe(s, FAIL, now);
  t.equal(o.changed, false);
  t.equal(o.state.failures, 5);
  t.equal(o.state.changedAt, 1300);
});

t.test('hard failure at an arbitrary moment is confirmed within W + 0.5 s', async (t) => {
  for (const onset of [1, 250, 499, 500, 777, 1000]) {
    const { steps } = simulate(createConfirmState({}, 'up'), (now) => now < onset, 5000);
    const down = steps.find((s) => s.changed && s.status === 'down');
    t.ok(down, `onset ${onset}: went down`);
    if (down) t.ok(down.at - onset <= 1500, `onset ${onset}: down ${down.at - onset} ms after onset`);
  }
});

t.test('a blip shorter than (fall-1) x recheck never flips, whatever its phase', async (t) => {
  const blip = 799;
  for (let onset = 0; onset <= 1000; onset += 10) {
    const { steps } = simulate(createConfirmState({}, 'up'), (now) => !(now >= onset && now < onset + blip), 4000);
    const flipped = steps.some((s) => s.changed);
    if (flipped) {
      t.fail(`blip at ${onset} flipped`);
      return;
    }
  }
  t.pass('no flip for any phase');
  // And one long enough does flip.
  const { steps } = simulate(createConfirmState({}, 'up'), (now) => !(now >= 500 && now < 1500), 4000);
  t.ok(steps.some((s) => s.changed && s.status === 'down'), 'a 1 s outage aligned with the checks is confirmed');
});

t.test('blip: fewer than fall failures, then success, resets the streak', async (t) => {
  let s = createConfirmState({}, 'up');
  for (let i = 0; i < 4; i++) s = observe(s, FAIL, i * 200).state;
  t.equal(s.status, 'up');
  const o = observe(s, OK, 800);
  t.equal(o.changed, false);
  t.equal(o.state.failures, 0);
  t.equal(o.nextCheckInMs, 500, 'streak over: back to interval');
  s = o.state;
  for (let i = 0; i < 4; i++) s = observe(s, FAIL, 1300 + i * 200).state;
  t.equal(s.status, 'up', 'a new streak starts from zero');
});

t.test('rise: up after rise consecutive successes, rechecking', async (t) => {
  let s = createConfirmState({}, 'down');
  let o = observe(s, FAIL, 0);
  t.equal(o.nextCheckInMs, 500);
  s = o.state;
  o = observe(s, OK, 500);
  t.equal(o.state.status, 'down');
  t.equal(o.nextCheckInMs, 200, 'success while down: recheck');
  o = observe(o.state, OK, 700);
  t.equal(o.state.status, 'down');
  o = observe(o.state, FAIL, 900);
  t.equal(o.state.successes, 0, 'a failure breaks the rise streak');
  t.equal(o.nextCheckInMs, 500);
  s = o.state;
  for (let i = 0; i < 3; i++) {
    o = observe(s, OK, 1400 + i * 200);
    s = o.state;
  }
  t.equal(s.status, 'up');
  t.equal(o.changed, true);
  t.equal(o.nextCheckInMs, 500);
  t.ok(isServing(s));
});

t.test('unknown start', async (t) => {
  const s0 = createConfirmState({});
  t.ok(isServing(s0), 'unknown is served as up');
  let o = observe(s0, OK, 0);
  t.equal(o.state.status, 'unknown');
  t.equal(o.nextCheckInMs, 200, 'unknown resolves at the recheck pace');
  o = observe(o.state, OK, 200);
  o = observe(o.state, OK, 400);
  t.equal(o.state.status, 'up');
  t.equal(o.changed, true, 'unknown → up is a change');

  let s = createConfirmState({});
  for (let i = 0; i < 4; i++) {
    o = observe(s, FAIL, i * 200);
    t.equal(o.nextCheckInMs, 200);
    s = o.state;
  }
  t.equal(s.status, 'unknown', 'fall failures are needed from unknown too');
  o = observe(s, FAIL, 800);
  t.equal(o.state.status, 'down');
  t.equal(o.changed, true);

  const quick = createConfirmState({ rise: 1, fall: 1 });
  t.equal(observe(quick, FAIL, 0).state.status, 'down', 'fall=1 flips on one failure (PowerDNS-like)');
  t.equal(observe(quick, OK, 0).state.status, 'up');
});

t.test('observe never mutates its input', async (t) => {
  const s = createConfirmState({}, 'up');
  const snapshot = { ...s };
  const o = observe(s, FAIL, 10);
  t.same({ ...s }, snapshot);
  t.not(o.state, s);
  t.ok(Object.isFrozen(o.state));
});

t.test('earliestDownInMs', async (t) => {
  const opts = DEFAULT_CONFIRM;
  let s = createConfirmState({}, 'up');
  t.equal(earliestDownInMs(s), 800, 'fresh: first check now, then 4 rechecks');
  s = observe(s, OK, 0).state;
  t.equal(earliestDownInMs(s, opts), 500 + 4 * 200, 'settled up: interval, then fall-1 rechecks');
  t.equal(earliestDownInMs(s, opts, 300), 200 + 4 * 200, 'measured from now');
  t.equal(earliestDownInMs(s, opts, 5000), 4 * 200, 'overdue check: could run at once');
  s = observe(s, FAIL, 500).state;
  t.equal(earliestDownInMs(s), 4 * 200, 'one failure in: 4 more');
  s = observe(s, FAIL, 700).state;
  s = observe(s, FAIL, 900).state;
  s = observe(s, FAIL, 1100).state;
  t.equal(earliestDownInMs(s), 200, 'last failure needed is one recheck away');
  s = observe(s, FAIL, 1300).state;
  t.equal(s.status, 'down');
  t.equal(earliestDownInMs(s), 0);

  let u = createConfirmState({});
  u = observe(u, OK, 0).state;
  t.equal(earliestDownInMs(u), 200 + 4 * 200, 'unknown rechecks, so the window starts one recheck out');

  // The bound is tight: the simulated scheduler goes down exactly then.
  const start = observe(createConfirmState({}, 'up'), OK, 0).state;
  const bound = earliestDownInMs(start);
  let st = start;
  let now = 0;
  while (st.status !== 'down') {
    now += st.nextCheckInMs;
    st = observe(st, FAIL, now).state;
  }
  t.equal(now, bound, 'bound equals the real earliest down time');

  const custom = createConfirmState({ fall: 2, recheckMs: 100, intervalMs: 1000 }, 'up');
  t.equal(earliestDownInMs(observe(custom, OK, 0).state), 1100);
});

t.test('earliestUpInMs', async (t) => {
  let s = createConfirmState({}, 'down');
  s = observe(s, FAIL, 0).state;
  t.equal(earliestUpInMs(s), 500 + 2 * 200);
  s = observe(s, OK, 500).state;
  t.equal(earliestUpInMs(s), 2 * 200);
  t.equal(earliestUpInMs(createConfirmState({}, 'up')), 0);
});
