// Replication traffic: what N nodes publishing their verdicts cost on the
// wire. One real redis-server; each store reaches it through its own small
// TCP relay that counts bytes both ways, so the figures are per node and
// include everything (both connections, heartbeats, resyncs, pub/sub fan-out).
// Commands per second come from Redis' own INFO counters.
//
//   npx tsx bench/replication-traffic.ts [--nodes 3] [--members 1000] [--seconds 20]

import net from 'node:net';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { RedisStore } from '../probes/replication/redis-store.js';
import type { Verdict } from '../probes/replication/types.js';
import { startRedis } from '../test/helpers/redis.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3' },
    members: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '20' },
  },
});
const NODES = Number(values.nodes);
const MEMBERS = Number(values.members);
const SECONDS = Number(values.seconds);

interface Relay {
  readonly port: number;
  /** Bytes from the node to Redis. */
  out: number;
  /** Bytes from Redis to the node. */
  in: number;
  close(): Promise<void>;
}

async function relay(target: number): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  const r: Relay = { port: 0, out: 0, in: 0, close: async () => undefined };
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: target });
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => (r.out += d.length));
    upstream.on('data', (d: Buffer) => (r.in += d.length));
    client.pipe(upstream).pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  return Object.assign(r, {
    port: typeof addr === 'object' && addr !== null ? addr.port : 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}

function memberKey(i: number): string {
  return `svc${i % 50}.example.test./member-${i}|v4`;
}

async function info(client: Redis): Promise<Map<string, number>> {
  const text = await client.info('all');
  const m = new Map<string, number>();
  for (const line of text.split('\r\n')) {
    const [k, v] = line.split(':');
    if (k === undefined || v === undefined) continue;
    if (k.startsWith('cmdstat_')) {
      const calls = /calls=(\d+)/.exec(v);
      if (calls) m.set(k, Number(calls[1]));
    } else if (/^\d+$/.test(v)) m.set(k, Number(v));
  }
  return m;
}

interface Row {
  readonly scenario: string;
  readonly perNode: { out: number; in: number }[];
  readonly cmdsPerSec: number;
  readonly byCommand: [string, number][];
  readonly serverIn: number;
  readonly serverOut: number;
}

async function scenario(name: string, changeRate: number): Promise<Row> {
  const redis = await startRedis({ appendonly: false });
  const admin = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true });
  await admin.connect();
  const relays: Relay[] = [];
  const stores: RedisStore[] = [];
  const maps: Map<string, Verdict>[] = [];
  try {
    for (let n = 0; n < NODES; n++) {
      const r = await relay(redis.port);
      relays.push(r);
      const store = new RedisStore({
        node: { id: `node-${n}`, pop: `pop-${n}` },
        redis: { url: `redis://127.0.0.1:${r.port}/0`, prefix: 'bench' },
        quorum: { mode: 'majority' },
        // The defaults documented for the config (contracts.md).
        staleAfterMs: 3000,
        heartbeatMs: 1000,
        resyncMs: 10_000,
        outageGraceMs: 60_000,
        divergenceAfterMs: 10_000,
      });
      await store.start();
      stores.push(store);
      const m = new Map<string, Verdict>();
      for (let i = 0; i < MEMBERS; i++) m.set(memberKey(i), { status: 'up', since: Date.now(), reason: 'http 200' });
      maps.push(m);
      store.publishVerdicts(m);
    }
    const tick = (): void => {
      stores.forEach((s, n) => {
        const m = maps[n] as Map<string, Verdict>;
        const changes = Math.round(MEMBERS * changeRate);
        for (let c = 0; c < changes; c++) {
          const k = memberKey(Math.floor(Math.random() * MEMBERS));
          const old = m.get(k);
          const down = old?.status === 'up';
          m.set(k, { status: down ? 'down' : 'up', since: Date.now(), reason: down ? 'http 503' : 'http 200' });
        }
        // The full map every second, as the engine hands it over.
        s.publishVerdicts(new Map(m));
      });
    };
    // Warm-up: initial writes and the first resyncs are not steady state.
    const warm = setInterval(tick, 1000);
    await new Promise((r) => setTimeout(r, 3000));
    clearInterval(warm);

    const before = await info(admin);
    const base = relays.map((r) => ({ out: r.out, in: r.in }));
    const t0 = process.hrtime.bigint();
    const timer = setInterval(tick, 1000);
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    clearInterval(timer);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const after = await info(admin);

    const delta = (k: string): number => (after.get(k) ?? 0) - (before.get(k) ?? 0);
    const byCommand = [...after.keys()]
      .filter((k) => k.startsWith('cmdstat_'))
      .map((k): [string, number] => [k.slice(8), delta(k) / secs])
      .filter(([c, v]) => v > 0 && c !== 'info')
      .sort((a, b) => b[1] - a[1]);
    return {
      scenario: name,
      perNode: relays.map((r, i) => ({ out: (r.out - (base[i]?.out ?? 0)) / secs, in: (r.in - (base[i]?.in ?? 0)) / secs })),
      // Minus the one INFO call of ours inside the window.
      cmdsPerSec: (delta('total_commands_processed') - 1) / secs,
      byCommand,
      serverIn: delta('total_net_input_bytes') / secs,
      serverOut: delta('total_net_output_bytes') / secs,
    };
  } finally {
    await Promise.all(stores.map((s) => s.close()));
    await Promise.all(relays.map((r) => r.close()));
    admin.disconnect();
    await redis.stop();
  }
}

function kb(n: number): string {
  return `${(n / 1024).toFixed(1)} KiB/s`;
}

const rows: Row[] = [];
for (const [name, rate] of [
  ['1% changes/s', 0.01],
  ['0% changes/s', 0],
] as const) {
  process.stderr.write(`running "${name}" (${NODES} nodes x ${MEMBERS} members, ${SECONDS} s)...\n`);
  rows.push(await scenario(name, rate));
}

console.log(`\nReplication traffic: ${NODES} nodes, ${MEMBERS} verdicts each, full map published every 1 s, heartbeat 1 s, resync 10 s, ${SECONDS} s measured\n`);
console.log('| scenario | node out (to Redis) | node in (from Redis) | Redis commands/s (all nodes) | commands/s per node |');
console.log('| --- | --- | --- | --- | --- |');
for (const r of rows) {
  const out = r.perNode.reduce((a, x) => a + x.out, 0) / r.perNode.length;
  const inn = r.perNode.reduce((a, x) => a + x.in, 0) / r.perNode.length;
  console.log(`| ${r.scenario} | ${kb(out)} | ${kb(inn)} | ${r.cmdsPerSec.toFixed(1)} | ${(r.cmdsPerSec / NODES).toFixed(1)} |`);
}
for (const r of rows) {
  console.log(`\n${r.scenario}: per node out/in ${r.perNode.map((x) => `${kb(x.out)} / ${kb(x.in)}`).join('; ')}`);
  console.log(`  Redis INFO: in ${kb(r.serverIn)}, out ${kb(r.serverOut)}; commands/s: ${r.byCommand.map(([c, v]) => `${c} ${v.toFixed(1)}`).join(', ')}`);
}
