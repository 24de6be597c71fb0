// RedisStore against a real redis-server (started here on an ephemeral
// loopback port), several stores standing in for several nodes; and the
// in-process LocalStore. Waits poll for the condition; nothing assumes how
// fast a message travels.

import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { LocalStore } from '../probes/replication/local-store.js';
import { RedisSettingsError } from '../probes/replication/redis-options.js';
import { RedisStore, type RedisStoreSettings } from '../probes/replication/redis-store.js';
import type { AuditEntry, NodeReport, Override, Verdict } from '../probes/replication/types.js';
import { freeTcpPort, startRedis, type RedisServer } from './helpers/redis.js';
import { captureLog } from './helpers/log-capture.js';

const WAIT_MS = 15_000;

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(25);
  }
  throw new Error(`timed out waiting for: ${what}`);
}

function settings(id: string, url: string, prefix: string, over: Partial<RedisStoreSettings> = {}): RedisStoreSettings {
  return {
    node: { id, pop: `pop-${id}` },
    redis: { url, prefix },
    quorum: { mode: 'majority' },
    staleAfterMs: 3000,
    heartbeatMs: 200,
    resyncMs: 1000,
    outageGraceMs: 60_000,
    divergenceAfterMs: 10_000,
    ...over,
  };
}

function v(status: Verdict['status'], reason = status === 'up' ? 'http 200' : 'http 503'): Verdict {
  return { status, since: 1_700_000_000_000, reason };
}

function report(store: RedisStore, node: string): NodeReport | undefined {
  return store.reports().find((r) => r.node === node);
}

/** Log lines written by pino, kept as text. */
function capture(): { logger: pino.Logger; text: () => string } {
  const c = captureLog('debug');
  return { logger: c.log, text: c.text };
}

async function withRedis(t: Test, opts: Parameters<typeof startRedis>[0] = {}): Promise<RedisServer> {
  const server = await startRedis(opts);
  t.teardown(() => server.stop());
  return server;
}

function rawClient(t: Test, url: string): Redis {
  const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  c.on('error', () => undefined);
  t.teardown(() => {
    c.disconnect();
  });
  return c;
}

async function started(t: Test, s: RedisStoreSettings, opts: ConstructorParameters<typeof RedisStore>[1] = {}): Promise<RedisStore> {
  const store = new RedisStore(s, opts);
  t.teardown(() => store.close());
  await store.start();
  return store;
}

t.test('verdicts and served epochs propagate; deleted verdicts disappear', async (t) => {
  const redis = await withRedis(t);
  const a = await started(t, settings('a', redis.url, 'vp'));
  const b = await started(t, settings('b', redis.url, 'vp'));
  const c = await started(t, settings('c', redis.url, 'vp'));
  t.ok(a.connected && b.connected && c.connected, 'all three connected after start()');

  a.publishVerdicts(new Map([['www.example.test./primary|v4', v('up')], ['www.example.test./primary|v6', v('down')]]));
  await waitFor('b and c see a', () =>
    [b, c].every((s) => report(s, 'a')?.verdicts.get('www.example.test./primary|v6')?.status === 'down'),
  );
  const ra = report(b, 'a');
  t.equal(ra?.pop, 'pop-a');
  t.same(ra?.verdicts.get('www.example.test./primary|v4'), v('up'));
  t.same(ra?.verdicts.get('www.example.test./primary|v6'), v('down'));
  t.notOk(report(a, 'a'), 'a node never reports itself');
  t.same(
    a.reports().map((r) => r.node).sort(),
    ['b', 'c'],
    'a knows the other two (from their heartbeats) even before they publish',
  );

  // The documented key layout, read independently of the store.
  const raw = rawClient(t, redis.url);
  await raw.connect();
  t.same(JSON.parse((await raw.hget('vp:node:a', 'www.example.test./primary|v6')) ?? 'null'), v('down'));
  t.match(JSON.parse((await raw.hget('vp:nodes', 'a')) ?? 'null'), { pop: 'pop-a', hb: Number });

  // A full map without v6: the field goes, on every node.
  a.publishVerdicts(new Map([['www.example.test./primary|v4', v('down', 'timeout')]]));
  await waitFor('v6 deleted on b and c', () =>
    [b, c].every((s) => {
      const r = report(s, 'a');
      return r !== undefined && !r.verdicts.has('www.example.test./primary|v6') && r.verdicts.get('www.example.test./primary|v4')?.reason === 'timeout';
    }),
  );
  t.equal(await raw.hexists('vp:node:a', 'www.example.test./primary|v6'), 0, 'deleted from the hash too');

  a.publishServed(new Map([['www.example.test.', 7]]));
  b.publishServed(new Map([['www.example.test.', 6]]));
  await waitFor('served epochs seen', () => report(c, 'a')?.served.get('www.example.test.') === 7 && report(c, 'b')?.served.get('www.example.test.') === 6);
  t.equal(report(b, 'a')?.served.get('www.example.test.'), 7);

  // A node that arrives later gets the state from the hashes (no events replayed).
  const d = await started(t, settings('d', redis.url, 'vp'));
  const rd = report(d, 'a');
  t.equal(rd?.verdicts.get('www.example.test./primary|v4')?.reason, 'timeout', 'late joiner read a from Redis at start');
  t.equal(rd?.served.get('www.example.test.'), 7);
  t.notOk(rd?.verdicts.has('www.example.test./primary|v6'));

  // Reports handed out are snapshots: a later change does not alter them.
  const before = report(b, 'a');
  a.publishVerdicts(new Map([['www.example.test./primary|v4', v('up')]]));
  await waitFor('b sees the change', () => report(b, 'a')?.verdicts.get('www.example.test./primary|v4')?.status === 'up');
  t.equal(before?.verdicts.get('www.example.test./primary|v4')?.status, 'down', 'an old report stays as it was');
});

t.test('events missed by a dropped subscriber are recovered', async (t) => {
  const redis = await withRedis(t);
  const a = await started(t, settings('a', redis.url, 'gap'));
  const b = await started(t, settings('b', redis.url, 'gap'));
  a.publishVerdicts(new Map([['m|v4', v('up')]]));
  await waitFor('b sees a', () => report(b, 'a')?.verdicts.get('m|v4')?.status === 'up');
  const raw = rawClient(t, redis.url);
  await raw.connect();
  const list = String(await raw.call('CLIENT', 'LIST'));
  const id = /id=(\d+) [^\n]* name=vigil:b:sub /.exec(list)?.[1];
  t.ok(id, "b's subscriber connection is named in CLIENT LIST");
  t.equal(await raw.call('CLIENT', 'KILL', 'ID', id ?? '0'), 1, 'killed it');
  // Published while b's subscriber is reconnecting: b never gets this event.
  a.publishVerdicts(new Map([['m|v4', v('down')], ['n|v4', v('up')]]));
  await waitFor('b catches up', () => report(b, 'a')?.verdicts.get('m|v4')?.status === 'down' && report(b, 'a')?.verdicts.has('n|v4') === true);
  t.equal(b.connected, true, 'the command connection never dropped');
});

t.test('claimEpoch: the same hash keeps its epoch on every node, a new hash takes the next', async (t) => {
  const redis = await withRedis(t);
  const a = await started(t, settings('a', redis.url, 'ep'));
  const b = await started(t, settings('b', redis.url, 'ep'));
  const e1 = await a.claimEpoch('www.example.test.', 'h1');
  t.equal(await b.claimEpoch('www.example.test.', 'h1'), e1, 'same hash, same epoch, other node');
  t.equal(await a.claimEpoch('www.example.test.', 'h1'), e1, 'same hash again');
  t.equal(await b.claimEpoch('www.example.test.', 'h2'), e1 + 1, 'new hash: +1');
  t.equal(await a.claimEpoch('www.example.test.', 'h2'), e1 + 1);
  t.equal(await a.claimEpoch('www.example.test.', 'h1'), e1 + 2, 'back to an old hash is still a change');
  t.equal(await b.claimEpoch('other.example.test.', 'h1'), 1, 'services count separately');
  const raw = rawClient(t, redis.url);
  await raw.connect();
  t.same(await raw.hgetall('ep:epochs'), {
    'www.example.test.': String(e1 + 2),
    'www.example.test.#h': 'h1',
    'other.example.test.': '1',
    'other.example.test.#h': 'h1',
  });
});

t.test('overrides: set, clear and expiry propagate, each with an audit entry', async (t) => {
  const redis = await withRedis(t);
  const a = await started(t, settings('a', redis.url, 'ov'));
  const b = await started(t, settings('b', redis.url, 'ov'));
  const c = await started(t, settings('c', redis.url, 'ov'));
  const seenOnC: AuditEntry[] = [];
  c.on('audit', (e) => seenOnC.push(e));
  let changesOnB = 0;
  b.on('change', () => changesOnB++);

  const at = Date.now();
  const drain: Override = { member: 'www.example.test./primary', action: 'drain', reason: 'maintenance', by: 'alice', at };
  await a.setOverride(drain);
  t.same(a.overrides(), [drain], 'the setter holds it at once');
  await waitFor('b and c see the override', () => [b, c].every((s) => s.overrides().length === 1));
  t.same(b.overrides()[0], drain);
  t.ok(changesOnB > 0, "'change' emitted on b");

  t.equal(await b.clearOverride('www.example.test./primary', 'bob', 'done'), true);
  await waitFor('cleared everywhere', () => [a, b, c].every((s) => s.overrides().length === 0));
  t.equal(await b.clearOverride('www.example.test./primary', 'bob', 'again'), false, 'nothing left to clear');

  const short: Override = { member: 'www.example.test./secondary', action: 'force_down', reason: 'test', by: 'carol', at: Date.now(), expiresAt: Date.now() + 800 };
  await a.setOverride(short);
  await waitFor('c sees the short override', () => c.overrides().some((o) => o.member === short.member));
  await waitFor('expired everywhere', () => [a, b, c].every((s) => s.overrides().length === 0));
  const raw = rawClient(t, redis.url);
  await raw.connect();
  await waitFor('removed from Redis', async () => (await raw.hlen('ov:overrides')) === 0);

  const expiredCount = async (): Promise<number> =>
    (await c.auditLog(100)).filter((e) => e.event === 'override.expired' && e.fields['member'] === short.member).length;
  await waitFor('expiry logged', async () => (await expiredCount()) >= 1);
  await sleep(600);
  t.equal(await expiredCount(), 1, 'three nodes noticed the expiry, one logged it');

  const log = await c.auditLog(100);
  t.same(
    log.map((e) => e.event).reverse(),
    ['override.set', 'override.clear', 'override.set', 'override.expired'],
    'auditLog is newest first and holds every step',
  );
  const set = log.find((e) => e.event === 'override.set' && e.fields['member'] === drain.member);
  t.match(set, { node: 'a', by: 'alice', reason: 'maintenance', fields: { member: drain.member, action: 'drain' } });
  t.ok(set !== undefined && set.at >= at && set.at <= Date.now(), 'when: a local ms time');
  t.match(set?.id, /^\d+-\d+$/, 'a stream id');
  t.match(log.find((e) => e.event === 'override.clear'), { node: 'b', by: 'bob', reason: 'done' });
  t.match(log.find((e) => e.event === 'override.expired'), { fields: { member: short.member, action: 'force_down', set_by: 'carol' } });
  await waitFor("'audit' events on c for the other nodes' entries", () => seenOnC.length >= 4);
  t.same(
    seenOnC.map((e) => e.event),
    ['override.set', 'override.clear', 'override.set', 'override.expired'],
  );
  t.equal(await raw.xlen('ov:audit'), 4, 'the stream has one entry per action');
});

t.test('a node that stops heartbeating keeps its last lastSeen', async (t) => {
  const redis = await withRedis(t);
  const a = await started(t, settings('a', redis.url, 'hb'));
  const b = await started(t, settings('b', redis.url, 'hb'));
  a.publishVerdicts(new Map([['m|v4', v('up')]]));
  await waitFor('b sees a', () => report(b, 'a')?.verdicts.has('m|v4') === true);
  const first = report(b, 'a')?.lastSeen ?? 0;
  await waitFor('heartbeats move lastSeen', () => (report(b, 'a')?.lastSeen ?? 0) > first);

  await a.close();
  await sleep(300); // a heartbeat already in flight may still land
  const last = report(b, 'a')?.lastSeen ?? 0;
  await sleep(1500); // several heartbeat periods and a resync
  const after = report(b, 'a');
  t.ok(after, 'the silent node is still reported (consensus ages it out)');
  t.equal(after?.lastSeen, last, 'lastSeen stopped moving');
  t.same(after?.verdicts.get('m|v4'), v('up'), 'with its last verdicts');
});

t.test('Redis killed and restarted empty: stores ride it out and rebuild everything', async (t) => {
  const redis = await withRedis(t);
  const logA = capture();
  const a = await started(t, settings('a', redis.url, 'out'), { logger: logA.logger });
  const b = await started(t, settings('b', redis.url, 'out'));
  const c = await started(t, settings('c', redis.url, 'out'));
  const conn: boolean[] = [];
  a.on('connection', (up) => conn.push(up));

  const epoch = await a.claimEpoch('svc.', 'h1');
  a.publishVerdicts(new Map([['m1|v4', v('up')], ['m2|v4', v('up')]]));
  b.publishVerdicts(new Map([['m1|v4', v('down')]]));
  a.publishServed(new Map([['svc.', epoch]]));
  const before: Override = { member: 'svc./m1', action: 'force_up', reason: 'known good', by: 'alice', at: Date.now() };
  await a.setOverride(before);
  await waitFor('b sees a and the override', () => report(b, 'a')?.verdicts.size === 2 && b.overrides().length === 1);
  await waitFor('a sees b', () => report(a, 'b')?.verdicts.get('m1|v4')?.status === 'down');
  await waitFor('b sees the epoch a serves', () => report(b, 'a')?.served.get('svc.') === epoch);

  await waitFor('b hears c', () => report(b, 'c') !== undefined);
  await redis.kill();
  await waitFor('both notice', () => !a.connected && !b.connected);
  const killedAt = Date.now(); // nothing can arrive after this
  await c.close(); // c dies during the outage and never comes back
  t.type(a.disconnectedSince, 'number', 'disconnectedSince set');
  t.same(conn, [false], "'connection' false emitted once");
  t.equal(report(b, 'a')?.verdicts.get('m2|v4')?.status, 'up', 'remote reports kept through the outage');
  t.equal(report(a, 'b')?.verdicts.get('m1|v4')?.status, 'down');

  // While Redis is down: an operator acts, verdicts change, an epoch is claimed.
  const during: Override = { member: 'svc./m2', action: 'drain', reason: 'during outage', by: 'bob', at: Date.now() };
  await a.setOverride(during);
  t.same(a.overrides().map((o) => o.member).sort(), ['svc./m1', 'svc./m2'], 'override set while down is held');
  a.publishVerdicts(new Map([['m1|v4', v('up')], ['m2|v4', v('down')]]));
  t.equal(await a.claimEpoch('svc.', 'h1'), epoch, 'same hash, same epoch without Redis');
  t.equal(await a.claimEpoch('svc.', 'h2'), epoch + 1, 'a local count continues from the last epoch');
  a.publishServed(new Map([['svc.', epoch + 1]]));
  t.equal(a.connected, false);
  t.equal((await a.auditLog(10))[0]?.event, 'override.set', 'the local audit log has the action');

  const restartAt = Date.now();
  t.ok((report(b, 'c')?.lastSeen ?? Infinity) <= killedAt, 'c was last heard before the outage');
  await redis.restartEmpty();
  await waitFor('both reconnect', () => a.connected && b.connected);
  t.ok((report(b, 'c')?.lastSeen ?? 0) >= restartAt, 'reports held over the outage get a fresh staleAfter window');
  t.same(report(b, 'c')?.verdicts, new Map(), 'kept as they were');
  t.same(conn, [false, true], "'connection' true after the resync");
  t.equal(a.disconnectedSince, undefined);

  const raw = rawClient(t, redis.url);
  await raw.connect();
  await waitFor('overrides restored in Redis', async () => (await raw.hlen('out:overrides')) === 2);
  t.same(JSON.parse((await raw.hget('out:overrides', 'svc./m1')) ?? 'null'), before, 'the override from before, restored');
  t.same(JSON.parse((await raw.hget('out:overrides', 'svc./m2')) ?? 'null'), during, 'the one set while down, written');
  await waitFor('b has both overrides', () => b.overrides().length === 2);

  await waitFor('b sees the verdicts a changed while down', () => report(b, 'a')?.verdicts.get('m2|v4')?.status === 'down');
  await waitFor('served epochs republished', () => report(b, 'a')?.served.get('svc.') === epoch + 1);
  t.same(JSON.parse((await raw.hget('out:node:b', 'm1|v4')) ?? 'null'), v('down'), "b's hash rewritten");
  t.same(Object.keys(await raw.hgetall('out:nodes')).sort(), ['a', 'b'], 'nodes list rebuilt');

  const log = await b.auditLog(50);
  const restored = log.filter((e) => e.event === 'override.restored');
  t.equal(restored.length, 1, 'one restore entry for the override Redis lost (by one node only)');
  t.match(restored[0], { fields: { member: 'svc./m1', action: 'force_up' }, by: /^node:/ });
  t.ok(
    log.some((e) => e.event === 'override.set' && e.fields['member'] === 'svc./m2' && e.by === 'bob'),
    'the action taken while down reached the stream',
  );
  t.ok(await raw.get('out:instance'), 'a new instance id was set');

  // Epochs continue from what the nodes knew, not from Redis' empty counter.
  t.equal(await b.claimEpoch('svc.', 'h3'), epoch + 2, 'no epoch goes backwards after Redis lost its counters');
  t.equal(await a.claimEpoch('svc.', 'h3'), epoch + 2, 'and the nodes agree again');

  const text = logA.text();
  t.equal(text.match(/redis unreachable/g)?.length, 1, 'one warning per outage');
  t.match(text, /"outageMs":\d+.*redis reachable again/, 'recovery logged with the outage duration');
});

t.test('operator actions taken while Redis is down are replayed; the newest wins', async (t) => {
  const redis = await withRedis(t); // AOF on: a restart keeps the data
  const a = await started(t, settings('a', redis.url, 'rp'));
  const b = await started(t, settings('b', redis.url, 'rp'));
  const o1: Override = { member: 'svc./m1', action: 'drain', reason: 'one', by: 'alice', at: Date.now() };
  const o4: Override = { member: 'svc./m4', action: 'force_down', reason: 'four', by: 'alice', at: Date.now(), expiresAt: Date.now() + 1500 };
  await a.setOverride(o1);
  await a.setOverride(o4);
  await waitFor('b has both', () => b.overrides().length === 2);

  await redis.kill();
  await waitFor('both notice', () => !a.connected && !b.connected);
  t.equal(await a.clearOverride(o1.member, 'bob', 'not needed'), true, 'cleared locally while down');
  t.same(a.overrides().map((o) => o.member), [o4.member]);
  const o2: Override = { member: 'svc./m2', action: 'drain', reason: 'two', by: 'carol', at: Date.now(), expiresAt: Date.now() + 300 };
  await b.setOverride(o2);
  const o3a: Override = { member: 'svc./m3', action: 'force_up', reason: 'older', by: 'dave', at: Date.now() };
  const o3b: Override = { member: 'svc./m3', action: 'force_down', reason: 'newer', by: 'erin', at: o3a.at + 1 };
  await b.setOverride(o3b);
  await a.setOverride(o3a); // replayed later by a, but older: must lose
  await waitFor('o2 and o4 lapse while Redis is down', () => Date.now() > (o4.expiresAt ?? 0) + 100 && !b.overrides().some((o) => o.member === o2.member));

  await redis.restartKeepingData();
  await waitFor('both reconnect', () => a.connected && b.connected);
  const raw = rawClient(t, redis.url);
  await raw.connect();
  await waitFor('Redis holds only the newest m3', async () => {
    const all = await raw.hgetall('rp:overrides');
    return Object.keys(all).length === 1 && all[o3b.member] !== undefined && JSON.parse(all[o3b.member] ?? '{}').by === 'erin';
  });
  await waitFor('both nodes agree', () => [a, b].every((s) => s.overrides().length === 1 && s.overrides()[0]?.by === 'erin'));

  const count = async (event: string, member: string): Promise<number> =>
    (await a.auditLog(100)).filter((e) => e.event === event && e.fields['member'] === member).length;
  await waitFor('expiry of o4 logged', async () => (await count('override.expired', o4.member)) >= 1);
  await sleep(500);
  t.equal(await count('override.expired', o4.member), 1, 'two nodes saw o4 lapse while Redis was down; one logged it');
  t.equal(await count('override.expired', o2.member), 1, 'the never-written o2 lapsed and was logged');
  t.equal(await count('override.clear', o1.member), 1, 'the clear made while down reached the stream');
  t.equal(await count('override.set', o3a.member), 2, 'both sets of m3 are in the log');
  t.equal(await count('override.restored', o1.member), 0, 'Redis kept its data: nothing to restore');
});

t.test('start() without Redis resolves, and the store connects when Redis appears', async (t) => {
  const port = await freeTcpPort();
  const a = new RedisStore(settings('a', `redis://127.0.0.1:${port}/0`, 'late', { staleAfterMs: 1500 }));
  t.teardown(() => a.close());
  const conn: boolean[] = [];
  a.on('connection', (up) => conn.push(up));
  await a.start();
  t.equal(a.connected, false);
  t.type(a.disconnectedSince, 'number');
  a.publishVerdicts(new Map([['m|v4', v('up')]]));
  const o: Override = { member: 'svc./m', action: 'force_down', reason: 'r', by: 'op', at: Date.now() };
  await a.setOverride(o);
  t.same(a.overrides(), [o]);

  const redis = await withRedis(t, { port });
  await waitFor('connected once Redis is there', () => a.connected);
  t.same(conn, [true]);
  const raw = rawClient(t, redis.url);
  await raw.connect();
  await waitFor('state written', async () => (await raw.hget('late:node:a', 'm|v4')) !== null && (await raw.hlen('late:overrides')) === 1);
  t.same(JSON.parse((await raw.hget('late:overrides', 'svc./m')) ?? 'null'), o);

  // Subscribed although the first connection failed: audit entries travel only by pub/sub.
  const heard: AuditEntry[] = [];
  a.on('audit', (e) => heard.push(e));
  const b = await started(t, settings('b', redis.url, 'late'));
  await b.audit('test.ping', 'tester', 'subscription check', {});
  await waitFor("a hears b's audit event", () => heard.some((e) => e.event === 'test.ping' && e.node === 'b'));
  await waitFor('b sees a', () => report(b, 'a')?.verdicts.get('m|v4')?.status === 'up');
});

t.test('passwords never reach the log; settings errors reject start()', async (t) => {
  const password = 'pw-Sekr1t-8812';
  const redis = await withRedis(t, { password });
  const cap = capture();
  const s = await started(t, settings('a', `redis://:${password}@127.0.0.1:${redis.port}/0`, 'pw'), { logger: cap.logger });
  t.equal(s.connected, true, 'authenticated with the password from the URL');
  const viaFile = await started(t, { ...settings('b', `redis://127.0.0.1:${redis.port}/0`, 'pw'), redis: { url: `redis://:wrong-Pass-4417@127.0.0.1:${redis.port}/0`, prefix: 'pw', password } }, { logger: cap.logger });
  t.equal(viaFile.connected, true, 'a password setting overrides the one in the URL');
  const wrong = await started(t, settings('c', `redis://:wrong-Pass-4417@127.0.0.1:${redis.port}/0`, 'pw'), { logger: cap.logger });
  t.equal(wrong.connected, false, 'a wrong password does not connect');
  await redis.kill();
  await waitFor('outage noticed', () => !s.connected);
  await redis.restartKeepingData();
  await waitFor('back', () => s.connected);

  const text = cap.text();
  t.match(text, /redis unreachable/, 'the outage was logged');
  t.match(text, /redis:\/\/127\.0\.0\.1:\d+\/0/, 'the target is named, without credentials');
  t.notOk(text.includes(password), 'the password is not in the log');
  t.notOk(text.includes('wrong-Pass-4417'), 'nor a wrong one');

  const bad = new RedisStore(settings('d', `redis://:${password}@127.0.0.1:notaport/0`, 'pw'), { logger: cap.logger });
  await t.rejects(bad.start(), RedisSettingsError);
  await bad.close();
  const err = await new RedisStore(settings('e', `http://:${password}@127.0.0.1:1/0`, 'pw')).start().catch((e: unknown) => e);
  t.ok(err instanceof RedisSettingsError && !err.message.includes(password), 'the error names the problem, not the password');
  await t.rejects(new RedisStore({ ...settings('f', redis.url, 'pw'), redis: { prefix: 'pw' } }).start(), { name: 'RedisSettingsError', field: 'replication.redis.url' });
  await t.rejects(new RedisStore(settings('g', redis.url, '{pw}')).start(), { name: 'RedisSettingsError', field: 'replication.redis.prefix' });
  await t.rejects(new RedisStore(settings('h', redis.url, 'pw', { heartbeatMs: 0 })).start(), { name: 'RedisSettingsError', field: 'replication.heartbeat' });
});

t.test('cluster mode: every key under one hash tag, same behaviour', async (t) => {
  const redis = await withRedis(t, { appendonly: false, args: ['--cluster-enabled', 'yes', '--cluster-announce-ip', '127.0.0.1'] });
  const raw = rawClient(t, `redis://127.0.0.1:${redis.port}/0`);
  await raw.connect();
  await raw.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
  await waitFor('cluster state ok', async () => /cluster_state:ok/.test(String(await raw.call('CLUSTER', 'INFO'))));
  const cs = (id: string): RedisStoreSettings => ({ ...settings(id, '', 'cl'), redis: { cluster: [{ host: '127.0.0.1', port: redis.port }], prefix: 'cl' } });
  const a = await started(t, cs('a'));
  const b = await started(t, cs('b'));
  t.ok(a.connected && b.connected);
  a.publishVerdicts(new Map([['m|v4', v('down')]]));
  await a.setOverride({ member: 'svc./m', action: 'drain', reason: 'r', by: 'op', at: Date.now() });
  t.equal(await a.claimEpoch('svc.', 'h'), await b.claimEpoch('svc.', 'h'));
  await waitFor('b sees a', () => report(b, 'a')?.verdicts.get('m|v4')?.status === 'down' && b.overrides().length === 1);
  const keys = (await raw.keys('*')).sort();
  t.same(keys, ['{cl}:audit', '{cl}:epochs', '{cl}:instance', '{cl}:node:a', '{cl}:node:b', '{cl}:nodes', '{cl}:overrides']);
});

t.test('LocalStore: one node in memory', async (t) => {
  let now = 1_000_000;
  const s = new LocalStore({ id: 'solo', pop: 'here' }, { now: () => now });
  t.teardown(() => s.close());
  await s.start();
  t.equal(s.connected, true);
  t.equal(s.disconnectedSince, undefined);
  s.publishVerdicts(new Map([['m|v4', v('up')]]));
  s.publishServed(new Map([['svc.', 1]]));
  t.same(s.reports(), []);

  t.equal(await s.claimEpoch('svc.', 'a'), 1);
  t.equal(await s.claimEpoch('svc.', 'a'), 1);
  t.equal(await s.claimEpoch('svc.', 'b'), 2);
  t.equal(await s.claimEpoch('other.', 'b'), 1);

  const audits: AuditEntry[] = [];
  s.on('audit', (e) => audits.push(e));
  let changes = 0;
  s.on('change', () => changes++);
  const o: Override = { member: 'svc./m', action: 'drain', reason: 'r', by: 'op', at: now, expiresAt: now + 1000 };
  await s.setOverride(o);
  t.same(s.overrides(), [o]);
  await sleep(0);
  await new Promise((r) => setImmediate(r));
  t.ok(changes > 0, "'change' emitted");
  now += 1000;
  t.same(s.overrides(), [], 'expired overrides are filtered out');
  t.equal(await s.clearOverride('svc./m', 'op', 'late'), false, 'an expired override cannot be cleared');
  t.same(audits.map((e) => e.event), ['override.set', 'override.expired']);
  await s.setOverride({ ...o, expiresAt: undefined });
  t.equal(await s.clearOverride('svc./m', 'op2', 'done'), true);
  t.match(audits.at(-1), { event: 'override.clear', by: 'op2', reason: 'done', node: 'solo', fields: { member: 'svc./m' } });

  for (let i = 0; i < 1005; i++) await s.audit('test', 'me', `n${i}`, { i: String(i) });
  const log = await s.auditLog(5000);
  t.equal(log.length, 1000, 'the ring keeps 1000 entries');
  t.equal(log[0]?.reason, 'n1004', 'newest first');
  t.same((await s.auditLog(2)).map((e) => e.reason), ['n1004', 'n1003']);

  let off = 0;
  const listener = (): void => {
    off++;
  };
  s.on('audit', listener);
  s.off('audit', listener);
  await s.audit('x', 'y', 'z', {});
  t.equal(off, 0, 'off() removes a listener');
});
