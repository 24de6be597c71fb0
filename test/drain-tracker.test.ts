// The drain tracker with explicit clock values: who counts as the population
// of a change, when each one re-fetched, the share thresholds, lagging and
// overdue, and the memory bounds.

import t from 'tap';
import {
  DrainChangeError,
  DrainOptionsError,
  DrainTracker,
  type ChangeDrain,
  type DrainTrackerOptions,
} from '../server/drain/tracker.js';

const SVC = 'www.example.test.';

function change(tr: DrainTracker, at: number, epoch = 1, oldTtl = 30, service = SVC): void {
  tr.change(service, { at, epoch, from: `old-${epoch}`, to: `new-${epoch}`, oldTtl });
}

/** The only service in the report must be `service`; returns its changes, newest first. */
function changesOf(tr: DrainTracker, now: number, service = SVC): readonly ChangeDrain[] {
  const r = tr.report(now, service);
  if (r.services.length !== 1 || r.services[0]!.service !== service) throw new Error(`no report for ${service}: ${JSON.stringify(r)}`);
  return r.services[0]!.changes;
}

function only(tr: DrainTracker, now: number, service = SVC): ChangeDrain {
  const cs = changesOf(tr, now, service);
  if (cs.length !== 1) throw new Error(`expected one change, got ${cs.length}`);
  return cs[0]!;
}

const ip = (i: number): string => `192.0.2.${i}`;

t.test('the population is the resolvers seen within activeWindowMs up to the change', async (t) => {
  const tr = new DrainTracker({ activeWindowMs: 60_000, graceMs: 0 });
  tr.observe(SVC, 'too-old', 39_999);
  tr.observe(SVC, 'edge', 40_000); // exactly at - window: inside
  tr.observe(SVC, 'recent', 99_000);
  tr.observe(SVC, 'recent', 99_500);
  tr.observe(SVC, 'same-ms', 100_000); // same millisecond as the change: before it
  tr.observe('other.example.test.', 'elsewhere', 99_000); // another service's resolver
  change(tr, 100_000, 7, 10);

  const c = only(tr, 100_001);
  t.equal(c.population, 3);
  t.equal(c.refetched, 0);
  t.equal(c.ratio, 0);
  t.equal(c.epoch, 7);
  t.equal(c.from, 'old-7');
  t.equal(c.to, 'new-7');
  t.equal(c.oldTtl, 10);
  t.equal(c.at, 100_000);
  t.equal(c.expectedDoneAt, 110_000);
  t.same(c.lagging, [], 'nothing lagging before the old TTL has run out');
  t.notOk(c.overdue);

  const late = only(tr, 110_001);
  t.ok(late.overdue);
  t.same(
    late.lagging,
    [
      { client: 'recent', lastSeenBeforeMs: 500, queries: 2 },
      { client: 'same-ms', lastSeenBeforeMs: 0, queries: 1 },
      { client: 'edge', lastSeenBeforeMs: 60_000, queries: 1 },
    ],
    'the three in the window, each with its last query before the change and its count',
  );
  t.equal(changesOf(tr, 0, SVC).length, 1);
  t.same(changesOf(tr, 100_001, 'other.example.test.'), [], 'the other service has no change');
});

t.test('a resolver seen after `at` when change() runs is not in the population', async (t) => {
  const tr = new DrainTracker();
  tr.observe(SVC, 'a', 1_000);
  tr.observe(SVC, 'b', 1_000);
  tr.observe(SVC, 'b', 2_500); // the change is reported late, at 2000
  change(tr, 2_000);
  const c = only(tr, 3_000);
  t.equal(c.population, 1);
  tr.observe(SVC, 'a', 3_000);
  t.equal(only(tr, 3_000).refetched, 1);
});

t.test('re-fetch times and p50/p90/p99 are the ceil(share × population)-th re-fetch', async (t) => {
  const tr = new DrainTracker();
  for (let i = 0; i < 100; i++) tr.observe(SVC, `r${i}`, 1_000 + i);
  const at = 10_000;
  change(tr, at);
  tr.observe(SVC, 'r0', at); // same millisecond as the change: not a re-fetch
  t.equal(only(tr, at).refetched, 0);

  for (let k = 1; k <= 100; k++) {
    tr.observe(SVC, `r${100 - k}`, at + k * 10);
    if (k === 49) {
      const c = only(tr, at + k * 10);
      t.equal(c.refetched, 49);
      t.equal(c.ratio, 0.49);
      t.notOk('p50Ms' in c, 'p50 absent until reached');
    }
    if (k === 50) t.equal(only(tr, at + k * 10).p50Ms, 500);
    if (k === 98) t.notOk('p99Ms' in only(tr, at + k * 10));
    // A repeat from a resolver that already re-fetched changes nothing.
    tr.observe(SVC, `r${100 - k}`, at + k * 10 + 5);
  }
  const c = only(tr, at + 2_000);
  t.equal(c.population, 100);
  t.equal(c.refetched, 100);
  t.equal(c.ratio, 1);
  t.equal(c.p50Ms, 500);
  t.equal(c.p90Ms, 900);
  t.equal(c.p99Ms, 990);
  t.equal(c.newResolvers, 0);
  const after = only(tr, at + 1_000_000);
  t.notOk(after.overdue, 'fully drained is never overdue');
  t.same(after.lagging, []);
});

t.test('the share thresholds for populations where rounding would differ from ceil', async (t) => {
  // population: the re-fetch count at which 50%, 90%, 99% are reached (by hand: ceil(share × n)).
  const table: [number, number, number, number][] = [
    [1, 1, 1, 1],
    [2, 1, 2, 2],
    [3, 2, 3, 3],
    [7, 4, 7, 7],
    [16, 8, 15, 16],
    [60, 30, 54, 60],
    [101, 51, 91, 100],
    [1000, 500, 900, 990],
  ];
  for (const [n, k50, k90, k99] of table) {
    const tr = new DrainTracker();
    for (let i = 0; i < n; i++) tr.observe(SVC, `r${i}`, i);
    change(tr, 5_000);
    for (let i = 1; i <= n; i++) tr.observe(SVC, `r${i - 1}`, 5_000 + i * 10);
    const c = only(tr, 5_000 + n * 10);
    t.same([c.p50Ms, c.p90Ms, c.p99Ms], [k50 * 10, k90 * 10, k99 * 10], `population ${n}`);
  }
});

t.test('a small population: one re-fetch can reach several shares', async (t) => {
  const tr = new DrainTracker();
  for (const c of ['a', 'b', 'c']) tr.observe(SVC, c, 0);
  change(tr, 100);
  tr.observe(SVC, 'b', 130);
  t.same([only(tr, 130).p50Ms, only(tr, 130).p90Ms], [undefined, undefined], 'ceil(1.5) = 2 re-fetches needed');
  tr.observe(SVC, 'a', 170);
  const two = only(tr, 170);
  t.equal(two.p50Ms, 70);
  t.notOk('p90Ms' in two);
  tr.observe(SVC, 'c', 250);
  const three = only(tr, 250);
  t.same([three.p50Ms, three.p90Ms, three.p99Ms], [70, 150, 150]);
});

t.test('overdue and lagging after oldTtl + grace, most active first, capped at topLagging', async (t) => {
  const mk = (opts: DrainTrackerOptions): DrainTracker => {
    const tr = new DrainTracker(opts);
    const queries: [string, number][] = [
      ['one', 1_000],
      ['three', 1_100],
      ['three', 1_200],
      ['three', 1_300],
      ['one-recent', 1_900],
      ['two', 1_400],
      ['two', 1_500],
      ['one-tie-b', 1_600],
      ['one-tie-a', 1_600],
      ['refetcher', 1_000],
      ['refetcher', 1_000],
      ['refetcher', 1_000],
      ['refetcher', 1_000],
    ];
    for (const [c, at] of queries) tr.observe(SVC, c, at);
    change(tr, 2_000, 1, 30);
    tr.observe(SVC, 'refetcher', 2_001);
    return tr;
  };

  const tr = mk({ graceMs: 5_000 });
  const due = 2_000 + 30_000 + 5_000;
  const atDue = only(tr, due);
  t.equal(atDue.expectedDoneAt, due);
  t.notOk(atDue.overdue, 'not overdue at exactly expectedDoneAt');
  t.same(atDue.lagging, []);
  const late = only(tr, due + 1);
  t.ok(late.overdue);
  t.equal(late.population, 7);
  t.equal(late.refetched, 1);
  t.same(
    late.lagging.map((l) => l.client),
    ['three', 'two', 'one-recent', 'one-tie-a', 'one-tie-b', 'one'],
    'queries descending, then the most recently seen, then by address',
  );
  t.same(late.lagging[0], { client: 'three', lastSeenBeforeMs: 700, queries: 3 });

  const capped = only(mk({ graceMs: 5_000, topLagging: 2 }), due + 1);
  t.same(
    capped.lagging.map((l) => l.client),
    ['three', 'two'],
  );
  t.ok(capped.overdue);
  t.same(only(mk({ topLagging: 0 }), due + 1).lagging, [], 'topLagging 0 lists none');
  t.equal(only(mk({ graceMs: 0 }), 32_001).overdue, true, 'graceMs shifts expectedDoneAt');
  t.equal(only(mk({ graceMs: 0 }), 32_000).overdue, false);
});

t.test('newResolvers: asked after the change and not in its population, each counted once', async (t) => {
  const tr = new DrainTracker({ activeWindowMs: 1_000 });
  tr.observe(SVC, 'stale', 0); // known, but outside the window
  tr.observe(SVC, 'active', 9_500);
  change(tr, 10_000);
  tr.observe(SVC, 'fresh', 10_000); // same millisecond: not yet after the change
  t.equal(only(tr, 10_000).newResolvers, 0);
  tr.observe(SVC, 'fresh', 10_001);
  tr.observe(SVC, 'fresh', 10_002);
  tr.observe(SVC, 'stale', 10_003);
  tr.observe(SVC, 'other', 10_004);
  tr.observe(SVC, 'active', 10_005);
  const c = only(tr, 10_010);
  t.equal(c.population, 1);
  t.equal(c.refetched, 1);
  t.equal(c.newResolvers, 3);
  t.equal(tr.report(10_010, SVC).services[0]!.resolversTracked, 4);
});

t.test('two overlapping changes are measured each on its own', async (t) => {
  const tr = new DrainTracker({ graceMs: 0 });
  tr.observe(SVC, 'A', 100);
  tr.observe(SVC, 'B', 200);
  tr.observe(SVC, 'C', 300);
  change(tr, 1_000, 1, 10);
  tr.observe(SVC, 'B', 1_500); // re-fetch of change 1
  tr.observe(SVC, 'D', 1_600); // new for change 1
  change(tr, 2_000, 2, 10); // change 1 is still draining
  tr.observe(SVC, 'A', 2_500); // first query after both: a re-fetch for each
  tr.observe(SVC, 'D', 2_600); // in change 2's population only
  tr.observe(SVC, 'E', 2_700); // new for both

  const [c2, c1] = changesOf(tr, 2_800);
  t.equal(c2!.epoch, 2, 'newest first');
  t.equal(c1!.epoch, 1);

  t.equal(c1!.population, 3);
  t.equal(c1!.refetched, 2);
  t.equal(c1!.newResolvers, 2);
  t.equal(c1!.p50Ms, 1_500, 'second of three re-fetches: A at 2500');

  t.equal(c2!.population, 4, 'A, B, C, D were all active in the window before change 2');
  t.equal(c2!.refetched, 2);
  t.equal(c2!.newResolvers, 1);
  t.equal(c2!.p50Ms, 600, 'second of four: D at 2600');

  const [l2, l1] = changesOf(tr, 12_001);
  t.same(l1!.lagging.map((l) => l.client), ['C']);
  t.same(l2!.lagging.map((l) => l.client).sort(), ['B', 'C'], 'B re-fetched change 1 but not change 2');
  t.same(l2!.lagging.find((l) => l.client === 'B'), { client: 'B', lastSeenBeforeMs: 500, queries: 2 });
});

t.test('changes with the same `at` are allowed; an earlier `at` is raised to the previous one', async (t) => {
  const tr = new DrainTracker();
  tr.observe(SVC, 'a', 10);
  change(tr, 100, 1);
  change(tr, 100, 2);
  tr.observe(SVC, 'a', 101);
  t.same(
    changesOf(tr, 101).map((c) => [c.epoch, c.refetched]),
    [
      [2, 1],
      [1, 1],
    ],
  );
  // A wall clock stepped back between two changes: the later change cannot be measured as earlier.
  tr.observe(SVC, 'b', 95);
  change(tr, 90, 3);
  const stepped = changesOf(tr, 101)[0]!;
  t.equal(stepped.epoch, 3);
  t.equal(stepped.at, 100, 'raised to the previous change');
  t.equal(stepped.population, 1, 'b (95) is in the window up to 100; a (101) is after it');
  tr.observe(SVC, 'b', 102);
  t.same(
    changesOf(tr, 102).map((c) => [c.epoch, c.refetched, c.newResolvers, c.p50Ms]),
    [
      [3, 1, 0, 2],
      [2, 1, 1, 1],
      [1, 1, 1, 1],
    ],
  );
});

t.test('a change with bad numbers is refused with the context', async (t) => {
  const tr = new DrainTracker();
  change(tr, 100, 1);
  const err = t.throws(() => change(tr, 200, 4, -1));
  t.ok(err instanceof DrainChangeError);
  t.equal((err as DrainChangeError).name, 'DrainChangeError');
  t.equal((err as DrainChangeError).service, SVC);
  t.equal((err as DrainChangeError).info.oldTtl, -1);
  t.match((err as DrainChangeError).message, /oldTtl/);
  t.throws(() => change(tr, Number.NaN, 5), DrainChangeError, 'NaN at');
  t.throws(() => change(tr, 300, 6, Number.POSITIVE_INFINITY), DrainChangeError, 'infinite oldTtl');
  t.equal(changesOf(tr, 300).length, 1, 'refused changes left no trace');
});

t.test('a change with an empty population: ratio 1, never overdue, no percentiles', async (t) => {
  const seen: number[] = [];
  const tr = new DrainTracker({ graceMs: 0, onThreshold: (_s, share) => seen.push(share) });
  change(tr, 1_000, 1, 1);
  tr.observe(SVC, 'late', 1_500);
  const c = only(tr, 1_000_000);
  t.equal(c.population, 0);
  t.equal(c.ratio, 1);
  t.notOk(c.overdue);
  t.notOk('p50Ms' in c || 'p90Ms' in c || 'p99Ms' in c);
  t.equal(c.newResolvers, 1);
  t.same(seen, []);
});

t.test('maxResolversPerService evicts the least recently seen', async (t) => {
  const tr = new DrainTracker({ maxResolversPerService: 3 });
  tr.observe(SVC, 'a', 1);
  tr.observe(SVC, 'b', 2);
  tr.observe(SVC, 'c', 3);
  tr.observe(SVC, 'a', 4); // a is now the most recent; b the least
  tr.observe(SVC, 'd', 5);
  t.equal(tr.report(6, SVC).services[0]!.resolversTracked, 3);
  change(tr, 10);
  const c = only(tr, 10_000_000);
  t.equal(c.population, 3);
  t.same(c.lagging.map((l) => l.client).sort(), ['a', 'c', 'd'], 'b was evicted before the change');

  for (let i = 0; i < 50; i++) tr.observe(SVC, ip(i), 20 + i);
  t.equal(tr.report(100, SVC).services[0]!.resolversTracked, 3, 'the bound holds under many new resolvers');
  // 'a' was evicted from the LRU by now, but it is still in the change's population.
  tr.observe(SVC, 'a', 200);
  tr.observe(SVC, 'a', 201);
  for (let i = 0; i < 5; i++) tr.observe(SVC, ip(100 + i), 300 + i);
  tr.observe(SVC, 'a', 400); // evicted again and back: its re-fetch is not counted twice
  const after = only(tr, 500);
  t.equal(after.refetched, 1);
  t.equal(after.p50Ms, undefined);
  t.equal(after.population, 3);
});

t.test('maxServices evicts the least recently queried service', async (t) => {
  const tr = new DrainTracker({ maxServices: 2 });
  tr.observe('s1.', 'x', 1);
  tr.observe('s2.', 'x', 2);
  tr.observe('s1.', 'x', 3);
  tr.observe('s3.', 'x', 4);
  t.same(
    tr.report(5).services.map((s) => s.service),
    ['s1.', 's3.'],
  );
  change(tr, 10, 1, 30, 's4.'); // a change creates the service, and touches it
  t.same(
    tr.report(11).services.map((s) => s.service),
    ['s3.', 's4.'],
  );
  tr.observe('s3.', 'x', 12);
  tr.observe('s3.', 'y', 13); // repeated touches of the newest service keep the order
  tr.observe('s5.', 'x', 14);
  t.same(
    tr.report(15).services.map((s) => s.service),
    ['s3.', 's5.'],
  );
});

t.test('maxChangesPerService drops the oldest change', async (t) => {
  const tr = new DrainTracker({ maxChangesPerService: 2 });
  tr.observe(SVC, 'a', 1);
  change(tr, 10, 1);
  change(tr, 20, 2);
  change(tr, 30, 3);
  tr.observe(SVC, 'a', 40);
  const cs = changesOf(tr, 50);
  t.same(
    cs.map((c) => [c.epoch, c.population, c.refetched]),
    [
      [3, 1, 1],
      [2, 1, 1],
    ],
  );
});

t.test('forget drops a service and everything about it', async (t) => {
  const tr = new DrainTracker();
  tr.observe(SVC, 'a', 1);
  tr.observe('kept.', 'a', 1);
  change(tr, 10);
  tr.forget(SVC);
  tr.forget('never-seen.');
  t.same(tr.report(20, SVC).services, []);
  t.same(
    tr.report(20).services.map((s) => s.service),
    ['kept.'],
  );
  tr.observe(SVC, 'b', 30);
  const again = tr.report(31, SVC).services[0]!;
  t.equal(again.resolversTracked, 1, 'starts afresh');
  t.same(again.changes, []);
});

t.test('onThreshold is called once per share, with the time after the change', async (t) => {
  const calls: [string, number, number][] = [];
  const tr = new DrainTracker({ onThreshold: (s, share, afterMs) => calls.push([s, share, afterMs]) });
  for (const c of ['a', 'b', 'c', 'd']) tr.observe(SVC, c, 0);
  tr.observe('solo.', 'z', 0);
  change(tr, 1_000);
  change(tr, 1_000, 1, 30, 'solo.');
  tr.observe(SVC, 'a', 1_100);
  t.same(calls, [], 'one of four is below half');
  tr.observe(SVC, 'b', 1_200);
  t.same(calls, [[SVC, 0.5, 200]]);
  tr.observe(SVC, 'b', 1_250);
  tr.observe(SVC, 'c', 1_300);
  t.equal(calls.length, 1, 'three of four is below 0.9');
  tr.observe(SVC, 'd', 1_400);
  tr.observe(SVC, 'a', 1_500);
  tr.observe(SVC, 'd', 1_600);
  tr.observe('solo.', 'z', 1_700);
  t.same(calls, [
    [SVC, 0.5, 200],
    [SVC, 0.9, 400],
    [SVC, 0.99, 400],
    ['solo.', 0.5, 700],
    ['solo.', 0.9, 700],
    ['solo.', 0.99, 700],
  ]);
});

t.test('report: one service, all services sorted by name, unknown service', async (t) => {
  const tr = new DrainTracker();
  tr.observe('b.', 'x', 1);
  tr.observe('a.', 'x', 1);
  tr.observe('a.', 'y', 2);
  change(tr, 5, 1, 30, 'b.');
  tr.observe('a.', 'x', 6); // 'a.' is now the most recently queried: the report still lists by name
  t.same(
    tr.report(10).services.map((s) => [s.service, s.resolversTracked, s.changes.length]),
    [
      ['a.', 2, 0],
      ['b.', 1, 1],
    ],
  );
  const one = tr.report(10, 'b.');
  t.equal(one.services.length, 1);
  t.equal(one.services[0]!.service, 'b.');
  t.equal(one.services[0]!.changes[0]!.population, 1);
  t.same(tr.report(10, 'nope.').services, []);
});

t.test('options are validated', async (t) => {
  const bad: DrainTrackerOptions[] = [
    { activeWindowMs: -1 },
    { graceMs: Number.NaN },
    { maxResolversPerService: 0 },
    { maxServices: 1.5 },
    { maxChangesPerService: 0 },
    { topLagging: -1 },
  ];
  for (const o of bad) t.throws(() => new DrainTracker(o), DrainOptionsError, JSON.stringify(o));
  t.doesNotThrow(() => new DrainTracker({ activeWindowMs: 0, graceMs: 0, topLagging: 0, maxServices: 1 }));
});
