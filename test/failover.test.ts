// End to end: real HTTP backends on 127.0.0.2 and 127.0.0.3, Vigil probing
// them, answers checked over DNS with c-ares and dig. Timings are shortened
// (W = fall × recheck = 4 × 100 ms) so the file finishes in seconds; the
// bounds asserted are the configured detection times plus slack for a busy
// CI machine, never throughput.

import t, { type Test } from 'tap';
import { Resolver } from 'node:dns/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startDaemon, type Daemon } from '../server/daemon.js';
import type { CompiledConfig } from '../zones/zone.js';
import { backend, type Backend } from './helpers/backend.js';

const run = promisify(execFile);

const ZONE = `$ORIGIN failover.test.
$TTL 300
@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
ns1 A 127.0.0.1
static A 192.0.2.1
`;

function configYaml(port: number, extra: { failback?: string } = {}): string {
  const probe = `{ type: http, port: ${port}, path: /health, interval: 100ms, recheck: 100ms, timeout: 200ms, jitter: 0ms, rise: 2, fall: 4 }`;
  return `listen: ["127.0.0.1:0"]
views:
  - name: inside
    match: ["127.0.0.9/32"]
  - name: outside
zones:
  - origin: failover.test.
    file: failover.test.zone
services:
  - name: www.failover.test.
    views: [outside]
    policy: failover
    ttl: 60
    degraded_ttl: 5
    settle: 1s
    failback: ${extra.failback ?? 'immediate'}
    damping: false
    probe: ${probe}
    members:
      - { name: primary, addresses: ["127.0.0.2"], priority: 1 }
      - { name: secondary, addresses: ["127.0.0.3"], priority: 2 }
  - name: www.failover.test.
    views: [inside]
    policy: failover
    ttl: 60
    damping: false
    probe: ${probe}
    members:
      - { name: internal, addresses: ["127.0.0.4"] }
  - name: pool.failover.test.
    policy: multivalue
    ttl: 60
    degraded_ttl: 5
    settle: 1s
    damping: false
    probe: ${probe}
    members:
      - { name: a, addresses: ["127.0.0.2"] }
      - { name: b, addresses: ["127.0.0.3"] }
`;
}

const onLoopback = (c: CompiledConfig): CompiledConfig => ({ ...c, server: { ...c.server, listen: [{ host: '127.0.0.1', port: 0 }] } });

async function resolveA(port: number, name: string, local?: string): Promise<{ address: string; ttl: number }[]> {
  const r = new Resolver({ timeout: 1000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  if (local !== undefined) r.setLocalAddress(local);
  return r.resolve4(name, { ttl: true });
}

async function addresses(port: number, name: string, local?: string): Promise<string[]> {
  return (await resolveA(port, name, local)).map((a) => a.address).sort();
}

/** Polls until `cond` holds; returns the elapsed ms. Bounded: fails the test after `limitMs`. */
async function until(t: Test, what: string, cond: () => Promise<boolean>, limitMs: number): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - start;
    if (Date.now() - start > limitMs) {
      t.fail(`${what}: not within ${limitMs} ms`);
      return Date.now() - start;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Rig {
  readonly primary: Backend;
  readonly secondary: Backend;
  readonly daemon: Daemon;
  readonly port: number;
  readonly file: string;
}

/** Two backends on 127.0.0.2/3 (same port) and a daemon serving the config `yamlFor(port)` writes. */
async function rig(t: Test, prefix: string, yamlFor: (backendPort: number) => string): Promise<Rig> {
  const primary = backend('127.0.0.2');
  await primary.start();
  const secondary = backend('127.0.0.3', primary.port);
  await secondary.start();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFileSync(join(dir, 'failover.test.zone'), ZONE);
  const file = join(dir, 'vigil.yaml');
  writeFileSync(file, yamlFor(primary.port));
  const daemon = await startDaemon(file, pino({ level: 'silent' }), { adjust: onLoopback, levelFixed: true });
  t.teardown(async () => {
    await daemon.close();
    await primary.stop();
    await secondary.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { primary, secondary, daemon, port: daemon.server.addresses.udp[0]!.port, file };
}

t.test('failover, blip immunity, fail-open, failback, views and reload', async (t) => {
  const { primary, secondary, daemon, port, file } = await rig(t, 'vigil-failover-', (p) => configYaml(p));

  await t.test('starts on the primary, and probes reach both backends', async (t) => {
    t.same(await addresses(port, 'www.failover.test'), ['127.0.0.2']);
    await until(t, 'both backends probed', async () => primary.hits > 2 && secondary.hits > 2, 8000);
    t.same(await addresses(port, 'pool.failover.test'), ['127.0.0.2', '127.0.0.3'], 'multivalue hands out both');
  });

  await t.test('a blip shorter than the confirmation window moves nothing', async (t) => {
    // Let the settle window of the start pass so TTLs are the steady ones.
    await new Promise((r) => setTimeout(r, 1200));
    primary.mode = '503';
    const seen = new Set<string>();
    const blipEnd = Date.now() + 150; // < (fall - 1) × recheck = 300 ms
    while (Date.now() < blipEnd) {
      for (const a of await addresses(port, 'www.failover.test')) seen.add(a);
      await new Promise((r) => setTimeout(r, 10));
    }
    primary.mode = 'ok';
    const settleUntil = Date.now() + 800;
    while (Date.now() < settleUntil) {
      for (const a of await addresses(port, 'www.failover.test')) seen.add(a);
      await new Promise((r) => setTimeout(r, 20));
    }
    t.same([...seen], ['127.0.0.2'], 'never switched to the secondary');
  });

  await t.test('killing the primary moves the answer within the detection time', async (t) => {
    await primary.stop();
    // fall × recheck + interval + timeout = 400 + 100 + 200 ms; ×3 slack for a loaded CI machine.
    const ms = await until(t, 'switch to secondary', async () => (await addresses(port, 'www.failover.test')).join() === '127.0.0.3', 2100);
    t.comment(`kill → answer changed in ${ms} ms`);
    const [a] = await resolveA(port, 'www.failover.test');
    t.equal(a!.ttl, 5, 'degraded TTL while a member is down');
    await until(t, 'multivalue drops the dead member', async () => (await addresses(port, 'pool.failover.test')).join() === '127.0.0.3', 2100);
  });

  await t.test('with every member down the answer fails open instead of going empty', async (t) => {
    await secondary.stop();
    await until(t, 'fail open', async () => (await addresses(port, 'www.failover.test')).join() === '127.0.0.2,127.0.0.3', 2100);
    // The pool's members are probed on their own schedule: give them the same detection time.
    await until(t, 'pool fails open', async () => (await addresses(port, 'pool.failover.test')).join() === '127.0.0.2,127.0.0.3', 2100);
  });

  await t.test('recovery: the primary comes back (failback immediate)', async (t) => {
    await secondary.start();
    await until(t, 'secondary serves', async () => (await addresses(port, 'www.failover.test')).join() === '127.0.0.3', 2100);
    await primary.start();
    const ms = await until(t, 'failback to primary', async () => (await addresses(port, 'www.failover.test')).join() === '127.0.0.2', 2100);
    t.comment(`primary back → answer changed in ${ms} ms`);
  });

  await t.test('views: a client from 127.0.0.9 gets the inside answer', async (t) => {
    t.same(await addresses(port, 'www.failover.test', '127.0.0.9'), ['127.0.0.4']);
    t.same(await addresses(port, 'www.failover.test', '127.0.0.1'), ['127.0.0.2']);
    const { stdout } = await run('dig', ['@127.0.0.1', '-p', String(port), '-b', '127.0.0.9', '+short', 'www.failover.test', 'A']);
    t.equal(stdout.trim(), '127.0.0.4', 'dig agrees');
    t.same(await addresses(port, 'static.failover.test', '127.0.0.9'), ['192.0.2.1'], 'static data is in every view');
  });

  await t.test('reload: a broken config is refused and answers stay; a good one applies with no failed query', async (t) => {
    writeFileSync(file, configYaml(primary.port) + '  - name: oops\n');
    const bad = await daemon.reload();
    t.equal(bad.ok, false);
    t.match(bad.errors, /vigil\.yaml:\d+/, 'the error names file and line');
    t.same(await addresses(port, 'www.failover.test'), ['127.0.0.2']);

    let failures = 0;
    let queries = 0;
    let stop = false;
    const load = Promise.all(
      Array.from({ length: 8 }, async () => {
        while (!stop) {
          queries++;
          try {
            await addresses(port, 'www.failover.test');
          } catch {
            failures++;
          }
        }
      }),
    );
    writeFileSync(file, configYaml(primary.port).replace('["127.0.0.4"]', '["127.0.0.5"]'));
    const good = await daemon.reload();
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await load;
    t.equal(good.ok, true);
    t.equal(failures, 0, `no failed query among ${queries} during the reload`);
    t.same(await addresses(port, 'www.failover.test', '127.0.0.9'), ['127.0.0.5'], 'the new config answers');
    t.same(await addresses(port, 'www.failover.test'), ['127.0.0.2'], 'unchanged members kept their health');
  });
});

t.test('gradual failback: the recovered primary gets a share of answers, then all', async (t) => {
  const { primary, secondary, port } = await rig(t, 'vigil-ramp-', (p) =>
    configYaml(p, { failback: '{ ramp: [50, 100], step: 1500ms }' }),
  );

  // The probe worker must be running before the kill, or the test times the worker's start-up.
  await until(t, 'probes running', async () => primary.hits > 2 && secondary.hits > 2, 8000);
  await primary.stop();
  await until(t, 'on secondary', async () => (await addresses(port, 'www.failover.test')).join() === '127.0.0.3', 2100);
  await primary.start();
  await until(t, 'ramp begins', async () => (await addresses(port, 'www.failover.test')).join() === '127.0.0.2', 2100);
  const counts = new Map<string, number>();
  for (let i = 0; i < 20; i++) {
    const a = (await addresses(port, 'www.failover.test')).join();
    counts.set(a, (counts.get(a) ?? 0) + 1);
  }
  t.ok((counts.get('127.0.0.2') ?? 0) > 0 && (counts.get('127.0.0.3') ?? 0) > 0, `both served during the 50% step: ${JSON.stringify([...counts])}`);
  const [a] = await resolveA(port, 'www.failover.test');
  t.ok(a!.ttl <= 2, `TTL (${a!.ttl}) does not outlive the ramp step`);
  await until(t, 'ramp completes', async () => {
    for (let i = 0; i < 6; i++) if ((await addresses(port, 'www.failover.test')).join() !== '127.0.0.2') return false;
    return true;
  }, 4000);
});

t.test('manual failback waits for the operator', async (t) => {
  const { primary, secondary, daemon, port } = await rig(t, 'vigil-manual-', (p) =>
    configYaml(p, { failback: 'manual' }) + 'admin:\n  listen: "127.0.0.1:0"\n',
  );

  // The probe worker must be running before the kill, or the test times the worker's start-up.
  await until(t, 'probes running', async () => primary.hits > 2 && secondary.hits > 2, 8000);
  await primary.stop();
  await until(t, 'on secondary', async () => (await addresses(port, 'www.failover.test')).join() === '127.0.0.3', 2100);
  await primary.start();
  await until(t, 'primary probed up again', async () => primary.hits > 4, 3000);
  await new Promise((r) => setTimeout(r, 500));
  t.same(await addresses(port, 'www.failover.test'), ['127.0.0.3'], 'still on the secondary: failback is held');
  const admin = daemon.admin!.address;
  const res = await fetch(`http://127.0.0.1:${admin.port}/failback/www.failover.test`, { method: 'POST' });
  t.equal(res.status, 200);
  await until(t, 'failback after approval', async () => (await addresses(port, 'www.failover.test')).join() === '127.0.0.2', 1000);
  const state = (await (await fetch(`http://127.0.0.1:${admin.port}/state`)).json()) as { services: { name: string; answer: string }[] };
  t.ok(state.services.some((s) => s.name === 'www.failover.test.' && s.answer.includes('127.0.0.2')), 'GET /state shows the answer');
});

t.test('with the default probe timings: a kill switches within W + 0.5 s, a 500 ms blip moves nothing', async (t) => {
  // Only what must be said: no timing keys, so interval 500 ms, recheck 200 ms, fall 5 (W = 1 s).
  const { primary, secondary, port } = await rig(
    t,
    'vigil-defaults-',
    (p) => `listen: ["127.0.0.1:0"]
zones:
  - origin: failover.test.
    file: failover.test.zone
services:
  - name: www.failover.test.
    failback: immediate
    probe: { type: http, port: ${p}, path: /health }
    members:
      - { name: primary, addresses: ["127.0.0.2"], priority: 1 }
      - { name: secondary, addresses: ["127.0.0.3"], priority: 2 }
`,
  );
  await until(t, 'probes running', async () => primary.hits > 2 && secondary.hits > 2, 8000);

  primary.mode = '503';
  const seen = new Set<string>();
  const blipEnd = Date.now() + 500;
  while (Date.now() < blipEnd) {
    for (const a of await addresses(port, 'www.failover.test')) seen.add(a);
    await new Promise((r) => setTimeout(r, 20));
  }
  primary.mode = 'ok';
  const after = Date.now() + 1500;
  while (Date.now() < after) {
    for (const a of await addresses(port, 'www.failover.test')) seen.add(a);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.same([...seen], ['127.0.0.2'], 'a 500 ms run of 503s never moved traffic');

  await primary.stop();
  // W + 0.5 s = 1.5 s; the bound allows 1 s more for a loaded CI machine, and the figure is reported.
  const ms = await until(t, 'switch', async () => (await addresses(port, 'www.failover.test')).join() === '127.0.0.3', 2500);
  t.comment(`default timings: kill → answer changed in ${ms} ms`);
});
