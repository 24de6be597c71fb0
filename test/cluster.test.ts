// `vigil serve --workers 2`: the real CLI with two serving workers sharing the
// UDP socket and the primary keeping probes, TCP, metrics and admin. Checked
// from outside, with c-ares and raw UDP: health changes reach every worker,
// the workers' counts reach /metrics, a killed worker is replaced while the
// other keeps answering, a reload reaches both, cookies made by one are valid
// at the other (rate limiting lets only cookie-proven clients through), and
// SIGTERM leaves no process behind.

import t, { type Test } from 'tap';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import packet from 'dns-packet';
import { backend } from './helpers/backend.js';

const CLI = fileURLToPath(new URL('../dist/cli/vigil.js', import.meta.url));

const zone = (ttl: number): string => `$ORIGIN failover.test.
$TTL 300
@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
ns1 A 127.0.0.1
static ${ttl} A 192.0.2.1
`;

function config(port: number): string {
  // --log-level info on the command line must win over this (the test reads info lines).
  return `listen: ["127.0.0.1:0"]
log: { level: error }
metrics: { listen: "127.0.0.1:0" }
zones:
  - origin: failover.test.
    file: failover.test.zone
  - origin: keep.test.
    file: keep.test.zone
rate_limit:
  responses_per_second: 2
  slip: 0
  ipv4_prefix_length: 32
  exempt_clients: ["127.0.0.1"]
services:
  - name: www.failover.test.
    policy: failover
    failback: immediate
    damping: false
    probe: { type: http, port: ${port}, path: /health, interval: 100ms, recheck: 100ms, timeout: 200ms, jitter: 0ms, rise: 2, fall: 2 }
    members:
      - { name: primary, addresses: ["127.0.0.2"], priority: 1 }
      - { name: secondary, addresses: ["127.0.0.3"], priority: 2 }
`;
}

interface Running {
  child: ChildProcess;
  port: number;
  metricsPort: number;
  log: () => string;
}

async function start(t: Test, file: string, extra: readonly string[] = []): Promise<Running> {
  const child = spawn(process.execPath, [CLI, 'serve', '--config', file, '--workers', '2', '--log-level', 'info', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const listening = lines.find((l) => l['msg'] === 'listening');
    const metrics = lines.find((l) => l['msg'] === 'metrics listening');
    if (listening !== undefined && metrics !== undefined) {
      return {
        child,
        port: (listening['tcp'] as { port: number }[])[0]!.port,
        metricsPort: (metrics['metrics'] as { port: number }).port,
        log: () => out,
      };
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`vigil did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function workerPids(primary: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(primary)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One UDP query from `from`; the response, or undefined after `timeoutMs`. */
function udpQuery(port: number, from: string, name: string, cookie?: Buffer, timeoutMs = 500): Promise<packet.Packet | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const id = Math.floor(Math.random() * 65535);
    const q = packet.encode({
      type: 'query',
      id,
      questions: [{ name, type: 'A' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: cookie !== undefined ? [{ code: 10, data: cookie } as never] : [] } as never],
    });
    const timer = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(packet.decode(m));
    });
    s.bind(0, from, () => s.send(q, port, '127.0.0.1'));
  });
}

function cookieOf(p: packet.Packet): Buffer | undefined {
  const opt = (p.additionals ?? []).find((a) => a.type === 'OPT') as { options?: { code: number; data: Buffer }[] } | undefined;
  return opt?.options?.find((o) => o.code === 10)?.data;
}

t.test('two serving workers answer as one server', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-cluster-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const primary = backend('127.0.0.2');
  const secondary = backend('127.0.0.3', 0);
  await primary.start();
  secondary.port = primary.port;
  await secondary.start();
  t.teardown(async () => {
    await primary.stop();
    await secondary.stop();
  });
  writeFileSync(join(dir, 'failover.test.zone'), zone(300));
  writeFileSync(join(dir, 'keep.test.zone'), '$ORIGIN keep.test.\n@ 300 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ 300 NS ns1\nns1 300 A 127.0.0.1\nkept 300 A 192.0.2.77\n');
  const file = join(dir, 'vigil.yaml');
  writeFileSync(file, config(primary.port));
  const v = await start(t, file);
  const pid = v.child.pid!;
  t.equal(workerPids(pid).length, 2, 'two worker processes');

  const resolver = new Resolver({ timeout: 1000, tries: 2 });
  resolver.setServers([`127.0.0.1:${v.port}`]);
  const www = async (): Promise<string> => (await resolver.resolve4('www.failover.test')).join(',');
  // Both workers answer (the kernel spreads datagrams over them); every answer is the primary.
  const before = await Promise.all(Array.from({ length: 20 }, www));
  t.same([...new Set(before)], ['127.0.0.2'], '20 answers over UDP, all the primary');

  await primary.stop();
  // Ten answers in a row on the secondary: both workers have the new snapshot.
  await until('every worker answers the secondary', async () => (await Promise.all(Array.from({ length: 10 }, www))).every((a) => a === '127.0.0.3'));
  t.pass('the failover reached both workers');

  const metric = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${v.metricsPort}/metrics`)).text();
    let sum = 0;
    for (const m of text.matchAll(/^vigil_dns_queries_total\{[^}]*transport="udp"[^}]*\} (\d+)/gm)) sum += Number(m[1]);
    return sum;
  };
  // Reports come every 250 ms; 30 is fewer than the queries sent so far (c-ares may retry, never fewer).
  await until('worker counts in /metrics', async () => (await metric()) >= 30);
  t.ok((await metric()) >= 30, 'the workers\u2019 UDP queries are counted in the primary\u2019s /metrics');
  t.equal((await fetch(`http://127.0.0.1:${v.metricsPort}/readyz`)).status, 200, 'ready with both workers up');

  // Cookies: one worker's server cookie is valid at the other, so rate limiting (2/s, nothing slipped)
  // lets every cookie-proven query through while it drops most of the same burst without one.
  const client = Buffer.from('0102030405060708', 'hex');
  const first = await udpQuery(v.port, '127.0.0.5', 'static.failover.test', client);
  const full = first !== undefined ? cookieOf(first) : undefined;
  t.equal(full?.length, 24, 'a server cookie comes back');
  const proven = await Promise.all(Array.from({ length: 30 }, () => udpQuery(v.port, '127.0.0.5', 'static.failover.test', full)));
  t.equal(proven.filter((p) => p !== undefined).length, 30, 'all 30 queries with the cookie are answered, whichever worker took them');
  const unproven = await Promise.all(Array.from({ length: 30 }, () => udpQuery(v.port, '127.0.0.6', 'static.failover.test')));
  t.ok(unproven.filter((p) => p !== undefined).length < 15, 'without one, the burst is rate limited');

  // A worker killed outright is replaced; the other keeps answering meanwhile.
  const [victim] = workerPids(pid);
  process.kill(victim!, 'SIGKILL');
  const during = await Promise.all(Array.from({ length: 20 }, () => resolver.resolve4('static.failover.test').then((a) => a.join(','))));
  t.same([...new Set(during)], ['192.0.2.1'], 'answers continue while a worker is down');
  await until('a replacement worker', () => {
    const now = workerPids(pid);
    return now.length === 2 && !now.includes(victim!);
  });
  await until('ready again', async () => (await fetch(`http://127.0.0.1:${v.metricsPort}/readyz`)).status === 200);
  t.pass('the killed worker was replaced and /readyz is 200 again');
  t.match(v.log(), /serving worker exited; restarting it/, 'the exit is logged');

  // A reload reaches every worker, the replacement included.
  writeFileSync(join(dir, 'failover.test.zone'), zone(123));
  v.child.kill('SIGHUP');
  const ttls = async (): Promise<number[]> => Promise.all(Array.from({ length: 10 }, async () => (await resolver.resolve4('static.failover.test', { ttl: true }))[0]!.ttl));
  await until('the reloaded zone on every worker', async () => (await ttls()).every((x) => x === 123));
  t.pass('the reloaded zone is served by every worker');
  // keep.test. did not change: the workers were sent a reference to the nodes they already held.
  const kept = await Promise.all(Array.from({ length: 10 }, () => resolver.resolve4('kept.keep.test').then((a) => a.join(','))));
  t.same([...new Set(kept)], ['192.0.2.77'], 'the unchanged zone, passed by reference, still answers on every worker');

  const exited = new Promise<number | null>((r) => v.child.once('exit', (code) => r(code)));
  v.child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: exit 0');
  await until('no worker left', () => workerPids(pid).length === 0, 5000);
  t.pass('no worker process outlives the primary');
});

t.test('a large zone loaded after the start reaches both workers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-cluster-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const big = ['$ORIGIN big.test.', '@ 300 IN SOA ns1 hostmaster 1 7200 3600 1209600 300', '@ 300 NS ns1', 'ns1 300 A 127.0.0.1'];
  for (let i = 0; i < 150_000; i++) big.push(`h${i} 300 A 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  writeFileSync(join(dir, 'big.test.zone'), `${big.join('\n')}\n`);
  writeFileSync(join(dir, 'keep.test.zone'), '$ORIGIN keep.test.\n@ 300 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ 300 NS ns1\nns1 300 A 127.0.0.1\nkept 300 A 192.0.2.77\n');
  const file = join(dir, 'vigil.yaml');
  writeFileSync(
    file,
    `listen: ["127.0.0.1:0"]
metrics: { listen: "127.0.0.1:0" }
zones:
  - origin: keep.test.
    file: keep.test.zone
  - origin: big.test.
    file: big.test.zone
`,
  );
  const v = await start(t, file, ['--defer-zones-over', '1M']);
  const resolver = new Resolver({ timeout: 1000, tries: 2 });
  resolver.setServers([`127.0.0.1:${v.port}`]);
  const kept = await Promise.all(Array.from({ length: 10 }, () => resolver.resolve4('kept.keep.test')));
  t.same([...new Set(kept.flat())], ['192.0.2.77'], 'the small zone answers from both workers at once');
  const ready = async (): Promise<{ status: number; body: string }> => {
    const res = await fetch(`http://127.0.0.1:${v.metricsPort}/readyz`);
    return { status: res.status, body: await res.text() };
  };
  const early = await Promise.all([resolver.resolve4('h149999.big.test').then(() => 'answer', (e: NodeJS.ErrnoException) => e.code), ready()]);
  t.same([early[0], early[1].status], ['ESERVFAIL', 503], 'the large zone answers SERVFAIL and /readyz is 503 while it loads');
  t.match(early[1].body, /zones not loaded yet: big\.test\./);
  // Twenty answers in a row: both workers have the complete config.
  const big20 = async (): Promise<boolean> => {
    const rs = await Promise.all(Array.from({ length: 20 }, () => resolver.resolve4('h149999.big.test').then((a) => a.join(','), () => 'no')));
    return rs.every((a) => a === '10.2.73.239');
  };
  await until('both workers to answer the large zone', big20, 60_000);
  t.pass('both workers answer the large zone');
  await until('/readyz to say ready', async () => (await ready()).status === 200, 10_000);
  t.pass('/readyz is 200 once the primary has loaded it');
  v.child.kill('SIGTERM');
  await new Promise((r) => v.child.once('exit', r));
});

t.test('--defer-zones-over takes a size or off', async (t) => {
  const run = (arg: string): { status: number | null; stderr: string } => {
    try {
      execFileSync(process.execPath, [CLI, 'serve', '--config', '/nonexistent.yaml', '--defer-zones-over', arg], { stdio: ['ignore', 'pipe', 'pipe'] });
      return { status: 0, stderr: '' };
    } catch (e) {
      const err = e as { status: number | null; stderr: Buffer };
      return { status: err.status, stderr: err.stderr.toString() };
    }
  };
  const bad = run('8MB');
  t.equal(bad.status, 2, 'a malformed size is a usage error');
  t.match(bad.stderr, /--defer-zones-over must be a size in bytes \(e\.g\. 8M\) or "off", not "8MB"/);
  for (const ok of ['off', '8M', '1048576']) t.notMatch(run(ok).stderr, /--defer-zones-over/, `"${ok}" is accepted (the config is what fails)`);
});
