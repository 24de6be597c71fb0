// HealthMonitor and the probe worker against real backends on 127.0.0.1.
// Timings are the fast test ones (interval 100, recheck 50, timeout 100,
// fall 3, rise 2); bounds are the README's formulas × 3 for loaded CI boxes.
// Starting a worker under tap's TS loader takes about a second, so most
// scenarios share one monitor, each on its own members and backends.

import t from 'tap';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { HealthMonitor, type CheckEvent, type HealthTransition } from '../probes/monitor.js';
import { ProbeRunner, jobSignature, type FromWorker, type ProbeJob } from '../probes/worker.js';
import { healthKey, type FamilyHealth } from '../probes/health/state.js';
import type { CompiledMember, CompiledService, Damping, ProbeSpec } from '../zones/service.js';

const INTERVAL = 100;
const RECHECK = 50;
const TIMEOUT = 100;
const JITTER = 20;
const FALL = 3;
const RISE = 2;
const SLACK = 3;

const PROBE: ProbeSpec = {
  type: 'http',
  params: { scheme: 'http', path: '/health' },
  intervalMs: INTERVAL,
  timeoutMs: TIMEOUT,
  recheckMs: RECHECK,
  jitterMs: JITTER,
  rise: RISE,
  fall: FALL,
};
const DEFAULT_DAMPING: Damping = { enabled: true, penalty: 1000, suppress: 2000, reuse: 750, halfLifeMs: 60_000 };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------ fixtures

type Mode = 'ok' | '503' | 'hang';

/** An HTTP backend that can be healthy, return 503, hang (accept, never answer), or be killed. */
class Backend {
  mode: Mode = 'ok';
  port = 0;
  /** When > 0, the next request starts a 503 blip of this many ms (timed from that request). */
  armBlipMs = 0;
  private blipUntil = 0;
  private server: Server | undefined;

  constructor(readonly host = '127.0.0.1') {}

  async start(): Promise<this> {
    const server = createServer((_req, res) => {
      const now = Date.now();
      if (this.armBlipMs > 0) {
        this.blipUntil = now + this.armBlipMs;
        this.armBlipMs = 0;
      }
      if (this.mode === 'hang') return;
      const status = this.mode === '503' || now < this.blipUntil ? 503 : 200;
      res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end(status === 200 ? 'ok\n' : 'unavailable\n');
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host, () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
    return this;
  }

  /** Kills it: open connections are cut and the port refuses. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s === undefined) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

function member(service: string, name: string, backend: Backend, probe: Partial<ProbeSpec> = {}): CompiledMember {
  return {
    id: `${service}/${name}`,
    name,
    v4: [backend.host],
    v6: [],
    priority: 1,
    weight: 1,
    probe: { ...PROBE, ...probe, params: { ...PROBE.params, port: backend.port, ...probe.params } },
    probeKey: `${backend.host}:${backend.port}`,
  };
}

function service(name: string, members: CompiledMember[], opts: { damping?: Damping; initialState?: CompiledService['initialState'] } = {}): CompiledService {
  return {
    name,
    zone: 'example.test',
    views: [],
    kind: 'address',
    policy: 'multivalue',
    ttl: 60,
    degradedTtl: 10,
    settleMs: 0,
    minHealthy: 1,
    maxAnswers: 8,
    count: 1,
    whenAllDown: { mode: 'fail_open' },
    failback: { mode: 'immediate' },
    damping: opts.damping ?? DEFAULT_DAMPING,
    initialState: opts.initialState ?? 'unknown',
    members,
    where: { file: 'monitor.test.ts', line: 1 },
  };
}

interface Seen extends HealthTransition {
  /** When the main thread received the 'change' carrying it. */
  readonly at: number;
}

/** Everything a monitor reports, with receipt times. */
class Recorder {
  readonly seen: Seen[] = [];
  readonly checks: Array<CheckEvent & { at: number }> = [];
  changes = 0;
  private readonly waiters = new Set<() => void>();

  constructor(readonly monitor: HealthMonitor) {
    monitor.on('change', (_snapshot, transitions) => {
      const at = Date.now();
      this.changes++;
      for (const x of transitions) this.seen.push({ ...x, at });
      for (const w of this.waiters) w();
    });
    monitor.on('check', (e) => this.checks.push({ ...e, at: Date.now() }));
  }

  of(memberId: string, from = 0): Seen[] {
    return this.seen.slice(from).filter((s) => s.memberId === memberId);
  }

  checksOf(memberId: string, from = 0): CheckEvent[] {
    return this.checks.filter((c) => c.memberId === memberId && c.check.startedAt >= from);
  }

  /** The first transition of `memberId` at index ≥ from matching pred. */
  async next(memberId: string, pred: (s: Seen) => boolean, timeoutMs: number, from = 0): Promise<Seen> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.of(memberId, from).find(pred);
      if (hit !== undefined) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${memberId}; saw ${JSON.stringify(this.of(memberId, from))}`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.waiters.add(done);
      });
    }
  }
}

const key = (id: string): string => healthKey(id, 'v4');

// ------------------------------------------------------------------ bounds

/** README: first seen by the next regular check, then fall − 1 rechecks; + timeout for a black hole. */
const KILL_BOUND = FALL * RECHECK + INTERVAL + JITTER + TIMEOUT;
/** A hung backend: every check lasts the timeout, and checks never overlap, so the rechecks are timeout apart. */
const HANG_BOUND = FALL * Math.max(RECHECK, TIMEOUT) + INTERVAL + JITTER;
/** A check in flight, the next regular check, then rise − 1 rechecks. */
const RISE_BOUND = TIMEOUT + INTERVAL + JITTER + (RISE - 1) * RECHECK;

// ------------------------------------------------------------------ scheduling, in process

t.test('ProbeRunner: paced by confirm, jitter only on the steady interval, no overlap', async (t) => {
  const hung = await new Backend().start();
  hung.mode = 'hang';
  const reports: Array<FromWorker & { type: 'health' }> = [];
  const runner = new ProbeRunner((m) => {
    if (m.type === 'health') reports.push(m);
  });
  const job = (id: string, port: number, spec: Partial<ProbeSpec>): ProbeJob => ({
    key: key(id),
    serial: 1,
    memberId: id,
    family: 'v4',
    address: '127.0.0.1',
    spec: { ...PROBE, type: 'tcp', params: { port }, ...spec },
    damping: DEFAULT_DAMPING,
    initial: 'up',
  });
  // Port 1 refuses at once: every check fails instantly.
  const refused = job('r/refused', 1, { jitterMs: 40 });
  // Accepts but never answers the HTTP request: every check lasts the timeout.
  const slow: ProbeJob = { ...job('r/slow', hung.port, {}), spec: { ...PROBE, params: { scheme: 'http', port: hung.port } } };
  const started = Date.now();
  runner.configure([refused, slow]);
  t.equal(runner.size, 2);
  await sleep(1200);
  runner.stop();
  await hung.stop();

  // startedAt is Date.now() (whole ms) while pacing runs on performance.now(): gaps may read 1 ms short.
  const starts = (id: string): Array<{ at: number; status: string }> =>
    reports.filter((r) => r.key === key(id)).map((r) => ({ at: r.check!.startedAt, status: r.health.status }));
  const r = starts('r/refused');
  t.ok(r[0]!.at - started < 20, 'first check at once');
  t.same(r.slice(0, 3).map((x) => x.status), ['up', 'up', 'down'], 'fall 3');
  const recheckGaps = [r[1]!.at - r[0]!.at, r[2]!.at - r[1]!.at];
  for (const g of recheckGaps) t.ok(g >= RECHECK - 1 && g < RECHECK + 15, `recheck gap ${g} ms: not jittered`);
  const steadyGaps = r.slice(3).map((x, i) => x.at - r[2 + i]!.at);
  t.ok(steadyGaps.length >= 5);
  for (const g of steadyGaps) t.ok(g >= INTERVAL - 40 - 1 && g < INTERVAL + 40 + 15, `steady gap ${g} ms within interval ± jitter`);
  t.ok(new Set(steadyGaps).size > 1, `jitter varies the steady gaps: ${steadyGaps.join(', ')}`);

  const s = starts('r/slow');
  const slowGaps = s.slice(1).map((x, i) => x.at - s[i]!.at);
  for (const g of slowGaps) t.ok(g >= TIMEOUT - 1, `checks never overlap: gap ${g} ms ≥ timeout`);
  t.ok(reports.filter((x) => x.key === key('r/slow')).every((x) => x.check!.reason === 'timeout'));
  const count = reports.length;
  await sleep(150);
  t.equal(reports.length, count, 'stop() ends every loop');
});

t.test('ProbeRunner: configure keeps unchanged loops, restarts changed ones, stops removed ones, reports none as up', async (t) => {
  const reports: Array<FromWorker & { type: 'health' }> = [];
  const runner = new ProbeRunner((m) => {
    if (m.type === 'health') reports.push(m);
  });
  const base = (id: string, port: number): ProbeJob => ({
    key: key(id),
    serial: 1,
    memberId: id,
    family: 'v4',
    address: '127.0.0.1',
    spec: { ...PROBE, type: 'tcp', params: { port }, intervalMs: 1000, jitterMs: 0 },
    damping: DEFAULT_DAMPING,
    initial: 'down',
  });
  const a = base('c/a', 1);
  const b = base('c/b', 1);
  const gone = base('c/gone', 1);
  const none: ProbeJob = { ...base('c/none', 1), spec: { ...PROBE, type: 'none', params: {} } };
  runner.configure([a, b, gone, none]);
  await sleep(30);
  const noneReport = reports.find((r) => r.key === key('c/none'));
  t.same(noneReport?.health, { status: 'up', since: noneReport?.health.since, reason: 'not probed', held: false });
  t.equal(noneReport?.check, undefined);
  const firstChecks = (id: string): number => reports.filter((r) => r.key === key(id)).length;
  t.same([firstChecks('c/a'), firstChecks('c/b'), firstChecks('c/gone')], [1, 1, 1]);

  // Same address/spec/damping in another key order, and another initial: kept.
  const aAgain: ProbeJob = { ...a, initial: 'up', spec: Object.fromEntries(Object.entries(a.spec).reverse()) as unknown as ProbeSpec };
  t.equal(jobSignature(aAgain), jobSignature(a));
  const bChanged: ProbeJob = { ...b, spec: { ...b.spec, params: { port: 2 } } };
  runner.configure([aAgain, bChanged, none]);
  await sleep(30);
  t.same([firstChecks('c/a'), firstChecks('c/b'), firstChecks('c/gone'), firstChecks('c/none')], [1, 2, 1, 1], 'only the changed loop checked at once');
  t.equal(runner.size, 3);
  runner.stop();
});

t.test('ProbeRunner: "/re/flags" matchers become regular expressions', async (t) => {
  const backend = await new Backend().start();
  t.teardown(() => backend.stop());
  const reports: Array<FromWorker & { type: 'health' }> = [];
  const runner = new ProbeRunner((m) => {
    if (m.type === 'health') reports.push(m);
  });
  const job = (id: string, expectBody: string): ProbeJob => ({
    key: key(id),
    serial: 1,
    memberId: id,
    family: 'v4',
    address: '127.0.0.1',
    spec: { ...PROBE, params: { scheme: 'http', port: backend.port, expect_body: expectBody }, intervalMs: 1000 },
    damping: DEFAULT_DAMPING,
    initial: 'unknown',
  });
  runner.configure([job('m/re', '/^O+K$/mi'), job('m/sub', 'ok'), job('m/miss', '/^ok!/')]);
  await sleep(100);
  runner.stop();
  const reason = (id: string): string | undefined => reports.find((r) => r.key === key(id))?.check?.reason;
  t.same([reason('m/re'), reason('m/sub'), reason('m/miss')], ['http 200', 'http 200', 'body mismatch']);
});

// ------------------------------------------------------------------ the monitor, with a worker

const logLines: Array<Record<string, unknown>> = [];
const logger = pino({ level: 'info' }, { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) });

t.test('HealthMonitor against real backends', async (t) => {
  const killed = await Promise.all([0, 1, 2, 3, 4].map(() => new Backend().start()));
  const blip = await new Backend().start();
  const hang = await new Backend().start();
  const damp = await new Backend().start();
  const hungFarm = await new Backend().start();
  hungFarm.mode = 'hang';
  const moved = await new Backend('127.0.0.2').start();

  const DAMP: Damping = { enabled: true, penalty: 1000, suppress: 1300, reuse: 800, halfLifeMs: 1000 };
  const killSvc = service('kill.example.test', killed.map((b, i) => member('kill', `k${i}`, b)));
  const blipSvc = service('blip.example.test', [member('blip', 'b', blip)]);
  const hangSvc = service('hang.example.test', [member('hang', 'h', hang)]);
  const dampSvc = service('damp.example.test', [member('damp', 'd', damp)], { damping: DAMP });

  const monitor = new HealthMonitor({ logger });
  const rec = new Recorder(monitor);
  t.teardown(async () => {
    await monitor.close();
    await Promise.all([...killed, blip, hang, damp, hungFarm, moved].map((b) => b.stop()));
  });

  const t0 = Date.now();
  monitor.update([killSvc, blipSvc, hangSvc, dampSvc]);
  t.equal(monitor.snapshot().members.size, 0, 'no verdicts before the first checks');
  await monitor.ready();
  t.comment(`worker ready after ${Date.now() - t0} ms`);
  const ids = [...killed.map((_, i) => `kill/k${i}`), 'blip/b', 'hang/h', 'damp/d'];
  await Promise.all(ids.map((id) => rec.next(id, (s) => s.to === 'up', 5_000)));
  for (const id of ids) t.same(rec.of(id).map((s) => [s.from, s.to]), [['unknown', 'up']], `${id}: unknown → up, once`);
  const snap = monitor.snapshot();
  t.equal(snap.members.size, ids.length);
  t.equal(monitor.snapshot(), snap, 'same snapshot object while nothing changed');

  await t.test('a killed backend goes down within the window, reported once', async (t) => {
    const from = rec.seen.length;
    const killedAt = Date.now();
    await Promise.all(killed.map((b) => b.stop()));
    const downs = await Promise.all(killed.map((_, i) => rec.next(`kill/k${i}`, (s) => s.to === 'down', KILL_BOUND * SLACK + 500, from)));
    const ms = downs.map((d) => d.at - killedAt);
    t.comment(`kill → down: ${ms.join(', ')} ms (formula bound ${KILL_BOUND} ms, asserted < ${KILL_BOUND * SLACK} ms)`);
    for (const [i, d] of downs.entries()) {
      t.ok(ms[i]! < KILL_BOUND * SLACK, `k${i} down after ${ms[i]} ms`);
      t.equal(d.reason, 'refused');
      t.equal(d.from, 'up');
      t.equal(d.held, false);
    }
    const h = monitor.snapshot().members.get(key('kill/k0'))!;
    t.equal(h.status, 'down');
    t.equal(h.nextChangeAt, undefined, 'settled down');
    t.ok(h.since >= killedAt);
    await sleep(400);
    for (const i of killed.keys()) t.equal(rec.of(`kill/k${i}`, from).length, 1, `k${i}: one transition`);
    const line = logLines.find((l) => l['member'] === 'kill/k0' && l['to'] === 'down');
    t.match(line, { level: 30, msg: 'member status changed', family: 'v4', from: 'up', to: 'down', reason: 'refused', check: 'http', address: '127.0.0.1' });

    // Back on the same ports.
    const from2 = rec.seen.length;
    const restartedAt = Date.now();
    await Promise.all(killed.map((b) => b.start()));
    const ups = await Promise.all(killed.map((_, i) => rec.next(`kill/k${i}`, (s) => s.to === 'up', RISE_BOUND * SLACK + 500, from2)));
    const upMs = ups.map((u) => u.at - restartedAt);
    t.comment(`restart → up: ${upMs.join(', ')} ms (bound ${RISE_BOUND} ms)`);
    for (const m of upMs) t.ok(m < RISE_BOUND * SLACK);
  });

  await t.test('a hung backend goes down through timeouts, and recovers after rise successes', async (t) => {
    const from = rec.seen.length;
    const hungAt = Date.now();
    hang.mode = 'hang';
    const down = await rec.next('hang/h', (s) => s.to === 'down', HANG_BOUND * SLACK + 500, from);
    t.comment(`hang → down: ${down.at - hungAt} ms (bound ${HANG_BOUND} ms)`);
    t.ok(down.at - hungAt < HANG_BOUND * SLACK);
    t.equal(down.reason, 'timeout');
    const fixedAt = Date.now();
    hang.mode = 'ok';
    const up = await rec.next('hang/h', (s) => s.to === 'up', RISE_BOUND * SLACK + 500, from);
    t.comment(`fixed → up: ${up.at - fixedAt} ms (bound ${RISE_BOUND} ms)`);
    t.ok(up.at - fixedAt < RISE_BOUND * SLACK);
    // A check started just before the fix may reach the backend after it.
    const checks = rec.checksOf('hang/h', fixedAt - TIMEOUT).filter((c) => c.check.ok);
    t.ok(checks.length >= RISE, 'rise successes');
    t.same(rec.of('hang/h', from).map((s) => s.to), ['down', 'up']);
  });

  await t.test('blips shorter than (fall − 1) × recheck never flip a member', async (t) => {
    const from = rec.seen.length;
    const since = Date.now();
    const blipMs = (FALL - 1) * RECHECK - 50;
    for (let i = 0; i < 5; i++) {
      blip.armBlipMs = blipMs;
      // Let the blip start with the next check, then some random phase before the next one.
      while (blip.armBlipMs > 0) await sleep(5);
      await sleep(250 + Math.random() * 60);
    }
    const checks = rec.checksOf('blip/b', since);
    const failed = checks.filter((c) => !c.check.ok);
    t.ok(failed.length >= 5, `every blip was seen (${failed.length} failed checks)`);
    t.ok(failed.every((c) => c.check.reason === 'http 503'));
    let run = 0;
    let longest = 0;
    for (const c of checks) {
      run = c.check.ok ? 0 : run + 1;
      longest = Math.max(longest, run);
    }
    t.ok(longest < FALL, `at most ${longest} failures in a row`);
    t.same(rec.of('blip/b', from), [], 'no transition');
    t.equal(monitor.snapshot().members.get(key('blip/b'))?.status, 'up');
  });

  await t.test('flap damping holds a flapping member down, then releases it', async (t) => {
    const from = rec.seen.length;
    const wait = 3_000;
    damp.mode = '503';
    await rec.next('damp/d', (s) => s.to === 'down', wait, from);
    damp.mode = 'ok';
    await rec.next('damp/d', (s) => s.to === 'up', wait, from);
    let phase = rec.seen.length;
    damp.mode = '503';
    const secondDown = await rec.next('damp/d', (s) => s.to === 'down', wait, phase);
    t.equal(secondDown.held, false, 'failing: down for real, not held');
    phase = rec.seen.length;
    damp.mode = 'ok';
    const okAt = Date.now();
    const held = await rec.next('damp/d', (s) => s.held, wait, phase);
    t.same([held.from, held.to], ['down', 'down'], 'checks pass, status stays down');
    const h = monitor.snapshot().members.get(key('damp/d'))!;
    t.match(h, { status: 'down', held: true, reason: 'http 200' });
    t.type(h.nextChangeAt, 'number');
    t.ok(h.nextChangeAt! > Date.now(), 'release is in the future');
    t.ok(logLines.some((l) => l['member'] === 'damp/d' && l['msg'] === 'member held down by flap damping'));
    phase = rec.seen.length;
    const released = await rec.next('damp/d', (s) => s.to === 'up', 5_000, phase);
    t.equal(released.held, false);
    const late = released.at - h.nextChangeAt!;
    t.comment(`held for ${released.at - okAt} ms after the checks passed again; released ${late} ms after the announced nextChangeAt`);
    t.ok(late >= -2 && late < 300, 'released at the announced time');
    const passing = rec.checksOf('damp/d', okAt).filter((c) => c.check.ok && c.health.held);
    t.ok(passing.length >= 3, 'checks passed while held');
    t.same(rec.of('damp/d', from).map((s) => `${s.to}${s.held ? ' (held)' : ''}`), ['down', 'up', 'down', 'down (held)', 'up']);
  });

  await t.test('update keeps unchanged members, resets changed ones, drops removed ones', async (t) => {
    const before = monitor.snapshot();
    const k0 = before.members.get(key('kill/k0'))!;
    const changedBlip = service('blip.example.test', [member('blip', 'b', moved)]);
    const noneSvc = service('static.example.test', [{ ...member('static', 's', blip), probe: { ...PROBE, type: 'none', params: {} } }]);
    monitor.approveFailback('kill.example.test', 1234);
    monitor.approveFailback('hang.example.test', 1235);
    const from = rec.seen.length;
    const at = Date.now();
    monitor.update([killSvc, changedBlip, dampSvc, noneSvc]);
    const after = monitor.snapshot();
    t.not(after, before, 'new snapshot');
    t.equal(after.members.get(key('kill/k0')), k0, 'unchanged member: same health object');
    t.notOk(after.members.has(key('blip/b')), 'changed address: no verdict until the new loop reports');
    t.notOk(after.members.has(key('hang/h')), 'removed service: dropped');
    t.match(after.members.get(key('static/s')), { status: 'up', reason: 'not probed', held: false });
    t.same([...after.failbackApproved], [['kill.example.test', 1234]], 'approval of a removed service dropped');

    const up = await rec.next('blip/b', (s) => s.to === 'up', 3_000, from);
    t.same(rec.of('blip/b', from).map((s) => [s.from, s.to]), [['unknown', 'up']], 'starts over from initialState');
    t.equal(rec.checksOf('blip/b', at)[0]?.address, '127.0.0.2');
    t.ok(up.at - at < 1_000);
    await sleep(2 * INTERVAL);
    const k0Checks = rec.checksOf('kill/k0', at);
    t.ok(k0Checks.length >= 2, 'unchanged loop kept running');
    t.ok(k0Checks.every((c) => c.health.status === 'up' && c.health.since === k0.since), 'and kept its state');
    t.same(rec.of('kill/k0', from), []);
    t.same(rec.checksOf('hang/h', at + 20), [], 'removed loop stopped');
    t.same(rec.of('static/s', from).map((s) => [s.from, s.to]), [['unknown', 'up']]);
  });

  await t.test('the main thread is not blocked while 50 probes hit a hung backend', async (t) => {
    const farm = service('farm.example.test', Array.from({ length: 50 }, (_, i) => member('farm', `f${i}`, hungFarm)));
    const current = [killSvc, service('blip.example.test', [member('blip', 'b', moved)]), dampSvc, farm];
    monitor.update(current);
    await sleep(100);
    const start = Date.now();
    let last = start;
    let maxGap = 0;
    let ticks = 0;
    await new Promise<void>((resolve) => {
      const iv = setInterval(() => {
        const now = Date.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
        ticks++;
        if (now - start >= 1_200) {
          clearInterval(iv);
          resolve();
        }
      }, 10);
    });
    const timeouts = rec.checks.filter((c) => c.memberId.startsWith('farm/') && c.check.reason === 'timeout' && c.check.startedAt >= start);
    t.comment(`${ticks} ticks of a 10 ms interval, max gap ${maxGap} ms, ${timeouts.length} timed-out checks meanwhile`);
    t.ok(timeouts.length >= 50 * 4, 'the probes were busy');
    t.ok(maxGap < 200, `max gap ${maxGap} ms`);
    await Promise.all(farm.members.map((m) => rec.next(m.id, (s) => s.to === 'down', 2_000)));
  });

  await t.test('a crashed worker is restarted; health is kept meanwhile', async (t) => {
    const before = monitor.snapshot();
    const from = rec.seen.length;
    const crashedAt = Date.now();
    const worker = (monitor as unknown as { worker: Worker | undefined }).worker;
    t.ok(worker, 'a worker runs');
    await worker!.terminate();
    await sleep(20);
    const statuses = (snap: typeof before): Array<[string, string, boolean, number]> =>
      [...snap.members].map(([k, h]) => [k, h.status, h.held, h.since]);
    t.same(statuses(monitor.snapshot()), statuses(before), 'nothing changed: no fail-closed, no reset');
    t.ok(logLines.some((l) => l['level'] === 50 && String(l['msg']).startsWith('probe worker exited')));
    await monitor.ready();
    const resumed = await (async () => {
      // A new worker loads its module through tap's TypeScript loader (about 2 s here, more under a full parallel run).
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        const c = rec.checksOf('kill/k0', crashedAt);
        if (c.length >= 2) return c;
        await sleep(20);
      }
      return [];
    })();
    t.comment(`checks resumed ${resumed[0] === undefined ? '-' : resumed[0].check.startedAt - crashedAt} ms after the crash`);
    t.ok(resumed.length >= 2, 'probing resumed');
    t.ok(resumed.every((c) => c.health.status === 'up' && c.health.since === before.members.get(key('kill/k0'))!.since), 'seeded with the last known health');
    await sleep(200);
    t.same(rec.of('kill/k0', from), [], 'no transition for an up member');
    t.same(rec.seen.slice(from).filter((s) => s.memberId.startsWith('farm/')), [], 'nor for down ones');
  });

  await t.test('close() ends the worker', async (t) => {
    const worker = (monitor as unknown as { worker: Worker | undefined }).worker!;
    let exited = false;
    worker.once('exit', () => {
      exited = true;
    });
    const at = Date.now();
    await monitor.close();
    t.ok(exited, `worker exited (${Date.now() - at} ms)`);
    const n = rec.checks.length;
    await sleep(100);
    t.equal(rec.checks.length, n, 'no more results');
    t.throws(() => monitor.update([]), /closed/);
  });
});

t.test('a process whose monitor is closed exits on its own', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-monitor-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, 'close.mjs');
  const monitorUrl = new URL('../probes/monitor.ts', import.meta.url).href;
  const svc = service('exit.example.test', [{ ...member('exit', 'a', new Backend()), probe: { ...PROBE, type: 'tcp', params: { port: 1 } } }]);
  writeFileSync(
    script,
    `import { HealthMonitor } from ${JSON.stringify(monitorUrl)};
const m = new HealthMonitor();
let checks = 0;
m.on('check', () => checks++);
m.update([${JSON.stringify(svc)}]);
await m.ready();
while (checks < 3) await new Promise((r) => setTimeout(r, 20));
await m.close();
console.log('closed after ' + checks + ' checks');
`,
  );
  const child = spawn(process.execPath, [...process.execArgv, script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  let closedAt = 0;
  child.stdout.on('data', () => {
    if (closedAt === 0 && out.includes('closed')) closedAt = Date.now();
  });
  const code = await new Promise<number | null>((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('exit', (c) => {
      clearTimeout(killer);
      resolve(c);
    });
  });
  t.equal(code, 0, `exit code (stderr: ${err.slice(0, 500)})`);
  t.match(out, /closed after \d+ checks/);
  t.ok(closedAt > 0 && Date.now() - closedAt < 1_000, `exited ${Date.now() - closedAt} ms after close()`);
});

t.test('members that probe the same backend the same way share one loop', async (t) => {
  const backend = await new Backend().start();
  const monitor = new HealthMonitor({ logger: pino({ level: 'silent' }) });
  const rec = new Recorder(monitor);
  t.teardown(async () => {
    await monitor.close();
    await backend.stop();
  });
  // The same backend behind two services (say, one per view), probed identically.
  monitor.update([service('www.', [member('www.', 'a', backend)]), service('pool.', [member('pool.', 'a', backend)])]);
  await rec.next('www./a', (s) => s.to === 'up', 3000 * SLACK);
  await rec.next('pool./a', (s) => s.to === 'up', 3000 * SLACK);
  const from = Date.now();
  await sleep(400);
  const starts = (id: string): number[] => rec.checksOf(id, from).map((c) => c.check.startedAt);
  t.ok(starts('www./a').length > 0, 'checks ran');
  t.same(starts('pool./a'), starts('www./a'), 'every check is one check, reported to both members');
  await backend.stop();
  const down1 = await rec.next('www./a', (s) => s.to === 'down', 2000 * SLACK);
  const down2 = await rec.next('pool./a', (s) => s.to === 'down', 2000 * SLACK);
  t.equal(down1.at, down2.at, 'both went down in the same change');
  const snap = monitor.snapshot();
  t.equal(snap.members.get(key('www./a'))?.since, snap.members.get(key('pool./a'))?.since);
});
