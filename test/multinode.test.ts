// Three Vigil nodes sharing health through a real redis-server, each on its
// own loopback address (127.0.0.11-13), probing real HTTP backends on
// 127.0.0.2 (primary) and 127.0.0.3 (secondary). A backend can fail for one
// node only: every probe carries an `x-vigil-node` header, and the backend
// answers 503 to the nodes listed in `downFor`, which is how a partition
// that only one PoP sees looks from that PoP. Answers are read over DNS with
// c-ares; state through each node's admin API.

import t, { type Test } from 'tap';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { startDaemon, type Daemon } from '../server/daemon.js';
import type { EngineState } from '../server/engine.js';
import type { AuditEntry } from '../probes/replication/types.js';
import { startRedis, type RedisProcess } from './helpers/redis.js';
import { backend, type Backend } from './helpers/backend.js';

const ZONE = `$ORIGIN multi.test.
$TTL 300
@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
ns1 A 127.0.0.1
`;

const NODES = ['n1', 'n2', 'n3'] as const;
type NodeId = (typeof NODES)[number];
const addressOf = (n: NodeId): string => `127.0.0.1${NODES.indexOf(n) + 1}`;

function nodeYaml(node: NodeId, redisUrl: string, prefix: string, backendPort: number): string {
  return `listen: ["${addressOf(node)}:0"]
node: { id: ${node}, pop: pop-${node} }
admin: { listen: "${addressOf(node)}:0" }
replication:
  redis: { url: "${redisUrl}", prefix: ${prefix} }
  heartbeat: 200ms
  stale_after: 1s
  resync: 1s
  outage_grace: 60s
  divergence_after: 2s
zones:
  - origin: multi.test.
    file: multi.test.zone
services:
  - name: www.multi.test.
    policy: failover
    ttl: 30
    degraded_ttl: 2
    settle: 500ms
    failback: immediate
    damping: false
    probe: { type: http, port: ${backendPort}, path: /health, headers: { x-vigil-node: ${node} }, interval: 100ms, recheck: 100ms, timeout: 300ms, jitter: 0ms, rise: 2, fall: 3 }
    members:
      - { name: primary, addresses: ["127.0.0.2"], priority: 1 }
      - { name: secondary, addresses: ["127.0.0.3"], priority: 2 }
`;
}

const PRIMARY = 'www.multi.test./primary';
const SECONDARY = 'www.multi.test./secondary';

interface Cluster {
  readonly redis: RedisProcess;
  readonly primary: Backend;
  readonly secondary: Backend;
  readonly daemons: Map<NodeId, Daemon>;
  readonly prefix: string;
}

async function answer(d: Daemon, node: NodeId): Promise<string> {
  const r = new Resolver({ timeout: 1000, tries: 2 });
  r.setServers([`${addressOf(node)}:${d.server.addresses.udp[0]!.port}`]);
  return (await r.resolve4('www.multi.test')).sort().join(',');
}

async function answers(c: Cluster): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [n, d] of c.daemons) out[n] = await answer(d, n);
  return out;
}

async function admin<T>(d: Daemon, method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const a = d.admin!.address;
  const res = await fetch(`http://${a.address}:${a.port}${path}`, {
    method,
    ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
  });
  return { status: res.status, json: (await res.json()) as T };
}

const state = async (d: Daemon): Promise<EngineState> => (await admin<EngineState>(d, 'GET', '/state')).json;

/** Polls until `cond` holds; returns the elapsed ms. Bounded: fails the test after `limitMs`. */
async function until(t: Test, what: string, cond: () => Promise<boolean> | boolean, limitMs: number, stepMs = 20): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - start;
    if (Date.now() - start > limitMs) {
      t.fail(`${what}: not within ${limitMs} ms`);
      return Date.now() - start;
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

const allAnswer = (c: Cluster, want: string) => async (): Promise<boolean> => Object.values(await answers(c)).every((a) => a === want);

async function cluster(t: Test): Promise<Cluster> {
  const redis = await startRedis();
  const primary = backend('127.0.0.2');
  await primary.start();
  const secondary = backend('127.0.0.3', primary.port);
  await secondary.start();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-multi-'));
  writeFileSync(join(dir, 'multi.test.zone'), ZONE);
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const daemons = new Map<NodeId, Daemon>();
  for (const n of NODES) {
    const file = join(dir, `${n}.yaml`);
    writeFileSync(file, nodeYaml(n, `redis://127.0.0.1:${redis.port}/0`, prefix, primary.port));
    daemons.set(n, await startDaemon(file, pino({ level: 'silent' }), { levelFixed: true }));
  }
  t.teardown(async () => {
    for (const d of daemons.values()) await d.close();
    await primary.stop();
    await secondary.stop();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { redis, primary, secondary, daemons, prefix };
}

t.test('three nodes through one Redis', async (t) => {
  const c = await cluster(t);
  const d = (n: NodeId): Daemon => c.daemons.get(n)!;

  await until(t, 'every node sees the other two', async () => {
    for (const n of NODES) if ((await state(d(n))).replication.nodes.filter((x) => x.fresh).length !== 3) return false;
    return true;
  }, 10_000);
  await until(t, 'probes running on every node', () => c.primary.hits > 12 && c.secondary.hits > 12, 10_000);
  t.same(await answers(c), { n1: '127.0.0.2', n2: '127.0.0.2', n3: '127.0.0.2' }, 'all on the primary');

  await t.test('a failure seen by one node only moves nothing', async (t) => {
    c.primary.downFor.add('n1');
    await until(t, 'every node holds n1\'s down vote', async () => {
      for (const n of NODES) {
        const m = (await state(d(n))).services[0]!.members.find((x) => x.member === PRIMARY)!;
        if (!m.votes.down.includes('n1')) return false;
      }
      return true;
    }, 5000);
    const s2 = (await state(d('n2'))).services[0]!.members.find((x) => x.member === PRIMARY)!;
    t.same([s2.votes.down, [...s2.votes.up].sort()], [['n1'], ['n2', 'n3']], 'n2 sees one down vote, two up');
    t.equal(s2.status, 'up');
    const n1 = (await state(d('n1'))).services[0]!.members.find((x) => x.member === PRIMARY)!;
    t.same([n1.local.status, n1.status], ['down', 'up'], 'n1: its own probes say down, the consensus up');
    // Several rounds of probes and heartbeats: the answer must hold on every node.
    for (let i = 0; i < 5; i++) {
      t.same(await answers(c), { n1: '127.0.0.2', n2: '127.0.0.2', n3: '127.0.0.2' }, `round ${i}: still the primary everywhere`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  await t.test('with two of three seeing it down, every node moves', async (t) => {
    c.primary.downFor.add('n2');
    const ms = await until(t, 'all on the secondary', allAnswer(c, '127.0.0.3'), 5000);
    t.comment(`second down vote → all three nodes answer the secondary: ${ms} ms`);
    c.primary.downFor.clear();
    await until(t, 'all back on the primary', allAnswer(c, '127.0.0.2'), 5000);
  });

  await t.test('a killed backend: every node moves, and the spread between nodes is small', async (t) => {
    const moved = new Map<NodeId, number>();
    const t0 = Date.now();
    await c.primary.stop();
    await until(t, 'every node on the secondary', async () => {
      for (const n of NODES) if (!moved.has(n) && (await answer(d(n), n)) === '127.0.0.3') moved.set(n, Date.now() - t0);
      return moved.size === 3;
    }, 5000, 10);
    const times = [...moved.values()];
    const spread = Math.max(...times) - Math.min(...times);
    t.comment(`kill → each node's answer changed: ${NODES.map((n) => `${n} ${moved.get(n)} ms`).join(', ')}; kill → last node ${Math.max(...times)} ms; spread ${spread} ms`);
    // Every node switches on the same consensus change; what separates them is pub/sub and one poll round of this loop.
    t.ok(spread <= 500, `nodes change within one probe interval plus propagation (spread ${spread} ms)`);
    for (const n of NODES) {
      const s = await state(d(n));
      t.equal(s.services[0]!.epoch, (await state(d('n1'))).services[0]!.epoch, `${n} serves the same epoch as n1`);
    }
    await c.primary.start();
    await until(t, 'all back on the primary', allAnswer(c, '127.0.0.2'), 5000);
  });

  await t.test('overrides apply on every node and are audited', async (t) => {
    const set = await admin<{ ok: boolean; override: { action: string; by: string } }>(d('n1'), 'POST', '/overrides', { member: PRIMARY, action: 'drain', reason: 'kernel upgrade', by: 'alice' });
    t.equal(set.status, 200);
    t.match(set.json.override, { action: 'drain', by: 'alice' });
    await until(t, 'drained everywhere', allAnswer(c, '127.0.0.3'), 3000);
    const m3 = (await state(d('n3'))).services[0]!.members.find((x) => x.member === PRIMARY)!;
    t.match(m3, { status: 'down', override: { action: 'drain', by: 'alice', reason: 'kernel upgrade' } }, 'n3 shows the drain and who set it');

    const bad = await admin<{ ok: boolean; error: string }>(d('n2'), 'POST', '/overrides', { member: 'nope./x', action: 'drain', reason: 'r' });
    t.equal(bad.status, 404);
    const malformed = await admin<{ ok: boolean; error: string }>(d('n2'), 'POST', '/overrides', { member: PRIMARY, action: 'explode', reason: 'r' });
    t.equal(malformed.status, 400);
    t.match(malformed.json.error, /action/);

    const cleared = await admin<{ ok: boolean }>(d('n2'), 'DELETE', `/overrides/${encodeURIComponent(PRIMARY)}?by=bob&reason=done`);
    t.equal(cleared.status, 200);
    await until(t, 'back on the primary everywhere', allAnswer(c, '127.0.0.2'), 3000);

    // An operator insists on a member the probes call down, for one second.
    await c.primary.stop();
    await until(t, 'on the secondary', allAnswer(c, '127.0.0.3'), 5000);
    await admin(d('n3'), 'POST', '/overrides', { member: PRIMARY, action: 'force_up', reason: 'probe path broken, app fine', by: 'carol', for: '1500ms' });
    await until(t, 'forced up everywhere', allAnswer(c, '127.0.0.2'), 3000);
    await until(t, 'the override lapses by itself', allAnswer(c, '127.0.0.3'), 5000);
    await c.primary.start();
    await until(t, 'all back on the primary', allAnswer(c, '127.0.0.2'), 5000);

    const audit = (await admin<{ entries: AuditEntry[] }>(d('n1'), 'GET', '/audit?count=100')).json.entries;
    const events = audit.map((e) => `${e.event} ${e.by}`);
    t.ok(events.includes('override.set alice'), 'the drain is audited with who');
    t.ok(events.includes('override.clear bob'), 'the clear is audited with who');
    t.ok(events.includes('override.set carol'), 'the force is audited');
    t.ok(audit.some((e) => e.event === 'override.expired'), 'the lapse is audited');
    t.ok(audit.some((e) => e.event === 'consensus.change' && e.fields['member'] === PRIMARY && e.fields['to'] === 'down'), 'consensus changes are audited');
    const drain = audit.find((e) => e.event === 'override.set' && e.by === 'alice')!;
    t.equal(drain.reason, 'kernel upgrade');
    t.ok(drain.at > 0 && drain.at <= Date.now(), 'with when');
  });

  await t.test('Redis killed and restarted empty: answers stay right, state and overrides come back', async (t) => {
    await admin(d('n1'), 'POST', '/overrides', { member: PRIMARY, action: 'drain', reason: 'maintenance', by: 'dave' });
    await until(t, 'drained everywhere', allAnswer(c, '127.0.0.3'), 3000);

    // Sample every node the whole time: not one answer may be wrong or missing.
    const wrong: string[] = [];
    let sampling = true;
    let samples = 0;
    const sampler = (async () => {
      while (sampling) {
        for (const n of NODES) {
          try {
            const a = await answer(d(n), n);
            samples++;
            if (a !== '127.0.0.3') wrong.push(`${n}: ${a}`);
          } catch (err) {
            wrong.push(`${n}: ${(err as Error).message}`);
          }
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    })();

    await c.redis.kill();
    await until(t, 'every node notices', async () => {
      for (const n of NODES) if ((await state(d(n))).replication.redis !== 'disconnected') return false;
      return true;
    }, 5000);
    const s1 = await state(d('n1'));
    t.equal(s1.replication.frozen, true, 'the other nodes\' last verdicts still count');
    t.equal(s1.services[0]!.members.find((x) => x.member === PRIMARY)!.override?.by, 'dave', 'the override is still applied');
    // Longer than stale_after: the frozen reports must not age out during the outage.
    await new Promise((r) => setTimeout(r, 1500));
    t.equal((await state(d('n2'))).replication.nodes.filter((x) => x.fresh).length, 3, 'no node aged out while Redis was away');

    await c.redis.restart({ empty: true });
    await until(t, 'every node reconnected and sees the others', async () => {
      for (const n of NODES) {
        const s = await state(d(n));
        if (s.replication.redis !== 'connected' || s.replication.nodes.filter((x) => x.fresh).length !== 3) return false;
      }
      return true;
    }, 15_000);
    const client = new Redis({ host: '127.0.0.1', port: c.redis.port, lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    t.teardown(() => void client.disconnect());
    await until(t, 'the override is back in Redis', async () => (await client.hget(`${c.prefix}:overrides`, PRIMARY)) !== null, 5000);
    t.match(JSON.parse((await client.hget(`${c.prefix}:overrides`, PRIMARY))!), { action: 'drain', by: 'dave' });
    await until(t, 'every node\'s verdicts are back in Redis', async () => {
      for (const n of NODES) if ((await client.hlen(`${c.prefix}:node:${n}`)) === 0) return false;
      return true;
    }, 5000);
    // Two more heartbeats and resyncs after recovery, still sampling.
    await new Promise((r) => setTimeout(r, 1200));
    sampling = false;
    await sampler;
    t.ok(samples > 30, `sampled throughout (${samples} answers)`);
    t.same(wrong, [], 'no wrong or missing answer during the outage and the recovery');

    await admin(d('n2'), 'DELETE', `/overrides/${encodeURIComponent(PRIMARY)}?by=dave&reason=done`);
    await until(t, 'back on the primary', allAnswer(c, '127.0.0.2'), 3000);
  });

  await t.test('a node that dies ages out and the others keep deciding', async (t) => {
    // n1 and n3 see the primary down: 2 of 3, so every node serves the secondary.
    c.primary.downFor.add('n1');
    c.primary.downFor.add('n3');
    await until(t, 'on the secondary', allAnswer(c, '127.0.0.3'), 5000);
    const n3 = c.daemons.get('n3')!;
    c.daemons.delete('n3');
    await n3.close();
    // n3's down vote stays in Redis but stops counting after stale_after: n1 down, n2 up is a tie, not down.
    const ms = await until(t, 'n3 aged out: the primary is back', allAnswer(c, '127.0.0.2'), 5000);
    t.comment(`node closed → its verdicts stopped counting → answers changed: ${ms} ms (stale_after 1 s)`);
    const s = await state(d('n1'));
    t.match(s.replication.nodes.find((x) => x.id === 'n3'), { fresh: false }, 'n1 lists n3 as stale');
    c.primary.downFor.add('n2');
    await until(t, 'n1 and n2 alone still decide', allAnswer(c, '127.0.0.3'), 5000);
    c.primary.downFor.clear();
  });
});
