// /metrics as a scraper sees it: a real server answers real clients (c-ares
// and raw UDP/TCP from test/helpers/dnsclient.ts), the ops listener is scraped
// over HTTP, and the text exposition format is parsed here (not by
// prom-client) before exact deltas are asserted per label set.

import t from 'tap';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { Resolver } from 'node:dns/promises';
import { pino } from 'pino';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../zones/load.js';
import { startServer } from '../server/server.js';
import { startOps, type Readiness } from '../server/http/ops.js';
import { VigilMetrics, type MetricsState } from '../server/metrics/registry.js';
import { composeObservers, type QueryObserver } from '../server/metrics/query-stats.js';
import type { QueryInfo, Transport } from '../server/answer/respond.js';
import type { CompiledConfig } from '../zones/zone.js';
import { encodeQuery, queryPipelined, sendTcp, sendUdp, normalise } from './helpers/dnsclient.js';
import { SMALL_ZONE } from './helpers/vigil.js';
import { parseName } from '../server/wire/name.js';

// ---------------------------------------------------------------------------
// A small parser of the Prometheus text format (version 0.0.4).

interface Exposition {
  readonly types: Map<string, string>;
  readonly help: Map<string, string>;
  /** By series key: name{label="value",...} with labels sorted. */
  readonly samples: Map<string, number>;
}

function unescapeLabel(v: string): string {
  return v.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function seriesKey(name: string, labels: Readonly<Record<string, string>>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return parts.length === 0 ? name : `${name}{${parts.join(',')}}`;
}

function parseValue(v: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  if (v === 'NaN' || v === 'Nan') return NaN;
  const n = Number(v);
  if (v.trim() === '' || Number.isNaN(n)) throw new Error(`not a sample value: ${v}`);
  return n;
}

function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta !== null) {
      (meta[1] === 'HELP' ? help : types).set(meta[2]!, meta[3]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (m === null) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/gy;
    let consumed = 0;
    for (let lm = re.exec(body); lm !== null && lm[0] !== ''; lm = re.exec(body)) {
      labels[lm[1]!] = unescapeLabel(lm[2]!);
      consumed = re.lastIndex;
    }
    if (consumed !== body.length) throw new Error(`unparsable labels in: ${line}`);
    const key = seriesKey(m[1]!, labels);
    if (samples.has(key)) throw new Error(`duplicate series ${key}`);
    samples.set(key, parseValue(m[3]!));
  }
  return { types, help, samples };
}

function value(e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  return e.samples.get(seriesKey(name, labels));
}

function series(e: Exposition, name: string): [string, number][] {
  return [...e.samples].filter(([k]) => k === name || k.startsWith(`${name}{`));
}

/** after - before for one series; a series absent before counts from 0. */
function delta(before: Exposition, after: Exposition, name: string, labels: Record<string, string> = {}): number {
  return (value(after, name, labels) ?? 0) - (value(before, name, labels) ?? 0);
}

// ---------------------------------------------------------------------------
// Clients.

function httpGet(port: number, path: string, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, timeout: 5000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** A UDP query from a chosen loopback source address (views match on it). */
function udpFrom(source: string, port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const timer = setTimeout(() => done(new Error(`no answer to ${source} within 5 s`)), 5000);
    function done(err: Error | null, msg?: Buffer): void {
      clearTimeout(timer);
      sock.close();
      if (err !== null) reject(err);
      else resolve(msg!);
    }
    sock.on('error', (err) => done(err));
    sock.on('message', (msg) => done(null, msg));
    sock.bind({ address: source, port: 0 }, () => sock.send(bytes, port, '127.0.0.1'));
  });
}

/** Sends datagrams that deserve no answer. */
function udpSendOnly(port: number, packets: readonly Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    let left = packets.length;
    for (const p of packets) {
      sock.send(p, port, '127.0.0.1', (err) => {
        if (err) {
          sock.close();
          reject(err);
        } else if (--left === 0) {
          sock.close();
          resolve();
        }
      });
    }
  });
}

function openTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.on('error', reject);
  });
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function rcodeOf(raw: Buffer): number {
  return normalise(raw).rcode;
}

// ---------------------------------------------------------------------------
// Fixtures.

const dir = mkdtempSync(join(tmpdir(), 'vigil-metrics-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'example.test.zone'), SMALL_ZONE);
const configYaml = (views: string): string => `listen: ["127.0.0.1:0"]
tcp:
  max_connections_per_client: 2
  idle_timeout: 30s
views:
${views}
zones:
  - origin: example.test.
    file: example.test.zone
`;
// No default view: 127.0.0.3 matches nothing and is REFUSED with view "none".
writeFileSync(join(dir, 'one.yaml'), configYaml('  - { name: lab, match: ["127.0.0.2"] }\n  - { name: main, match: ["127.0.0.1"] }'));
writeFileSync(join(dir, 'two.yaml'), configYaml('  - { name: main, match: ["127.0.0.1"] }\n  - { name: lab, match: ["127.0.0.2"] }'));

async function load(file: string): Promise<CompiledConfig> {
  const { config } = await loadConfig(join(dir, file));
  return config;
}

interface Seen {
  readonly info: QueryInfo;
  readonly transport: Transport;
  readonly client: string;
}

t.test('DNS queries counted per view, type, rcode and transport, scraped over HTTP', async (t) => {
  const metrics = new VigilMetrics({ node: 'test-1', pop: 'lab', version: '9.9.9-test' });
  const seen: Seen[] = [];
  let swaps = 0;
  const recorder: QueryObserver = {
    query: (info, transport, client) => seen.push({ info: { ...info }, transport, client }),
    snapshotChanged: () => swaps++,
  };
  const server = await startServer(await load('one.yaml'), { observer: composeObservers(metrics.queryObserver(), recorder) });
  t.teardown(() => server.close());
  let readiness: Readiness = { ready: false, reasons: ['probe worker not running', 'zones not loaded'] };
  const ops = await startOps({ host: '127.0.0.1', port: 0 }, { metrics, ready: () => readiness }, pino({ level: 'silent' }));
  t.teardown(() => ops.close());
  const port = server.addresses.udp[0]!.port;
  const scrape = async (): Promise<Exposition> => {
    const r = await httpGet(ops.address.port, '/metrics');
    if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
    return parseExposition(r.body);
  };
  t.equal(swaps, 1, 'the observer learns the first snapshot at start');

  const before = await scrape();

  // c-ares, from 127.0.0.1 (view "main"); tries: 1 so each call is exactly one query.
  const r = new Resolver({ timeout: 3000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  t.same(await r.resolve4('www.example.test'), ['192.0.2.10']);
  t.same(await r.resolve6('www.example.test'), ['2001:db8::10']);
  t.same(await r.resolveMx('mail.example.test'), [{ exchange: 'mx1.example.test', priority: 10 }]);
  await t.rejects(r.resolve4('nope.example.test'), { code: 'ENOTFOUND' });

  // Raw UDP from 127.0.0.1.
  const udp = (q: Parameters<typeof encodeQuery>[0]): Promise<Buffer> => sendUdp('127.0.0.1', port, encodeQuery(q), 5000);
  t.equal(rcodeOf(await udp({ qname: 'www.example.test', qtype: 'A' })), 0);
  t.equal(rcodeOf(await udp({ qname: 'WWW.example.test', qtype: 'A' })), 0, 'memoised answer (fast path)');
  t.equal(rcodeOf(await udp({ qname: 'elsewhere.invalid', qtype: 'A' })), 5, 'REFUSED outside our zones');
  const tc = await udp({ qname: 'big.example.test', qtype: 'TXT' });
  t.ok((tc.readUInt16BE(2) & 0x0200) !== 0, 'the big TXT is truncated over UDP without EDNS');
  t.equal(rcodeOf(await udp({ qname: 'www.example.test', qtype: 'TYPE65280' })), 0, 'NODATA for an unusual type');
  t.equal(rcodeOf(await udp({ qname: 'www.example.test', qtype: 'A', edns: { version: 1 } })), 16, 'BADVERS');
  const noQuestion = Buffer.from([0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  t.equal((await sendUdp('127.0.0.1', port, noQuestion, 5000))[3]! & 0x0f, 1, 'FORMERR for QDCOUNT 0');
  t.equal(rcodeOf(await udp({ qname: 'www.example.test', qtype: 'A', opcode: 2 })), 4, 'NOTIMP for opcode STATUS');

  // Other sources: 127.0.0.2 is view "lab", 127.0.0.3 is in no view.
  t.equal(rcodeOf(await udpFrom('127.0.0.2', port, encodeQuery({ qname: 'www.example.test', qtype: 'A' }))), 0);
  t.equal(rcodeOf(await udpFrom('127.0.0.3', port, encodeQuery({ qname: 'www.example.test', qtype: 'A' }))), 5, 'REFUSED: no view');

  // TCP: two pipelined queries on one connection, then the big TXT in full on another.
  const piped = await queryPipelined(port, [
    { qname: 'www.example.test', qtype: 'A' },
    { qname: 'nope.example.test', qtype: 'A' },
  ], { timeoutMs: 5000 });
  t.same(piped.responses.map(rcodeOf), [0, 3]);
  const full = await sendTcp('127.0.0.1', port, encodeQuery({ qname: 'big.example.test', qtype: 'TXT' }), 5000);
  t.equal(full.readUInt16BE(2) & 0x0200, 0, 'not truncated over TCP');
  t.equal(normalise(full).answer.length, 40);

  // Packets that get no answer: a response (QR=1) and a runt.
  await udpSendOnly(port, [Buffer.from([0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([1, 2, 3, 4, 5])]);
  await until('two drops counted', async () => delta(before, await scrape(), 'vigil_dns_dropped_total', { transport: 'udp' }) === 2);
  // The client's TCP connections are closed by now on its side; wait for the server to see it.
  await until('TCP connections closed', async () => value(await scrape(), 'vigil_tcp_connections') === 0);

  const after = await scrape();
  const expected: [Record<string, string>, number][] = [
    [{ view: 'main', qtype: 'A', rcode: 'NOERROR', transport: 'udp' }, 3],
    [{ view: 'main', qtype: 'AAAA', rcode: 'NOERROR', transport: 'udp' }, 1],
    [{ view: 'main', qtype: 'MX', rcode: 'NOERROR', transport: 'udp' }, 1],
    [{ view: 'main', qtype: 'A', rcode: 'NXDOMAIN', transport: 'udp' }, 1],
    [{ view: 'main', qtype: 'A', rcode: 'REFUSED', transport: 'udp' }, 1],
    [{ view: 'main', qtype: 'TXT', rcode: 'NOERROR', transport: 'udp' }, 1],
    [{ view: 'main', qtype: 'other', rcode: 'NOERROR', transport: 'udp' }, 1],
    [{ view: 'none', qtype: 'A', rcode: 'BADVERS', transport: 'udp' }, 1],
    [{ view: 'none', qtype: 'other', rcode: 'FORMERR', transport: 'udp' }, 1],
    [{ view: 'none', qtype: 'other', rcode: 'NOTIMP', transport: 'udp' }, 1],
    [{ view: 'lab', qtype: 'A', rcode: 'NOERROR', transport: 'udp' }, 1],
    [{ view: 'none', qtype: 'A', rcode: 'REFUSED', transport: 'udp' }, 1],
    [{ view: 'main', qtype: 'A', rcode: 'NOERROR', transport: 'tcp' }, 1],
    [{ view: 'main', qtype: 'A', rcode: 'NXDOMAIN', transport: 'tcp' }, 1],
    [{ view: 'main', qtype: 'TXT', rcode: 'NOERROR', transport: 'tcp' }, 1],
  ];
  for (const [labels, n] of expected) t.equal(delta(before, after, 'vigil_dns_queries_total', labels), n, JSON.stringify(labels));
  // Nothing else moved: the deltas above are all of them.
  const moved = series(after, 'vigil_dns_queries_total').filter(([k, v]) => v !== (before.samples.get(k) ?? 0));
  t.equal(moved.length, expected.length, 'no other query series changed');
  t.equal(after.types.get('vigil_dns_queries_total'), 'counter');

  t.equal(delta(before, after, 'vigil_dns_truncated_total', { transport: 'udp' }), 1);
  t.equal(delta(before, after, 'vigil_dns_truncated_total', { transport: 'tcp' }), 0);
  t.equal(delta(before, after, 'vigil_dns_malformed_total', { transport: 'udp' }), 2, 'FORMERR and NOTIMP');
  t.equal(delta(before, after, 'vigil_dns_malformed_total', { transport: 'tcp' }), 0);
  t.equal(delta(before, after, 'vigil_dns_dropped_total', { transport: 'tcp' }), 0);

  // The histogram counts exactly the responses sent, per transport.
  t.equal(after.types.get('vigil_dns_response_duration_seconds'), 'histogram');
  for (const [transport, n] of [['udp', 14], ['tcp', 3]] as const) {
    const h = 'vigil_dns_response_duration_seconds';
    t.equal(delta(before, after, `${h}_count`, { transport }), n, `${transport} responses timed`);
    t.equal(value(after, `${h}_bucket`, { transport, le: '+Inf' }), value(after, `${h}_count`, { transport }));
    const buckets = series(after, `${h}_bucket`)
      .filter(([k]) => k.includes(`transport="${transport}"`))
      .map(([k, v]) => ({ le: parseValue(/le="([^"]+)"/.exec(k)![1]!), v }))
      .sort((a, b) => a.le - b.le);
    t.equal(buckets.length, 14, '13 bounds from 10 µs to 100 ms, and +Inf');
    t.equal(buckets[0]!.le, 0.00001);
    t.equal(buckets[12]!.le, 0.1);
    t.ok(buckets.every((b, i) => i === 0 || b.v >= buckets[i - 1]!.v), 'cumulative buckets never decrease');
    const sum = value(after, `${h}_sum`, { transport })!;
    t.ok(sum > 0 && sum < n * 5, `${transport} duration sum is positive and bounded`);
  }

  t.equal(delta(before, after, 'vigil_tcp_connections_total'), 2);
  t.equal(value(after, 'vigil_tcp_connections'), 0);

  // What the observer saw, through composeObservers: the QueryInfo respond() filled.
  const www = seen.find((s) => s.client === '127.0.0.2')!;
  t.match(www, { transport: 'udp', info: { outcome: 'answer', view: 0, qname: parseName('www.example.test.'), qtype: 1, rcode: 0, truncated: false } });
  t.match(seen.find((s) => s.info.qtype === 16 && s.transport === 'udp'), { info: { outcome: 'answer', view: 1, truncated: true } });
  t.match(seen.find((s) => s.info.rcode === 1), { info: { outcome: 'error', view: -1, qname: '', qtype: 0 } });
  t.equal(seen.filter((s) => s.info.outcome === 'drop').length, 2);
  t.equal(seen.length, 19, '14 UDP answers, 3 TCP answers, 2 drops');

  await t.test('a reload that reorders views keeps counts with their view names', async (t) => {
    const b = await scrape();
    server.swap(await load('two.yaml'));
    t.equal(swaps, 2, 'the observer learns about the swap');
    await udpFrom('127.0.0.2', port, encodeQuery({ qname: 'www.example.test', qtype: 'A' }));
    await udpFrom('127.0.0.2', port, encodeQuery({ qname: 'www.example.test', qtype: 'AAAA' }));
    await udp({ qname: 'www.example.test', qtype: 'A' });
    const a = await scrape();
    t.equal(delta(b, a, 'vigil_dns_queries_total', { view: 'lab', qtype: 'A', rcode: 'NOERROR', transport: 'udp' }), 1);
    t.equal(delta(b, a, 'vigil_dns_queries_total', { view: 'lab', qtype: 'AAAA', rcode: 'NOERROR', transport: 'udp' }), 1);
    t.equal(delta(b, a, 'vigil_dns_queries_total', { view: 'main', qtype: 'A', rcode: 'NOERROR', transport: 'udp' }), 1);
    t.equal(seen.at(-2)!.info.view, 1, 'lab is now the second view');
  });

  await t.test('TCP connection gauge, total and per-client rejection', async (t) => {
    const b = await scrape();
    const held = [await openTcp(port), await openTcp(port)];
    t.teardown(() => held.forEach((s) => s.destroy()));
    await until('two open connections', async () => value(await scrape(), 'vigil_tcp_connections') === 2);
    // The third from the same address is over max_connections_per_client (2): the server closes it at once.
    const third = await openTcp(port);
    await new Promise<void>((resolve) => third.once('close', () => resolve()).resume());
    const a = await scrape();
    t.equal(delta(b, a, 'vigil_tcp_rejected_total', { reason: 'max_connections_per_client' }), 1);
    t.equal(delta(b, a, 'vigil_tcp_rejected_total', { reason: 'max_connections' }), 0);
    t.equal(delta(b, a, 'vigil_tcp_connections_total'), 2, 'a rejected connection is not counted as accepted');
    t.equal(value(a, 'vigil_tcp_connections'), 2);
    held.forEach((s) => s.destroy());
    await until('connections closed', async () => value(await scrape(), 'vigil_tcp_connections') === 0);
  });

  await t.test('ops endpoints', async (t) => {
    const m = await httpGet(ops.address.port, '/metrics');
    t.equal(m.headers['content-type'], metrics.contentType);
    t.match(m.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const e = parseExposition(m.body);
    t.equal(value(e, 'vigil_build_info', { version: '9.9.9-test', node: 'test-1', pop: 'lab' }), 1);
    t.ok(value(e, 'vigil_process_cpu_user_seconds_total')! >= 0, 'process metrics carry the vigil_ prefix');
    t.ok(e.types.has('vigil_nodejs_eventloop_lag_seconds'));
    t.notOk([...e.types.keys()].some((n) => !n.startsWith('vigil_')), 'every metric is vigil_-prefixed');

    const h = await httpGet(ops.address.port, '/healthz');
    t.equal(h.status, 200);
    t.equal(h.body, 'ok\n');

    const notReady = await httpGet(ops.address.port, '/readyz');
    t.equal(notReady.status, 503);
    t.match(notReady.body, /probe worker not running\nzones not loaded\n/);
    readiness = { ready: true, reasons: [] };
    t.equal((await httpGet(ops.address.port, '/readyz')).status, 200);
    readiness = false;
    t.equal((await httpGet(ops.address.port, '/readyz')).status, 503, 'a plain boolean works too');
    readiness = true;
    t.equal((await httpGet(ops.address.port, '/readyz')).status, 200);

    t.equal((await httpGet(ops.address.port, '/nope')).status, 404);
    t.equal((await httpGet(ops.address.port, '/metrics/extra')).status, 404);
    t.equal((await httpGet(ops.address.port, '/metrics', 'POST')).status, 405);
    const head = await httpGet(ops.address.port, '/healthz', 'HEAD');
    t.equal(head.status, 200);
    t.equal(head.body, '');
  });
});

// ---------------------------------------------------------------------------
// The control plane: the typed methods the engine calls.

function state(over: Partial<{ redis: 'connected' | 'disconnected' | 'none'; members: MetricsState['services'][number]['members']; drop: boolean }> = {}): MetricsState {
  const members = over.members ?? [
    { member: 'www.failover.test./primary', family: 'v4', status: 'up', local: { status: 'up' } },
    { member: 'www.failover.test./primary', family: 'v6', status: 'down', local: { status: 'down' } },
    { member: 'www.failover.test./secondary', family: 'v4', status: 'unknown', local: { status: 'down' }, override: { action: 'drain' } },
  ];
  return {
    replication: {
      redis: over.redis ?? 'connected',
      nodes: [
        { fresh: true, self: true, lastSeenMs: 0, diverged: false },
        { fresh: true, self: false, lastSeenMs: 1500, diverged: true },
        { fresh: true, self: false, lastSeenMs: 700, diverged: false },
        { fresh: false, self: false, lastSeenMs: 60_000, diverged: false },
      ],
    },
    services: [
      { name: 'www.failover.test.', views: [], epoch: 7, degraded: true, failedOpen: false, diverged: true, members },
      ...(over.drop === true ? [] : [{ name: 'api.test.', views: ['inside'], epoch: 2, degraded: false, failedOpen: true, diverged: false, members: [] }]),
    ],
  };
}

t.test('control-plane metrics: state, probes, config, drain, cleanup', async (t) => {
  const metrics = new VigilMetrics({ node: 'ams-1', pop: 'ams', processMetrics: false });
  const scrape = async (): Promise<Exposition> => parseExposition(await metrics.render());

  const single = await scrape();
  t.equal(series(single, 'vigil_redis_connected').length, 0, 'no replication metrics on a single node');
  t.equal(value(single, 'vigil_config_reloads_total', { result: 'failure' }), 0, 'reload counters start at 0');
  t.equal(value(single, 'vigil_rrl_responses_total', { action: 'slipped' }), 0);
  t.equal(value(single, 'vigil_tcp_rejected_total', { reason: 'max_connections' }), 0);
  t.notOk(single.types.has('vigil_process_cpu_user_seconds_total'), 'process metrics can be turned off');
  t.match(series(single, 'vigil_build_info')[0]![0], /version="\d+\.\d+\.\d+/, 'version read from package.json');

  metrics.updateState(state({ redis: 'none' }));
  t.equal(series(await scrape(), 'vigil_redis_connected').length, 0, 'still none without Redis configured');

  metrics.updateState(state(), { services: [{ service: 'www.failover.test.', changes: [{ ratio: 0.75 }, { ratio: 1 }] }] });
  let e = await scrape();
  const p = { service: 'www.failover.test.', member: 'www.failover.test./primary' };
  const s = { service: 'www.failover.test.', member: 'www.failover.test./secondary' };
  t.equal(value(e, 'vigil_member_up', { ...p, family: 'v4' }), 1);
  t.equal(value(e, 'vigil_member_up', { ...p, family: 'v6' }), 0);
  t.equal(value(e, 'vigil_member_up', { ...s, family: 'v4' }), 1, 'unknown is served as up');
  t.equal(value(e, 'vigil_member_local_up', { ...s, family: 'v4' }), 0);
  t.equal(value(e, 'vigil_member_override', { ...s, action: 'drain' }), 1);
  t.equal(series(e, 'vigil_member_override').length, 1);
  t.equal(value(e, 'vigil_health_epoch', { service: 'www.failover.test.' }), 7);
  t.equal(value(e, 'vigil_service_degraded', { service: 'www.failover.test.' }), 1);
  t.equal(value(e, 'vigil_service_diverged', { service: 'www.failover.test.' }), 1);
  t.equal(value(e, 'vigil_service_failed_open', { service: 'api.test.@inside' }), 1, 'a view-limited service is labelled name@views');
  t.equal(value(e, 'vigil_redis_connected'), 1);
  t.equal(value(e, 'vigil_replication_nodes', { state: 'fresh' }), 3);
  t.equal(value(e, 'vigil_replication_nodes', { state: 'stale' }), 1);
  t.equal(value(e, 'vigil_replication_lag_seconds'), 1.5, 'oldest fresh remote report');
  t.equal(value(e, 'vigil_nodes_diverged'), 1);
  t.equal(value(e, 'vigil_failover_drain_ratio', { service: 'www.failover.test.' }), 0.75, 'the newest change');

  // The override changes action, then the secondary leaves the config and api.test. goes.
  metrics.updateState(
    state({
      redis: 'disconnected',
      members: [
        { member: 'www.failover.test./primary', family: 'v4', status: 'down', local: { status: 'down' }, override: { action: 'force_down' } },
        { member: 'www.failover.test./primary', family: 'v6', status: 'down', local: { status: 'down' }, override: { action: 'force_down' } },
      ],
      drop: true,
    }),
  );
  e = await scrape();
  t.equal(value(e, 'vigil_redis_connected'), 0);
  t.same(series(e, 'vigil_member_override'), [[seriesKey('vigil_member_override', { ...p, action: 'force_down' }), 1]], 'one override series, the new action');
  t.equal(series(e, 'vigil_member_up').length, 2, 'the removed member\'s gauges are gone');
  t.equal(value(e, 'vigil_member_up', { ...p, family: 'v4' }), 0);
  t.equal(series(e, 'vigil_service_failed_open').filter(([k]) => k.includes('api.test.')).length, 0, 'gauges of a service no longer in the state are gone');

  // Probes, answer changes, failed-open answers, drain time.
  const check = (ok: boolean, latencyMs: number) => ({ memberId: 'www.failover.test./primary', family: 'v4', type: 'http', check: { ok, latencyMs } });
  metrics.probeCheck(check(true, 3));
  metrics.probeCheck(check(true, 4));
  metrics.probeCheck(check(false, 2000));
  metrics.probeVerdict('www.failover.test./primary', 'v4', 'fra-1', 'down');
  metrics.answerChanged('www.failover.test.', 8);
  metrics.failedOpenAnswer('www.failover.test.');
  metrics.failedOpenAnswer('www.failover.test.', 4);
  metrics.drainTime90('www.failover.test.', 42);
  metrics.rrlResponse('slipped');
  e = await scrape();
  t.equal(value(e, 'vigil_probe_checks_total', { member: p.member, family: 'v4', node: 'ams-1', result: 'up' }), 2);
  t.equal(value(e, 'vigil_probe_checks_total', { member: p.member, family: 'v4', node: 'ams-1', result: 'down' }), 1);
  t.equal(value(e, 'vigil_probe_checks_total', { member: p.member, family: 'v4', node: 'fra-1', result: 'down' }), 1);
  t.equal(value(e, 'vigil_probe_duration_seconds_count', { type: 'http' }), 3);
  t.equal(value(e, 'vigil_probe_duration_seconds_bucket', { type: 'http', le: '0.005' }), 2);
  t.equal(value(e, 'vigil_probe_duration_seconds_sum', { type: 'http' }), 2.007);
  t.equal(value(e, 'vigil_answer_changes_total', { service: 'www.failover.test.' }), 1);
  t.equal(value(e, 'vigil_health_epoch', { service: 'www.failover.test.' }), 8);
  t.equal(value(e, 'vigil_failed_open_answers_total', { service: 'www.failover.test.' }), 5);
  metrics.failedOpenAnswer('www.failover.test.');
  metrics.answerChanged('www.failover.test.', 9);
  metrics.answerChanged('www.failover.test.', 10);
  const e2 = await scrape();
  t.equal(value(e2, 'vigil_failed_open_answers_total', { service: 'www.failover.test.' }), 6, 'pending answers add up across scrapes');
  t.equal(value(e2, 'vigil_answer_changes_total', { service: 'www.failover.test.' }), 3, 'answer changes between scrapes are all counted');
  t.equal(value(e2, 'vigil_health_epoch', { service: 'www.failover.test.' }), 10, 'the epoch is the last change\'s');
  t.equal(value(e, 'vigil_failover_drain_time_seconds_count', { service: 'www.failover.test.' }), 1);
  t.equal(value(e, 'vigil_failover_drain_time_seconds_bucket', { service: 'www.failover.test.', le: '60' }), 1);
  t.equal(value(e, 'vigil_failover_drain_time_seconds_bucket', { service: 'www.failover.test.', le: '30' }), 0);
  t.equal(value(e, 'vigil_rrl_responses_total', { action: 'slipped' }), 1);

  // Config: one info series however many loads.
  metrics.configLoaded('aaaa1111', 1_700_000_000_000);
  metrics.configReloaded(false);
  metrics.configReloaded(true, 'bbbb2222', 1_700_000_100_000);
  e = await scrape();
  t.same(series(e, 'vigil_config_info'), [[seriesKey('vigil_config_info', { hash: 'bbbb2222' }), 1]], 'exactly one config_info series, the new hash');
  t.equal(value(e, 'vigil_config_reloads_total', { result: 'success' }), 1);
  t.equal(value(e, 'vigil_config_reloads_total', { result: 'failure' }), 1);
  t.equal(value(e, 'vigil_config_last_reload_success_timestamp_seconds'), 1_700_000_100);
  metrics.configReloaded(true, 'cccc3333');
  t.equal(series(await scrape(), 'vigil_config_info').length, 1, 'still one after a third config');

  // removeService: nothing of the service is left, changes counted since the last scrape included.
  metrics.answerChanged('www.failover.test.', 11);
  metrics.removeService('www.failover.test.');
  e = await scrape();
  const left = [...e.samples.keys()].filter((k) => k.includes('www.failover.test.'));
  t.same(left, [], 'every series of the removed service is gone');
  t.ok(series(e, 'vigil_probe_duration_seconds_count').length > 0, 'series of other dimensions stay');

  // A view-limited service: its label carries "@views", its member ids do not.
  metrics.probeVerdict('api.test./a', 'v4', 'ams-1', 'up');
  metrics.answerChanged('api.test.@inside', 3);
  t.equal(value(await scrape(), 'vigil_probe_checks_total', { member: 'api.test./a', family: 'v4', node: 'ams-1', result: 'up' }), 1);
  metrics.removeService('api.test.@inside');
  t.same([...(await scrape()).samples.keys()].filter((k) => k.includes('api.test.')), [], 'probe checks of its members go too');
});
