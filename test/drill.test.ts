// The failover drill (bench/drill), short: TTL 3 s, 2 unbound resolvers, 2
// clients each, so it ends in about 15 s. It runs Vigil from dist/ (npm test
// builds first) and /usr/sbin/unbound. What is asserted is order, never
// speed: the primary's failure is seen before the answer changes, no client
// reaches the secondary before the record changed, traffic ends up all on
// the secondary, and the drain tracker (GET /drain) saw both resolvers come
// back for the new answer. A Vigil without /drain fails this test.

import t from 'tap';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runDrill } from '../bench/drill/run.js';
import { settledOnSecondary, windowShares } from '../bench/drill/timeline.js';
import type { Attempt } from '../bench/drill/clients.js';

t.test('1 s window shares are computed from the events in each window', async (t) => {
  // Every 100 ms: a miss from 0 to 900 ms, a request reaching the secondary from 1000 to 1900 ms.
  const missed = Array.from({ length: 10 }, (_, i) => i * 100);
  const reached = Array.from({ length: 10 }, (_, i) => 1000 + i * 100);
  t.same(windowShares(0, reached, missed, 1000, 1, [0.5, 0.9, 1]), [1400, 1800, 1900]);
  t.same(windowShares(0, reached, missed, 1000, 11, [0.5]), [null], 'windows with too few requests are not judged');
  t.same(windowShares(1000, reached, missed, 1000, 1, [0.5]), [0], 'misses before T0 are left out');

  const a = (at: number, client: number, address: string, outcome: Attempt['outcome'] = 'ok'): Attempt => ({ at, client, resolver: 1, address, outcome, error: undefined });
  const S = '127.0.0.3';
  const attempts = [a(0, 0, '127.0.0.2', 'http-error'), a(100, 0, S), a(150, 1, S), a(2000, 0, S)];
  t.equal(settledOnSecondary(attempts, S, 2, 2100, 2000), true);
  t.equal(settledOnSecondary(attempts, S, 2, 1900, 2000), false, 'not yet held for 2 s');
  t.equal(settledOnSecondary(attempts, S, 3, 2100, 2000), false, 'a client not seen since the last miss');
});

t.test('drill: the primary dies, the record changes, then traffic drains to the secondary', async (t) => {
  const ttl = 3;
  const resolvers = 2;
  const r = await runDrill({ ttl, resolvers, clients: 2, progress: (line) => t.comment(line) });
  const kept = r.keptDir;
  if (kept !== null) {
    // A failed drill keeps its configs and logs; show Vigil's last lines, then remove them.
    const log = join(kept, 'vigil.log');
    if (existsSync(log)) t.comment(`vigil.log:\n${readFileSync(log, 'utf8').trimEnd().split('\n').slice(-10).join('\n')}`);
    t.teardown(() => rmSync(kept, { recursive: true, force: true }));
  }
  t.equal(r.failure, null, 'the drill completed');
  t.equal(r.ok, true);
  const tl = r.timeline;
  if (tl === null) return void t.fail('no timeline');
  t.comment(JSON.stringify({ detected: tl.detected, answerChanged: tl.answerChanged, drain: tl.drain, resolvers: tl.resolverSwitch, trafficFirst: tl.trafficFirst, traffic: tl.traffic, gap: tl.gap }));

  t.equal(tl.ttlBefore, ttl, 'resolvers cached the steady TTL before the kill');
  t.not(tl.detected, null, 'the failure was seen in /state');
  t.not(tl.answerChanged, null, 'the answer change was seen in /state');
  if (tl.detected === null || tl.answerChanged === null) return;
  t.ok(tl.detected.at <= tl.answerChanged.at, 'failure detected no later than the answer changed');
  t.match(tl.answerChanged.from, /127\.0\.0\.2/);
  t.match(tl.answerChanged.to, /127\.0\.0\.3/);

  // The change happened after the last poll that still showed the old answer was sent.
  t.not(tl.trafficFirst, null, 'the secondary logged client traffic');
  if (tl.trafficFirst === null) return;
  t.ok(tl.trafficFirst >= tl.answerChanged.after, `first request to the secondary (${tl.trafficFirst} ms) after the record changed (> ${tl.answerChanged.after} ms)`);
  t.ok(
    tl.traffic.p50 !== null && tl.traffic.p90 !== null && tl.traffic.all !== null && tl.trafficFirst <= tl.traffic.p50 && tl.traffic.p50 <= tl.traffic.p90 && tl.traffic.p90 <= tl.traffic.all,
    'traffic: first <= 50% <= 90% <= 100%',
  );
  t.equal(tl.resolverSwitch.filter((x) => x !== null).length, resolvers, 'clients of every resolver reached the secondary');
  t.equal(tl.counts.secondaryLogged, tl.counts.clientOkSecondary, "the secondary's own log agrees with what the clients saw");
  t.ok(tl.gap !== null && tl.gap.ms > 0, 'the declaration gap is positive: traffic moved after the record did');

  // The drain tracker (contract: GET /drain).
  const d = tl.drain;
  t.equal(d.available, true, `GET /drain is served${d.reason === null ? '' : ` (${d.reason})`}`);
  t.not(d.changeAt, null, 'the drain tracker recorded the change');
  if (!d.available || d.changeAt === null) return;
  // Same clock (one machine); 250 ms of leeway in case the tracker stamps the verdict rather than the swap.
  t.ok(d.changeAt >= tl.answerChanged.after - 250 && d.changeAt <= tl.answerChanged.at + 250, `/drain's change at ${d.changeAt} ms is where /state saw it [${tl.answerChanged.after}, ${tl.answerChanged.at}]`);
  t.ok(tl.trafficFirst >= d.changeAt, 'no request reached the secondary before the change /drain recorded');
  for (const [i, at] of tl.resolverSwitch.entries()) t.ok(at !== null && at >= d.changeAt, `resolver ${i + 1} switched after the change`);
  // The resolvers cached the old answer with the steady TTL. An oldTtl shortened by the cap
  // Vigil applies while the failure is being confirmed would make expectedDoneAt too early.
  t.equal(d.oldTtl, ttl, 'oldTtl is the longest TTL the old answer was served with');
  t.equal(d.population, resolvers, 'both resolvers (and nothing else) had the old answer');
  t.equal(d.refetched, resolvers, 'both came back for the new one');
  t.not(d.all, null, 'refetched reached the population while polling');
  t.equal(d.overdue, null, 'the tracker never called this drain overdue: it ended within the old TTL');
  t.ok(d.p50 !== null && d.p90 !== null && d.changeAt <= d.p50 && d.p50 <= d.p90, '/drain: change <= p50 <= p90');
  if (d.p90 !== null && tl.resolversSwitched.all !== null) {
    // A resolver re-fetches before any of its clients can use the new answer.
    t.ok(d.p90 <= tl.resolversSwitched.all, `the tracker's 90% (${d.p90} ms) is no later than the last resolver's first client request to the secondary (${tl.resolversSwitched.all} ms)`);
  }
});
