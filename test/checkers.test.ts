import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { httpChecker, type HttpCheckSpec } from '../probes/checkers/http.js';
import { tcpChecker } from '../probes/checkers/tcp.js';
import { addressBytes, dnsChecker, encodeName, skipName, summarizeReply } from '../probes/checkers/dns.js';
import { CheckerSpecError, type Checker, type CheckResult } from '../probes/checkers/types.js';

const HOST = '127.0.0.1';
const TIMEOUT = 300;

function run(check: Checker, signal: AbortSignal = new AbortController().signal): Promise<CheckResult> {
  return check(signal);
}

async function listen(server: HttpServer | NetServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: HttpServer | NetServer): Promise<void> {
  if ('closeAllConnections' in server) server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A port that was just bound and released: connecting to it is refused. */
async function deadPort(): Promise<number> {
  const s = createNetServer();
  const port = await listen(s);
  await closeServer(s);
  return port;
}

/** Open connections on the server once the client side has had a moment to close. */
async function settledConnections(server: HttpServer | NetServer): Promise<number> {
  const count = (): Promise<number> => new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
  for (let i = 0; i < 20; i++) {
    if ((await count()) === 0) return 0;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return count();
}

function handler(req: IncomingMessage, res: ServerResponse): void {
  switch (req.url) {
    case '/ok':
      res.end('all good: ready');
      return;
    case '/503':
      res.statusCode = 503;
      res.end('down');
      return;
    case '/redirect':
      res.statusCode = 302;
      res.setHeader('location', '/ok');
      res.end();
      return;
    case '/host':
      res.end(`host=${req.headers.host ?? ''} x=${String(req.headers['x-probe'] ?? '')} method=${req.method ?? ''}`);
      return;
    case '/big':
      // Marker beyond the 64 KiB read cap must not be seen.
      res.end('x'.repeat(70 * 1024) + 'MARKER');
      return;
    case '/slow':
      return; // never answers
    case '/reset':
      req.socket.destroy();
      return;
    default:
      res.statusCode = 404;
      res.end();
  }
}

t.test('http checker against a real server', async (t) => {
  const server = createHttpServer(handler);
  const port = await listen(server);
  t.teardown(() => closeServer(server));
  const spec = (over: Partial<HttpCheckSpec>): HttpCheckSpec => ({ scheme: 'http', address: HOST, port, path: '/ok', timeout_ms: TIMEOUT, ...over });

  let r = await run(httpChecker(spec({})));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'http 200' });
  t.ok(r.latencyMs >= 0 && r.latencyMs < TIMEOUT);

  r = await run(httpChecker(spec({ path: '/503' })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'http 503' });
  r = await run(httpChecker(spec({ path: '/503', expect_status: [200, [500, 503]] })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'http 503' }, 'explicit status list');

  r = await run(httpChecker(spec({ path: '/redirect' })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'http 302' }, '3xx is healthy by default, not followed');
  r = await run(httpChecker(spec({ path: '/redirect', expect_status: [200] })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'http 302' });

  r = await run(httpChecker(spec({ expect_body: 'ready' })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'http 200' }, 'body substring');
  r = await run(httpChecker(spec({ expect_body: /good:\s+re/g })));
  t.equal(r.ok, true, 'body regex');
  r = await run(httpChecker(spec({ expect_body: /good:\s+re/g })));
  t.equal(r.ok, true, 'global regex is not stateful across checks');
  r = await run(httpChecker(spec({ expect_body: 'maintenance' })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'body mismatch' });
  r = await run(httpChecker(spec({ path: '/big', expect_body: 'MARKER' })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'body mismatch' }, 'reads at most 64 KiB');
  t.equal(await settledConnections(server), 0, 'checks close their connections');

  r = await run(
    httpChecker(spec({ path: '/host', method: 'post', host: 'www.example.test', headers: { 'X-Probe': 'yes' }, expect_body: 'host=www.example.test x=yes method=POST' })),
  );
  t.equal(r.ok, true, 'Host header, extra headers and method are sent');

  r = await run(httpChecker(spec({ path: '/slow' })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'timeout' });
  t.ok(r.latencyMs >= TIMEOUT - 5 && r.latencyMs < TIMEOUT + 500, `timeout honoured (${r.latencyMs.toFixed(0)} ms)`);
  t.equal(await settledConnections(server), 0, 'timed-out check left no socket open');

  r = await run(httpChecker(spec({ path: '/reset' })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'reset' });

  const ac = new AbortController();
  const pending = run(httpChecker(spec({ path: '/slow' })), ac.signal);
  setTimeout(() => ac.abort(), 20);
  r = await pending;
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'aborted' });
  t.ok(r.latencyMs < TIMEOUT);

  r = await run(httpChecker(spec({})), AbortSignal.abort());
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'aborted' }, 'already-aborted signal');
});

t.test('http checker: refused', async (t) => {
  const port = await deadPort();
  const r = await run(httpChecker({ scheme: 'http', address: HOST, port, timeout_ms: TIMEOUT }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'refused' });
});

t.test('https checker with a self-signed certificate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', keyPath, '-out', certPath],
    { stdio: 'ignore' },
  );
  const cert = readFileSync(certPath);
  const server = createHttpsServer({ key: readFileSync(keyPath), cert }, handler);
  const port = await listen(server);
  t.teardown(() => closeServer(server));
  const spec = (over: Partial<HttpCheckSpec>): HttpCheckSpec => ({ scheme: 'https', address: HOST, port, path: '/ok', timeout_ms: 2000, ...over });

  let r = await run(httpChecker(spec({ servername: 'localhost' })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'tls: DEPTH_ZERO_SELF_SIGNED_CERT' }, 'verification on by default');

  r = await run(httpChecker(spec({ tls_verify: false })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'http 200' }, 'tls_verify: false');

  r = await run(httpChecker(spec({ host: 'localhost', ca: cert, path: '/host', expect_body: 'host=localhost' })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'http 200' }, 'trusted via ca, SNI taken from host');

  r = await run(httpChecker(spec({ servername: 'other.test', ca: cert })));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'tls: ERR_TLS_CERT_ALTNAME_INVALID' }, 'name mismatch');

  // Speaking TLS to a plain-HTTP port fails in the handshake.
  const plain = createHttpServer(handler);
  const plainPort = await listen(plain);
  t.teardown(() => closeServer(plain));
  r = await run(httpChecker(spec({ port: plainPort, tls_verify: false })));
  t.equal(r.ok, false);
  t.match(r.reason, /^tls: /, `handshake failure classified as tls (${r.reason})`);
});

t.test('http checker spec validation', async (t) => {
  const base: HttpCheckSpec = { scheme: 'http', address: HOST, timeout_ms: 100 };
  t.throws(() => httpChecker({ ...base, address: 'www.example.test' }), CheckerSpecError);
  t.throws(() => httpChecker({ ...base, port: 70000 }), CheckerSpecError);
  t.throws(() => httpChecker({ ...base, timeout_ms: 0 }), CheckerSpecError);
  t.throws(() => httpChecker({ ...base, expect_status: [] }), CheckerSpecError);
  t.throws(() => httpChecker({ ...base, expect_status: [[300, 200]] }), CheckerSpecError);
  t.throws(() => httpChecker({ ...base, path: 'no-slash' }), CheckerSpecError);
  t.throws(() => httpChecker({ ...base, headers: { 'bad header': 'x' } }), CheckerSpecError);
  t.throws(() => httpChecker({ ...base, headers: { ok: 'a\r\nInjected: 1' } }), CheckerSpecError);
  t.throws(() => httpChecker({ ...base, scheme: 'https', servername: '127.0.0.1' }), CheckerSpecError);
  t.throws(() => httpChecker({ ...base, method: 'HEAD', expect_body: 'x' }), CheckerSpecError);
});

t.test('tcp checker', async (t) => {
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.write('220 mail.example.test ESMTP\r\n');
    s.on('data', (d) => {
      if (d.toString().startsWith('PING')) s.write('+PONG\r\n');
    });
  });
  const port = await listen(server);
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await closeServer(server);
  });

  let r = await run(tcpChecker({ address: HOST, port, timeout_ms: TIMEOUT }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'connected' });
  r = await run(tcpChecker({ address: HOST, port, expect: '220', timeout_ms: TIMEOUT }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'banner ok' });
  r = await run(tcpChecker({ address: HOST, port, expect: /^220 .*ESMTP/, timeout_ms: TIMEOUT }));
  t.equal(r.ok, true, 'regex banner');
  r = await run(tcpChecker({ address: HOST, port, send: 'PING\r\n', expect: '+PONG', timeout_ms: TIMEOUT }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'banner ok' }, 'send then expect');
  r = await run(tcpChecker({ address: HOST, port, send: 'QUIT\r\n', timeout_ms: TIMEOUT }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'connected' }, 'send without expect');

  // A peer that closes after a wrong banner fails at once; one that keeps
  // the connection open without the expected text fails on the timeout.
  const liar = createNetServer((s) => s.end('554 go away\r\n'));
  const liarPort = await listen(liar);
  t.teardown(() => closeServer(liar));
  r = await run(tcpChecker({ address: HOST, port: liarPort, expect: '220', timeout_ms: TIMEOUT }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'banner mismatch' });
  t.ok(r.latencyMs < TIMEOUT, 'closed peer fails before the timeout');
  r = await run(tcpChecker({ address: HOST, port, expect: '554', timeout_ms: TIMEOUT }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'timeout' });
  t.equal(await settledConnections(server), 0, 'no socket left open after timeout');

  const dead = await deadPort();
  r = await run(tcpChecker({ address: HOST, port: dead, timeout_ms: TIMEOUT }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'refused' });

  t.throws(() => tcpChecker({ address: 'localhost', port, timeout_ms: 100 }), CheckerSpecError);
});

// ---- DNS ----

const NAME = encodeName('www.example.test');

interface Responder {
  port: number;
  close(): Promise<void>;
}

type Reply = (query: Buffer) => Buffer[];

async function dnsResponder(reply: Reply): Promise<Responder> {
  const sock = createSocket('udp4');
  sock.on('message', (msg: Buffer, from: RemoteInfo) => {
    for (const out of reply(msg)) sock.send(out, from.port, from.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, HOST, resolve));
  return {
    port: sock.address().port,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}

function header(id: number, rcode: number, qd: number, an: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(0x8400 | rcode, 2); // QR + AA
  h.writeUInt16BE(qd, 4);
  h.writeUInt16BE(an, 6);
  return h;
}

function rr(owner: Buffer, type: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(30, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, fixed, rdata]);
}

const ptr = (offset: number): Buffer => Buffer.from([0xc0 | (offset >> 8), offset & 0xff]);

/**
 * NOERROR with a CNAME whose owner is a pointer to the question, then an A
 * record whose owner is a pointer into the CNAME's rdata ("web" + pointer):
 * the checker must skip both kinds of compressed name to reach the address.
 */
function answerWithPointers(query: Buffer, address: string): Buffer {
  const id = query.readUInt16BE(0);
  const question = query.subarray(12);
  const cnameRdata = Buffer.concat([Buffer.from([3]), Buffer.from('web'), ptr(12 + 4)]); // web.example.test
  const cname = rr(ptr(12), 5, cnameRdata);
  const cnameRdataOffset = 12 + question.length + 2 + 10;
  const bytes = addressBytes(address);
  const a = rr(ptr(cnameRdataOffset), bytes.length === 4 ? 1 : 28, bytes);
  return Buffer.concat([header(id, 0, 1, 2), question, cname, a]);
}

t.test('dns checker', async (t) => {
  const ok = await dnsResponder((q) => [answerWithPointers(q, '192.0.2.10')]);
  t.teardown(() => ok.close());
  const base = { address: HOST, port: ok.port, name: 'www.example.test', timeout_ms: TIMEOUT };

  let r = await run(dnsChecker(base));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'dns NOERROR' });
  r = await run(dnsChecker({ ...base, expect_answer: '192.0.2.10' }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'dns NOERROR' }, 'answer found past compressed names');
  r = await run(dnsChecker({ ...base, expect_answer: '192.0.2.11' }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'answer mismatch' });
  r = await run(dnsChecker({ ...base, expect_rcode: 'NXDOMAIN' }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'dns NOERROR' }, 'rcode expectation is exact');

  const v6 = await dnsResponder((q) => [answerWithPointers(q, '2001:db8::a:1')]);
  t.teardown(() => v6.close());
  r = await run(dnsChecker({ ...base, port: v6.port, expect_answer: '2001:db8:0:0:0:0:a:1' }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'dns NOERROR' }, 'AAAA compared as bytes, not text');

  const nx = await dnsResponder((q) => [Buffer.concat([header(q.readUInt16BE(0), 3, 1, 0), q.subarray(12)])]);
  t.teardown(() => nx.close());
  r = await run(dnsChecker({ ...base, port: nx.port }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'dns NXDOMAIN' });
  r = await run(dnsChecker({ ...base, port: nx.port, expect_rcode: 'NXDOMAIN' }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'dns NXDOMAIN' });

  // A stray reply with another ID first (e.g. late answer to an earlier probe)
  // must be ignored, not taken as this query's answer.
  const seenQueries: Buffer[] = [];
  const wrongFirst = await dnsResponder((q) => {
    seenQueries.push(Buffer.from(q));
    const wrong = Buffer.concat([header(q.readUInt16BE(0) ^ 0xffff, 3, 1, 0), q.subarray(12)]);
    return [wrong, answerWithPointers(q, '192.0.2.10')];
  });
  t.teardown(() => wrongFirst.close());
  r = await run(dnsChecker({ ...base, port: wrongFirst.port, expect_answer: '192.0.2.10' }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: true, reason: 'dns NOERROR' }, 'wrong ID ignored, right ID accepted');

  const q = seenQueries[0];
  t.ok(q, 'query captured');
  if (q) {
    t.equal(q.readUInt16BE(2), 0, 'RD clear by default');
    t.equal(q.readUInt16BE(4), 1, 'one question');
    t.same(q.subarray(12, 12 + NAME.length), NAME, 'qname on the wire');
    t.equal(q.readUInt16BE(12 + NAME.length), 1, 'qtype A');
    t.equal(q.readUInt16BE(14 + NAME.length), 1, 'class IN');
  }

  const onlyWrong = await dnsResponder((q) => [Buffer.concat([header(q.readUInt16BE(0) ^ 1, 0, 1, 0), q.subarray(12)])]);
  t.teardown(() => onlyWrong.close());
  r = await run(dnsChecker({ ...base, port: onlyWrong.port }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'timeout' }, 'only wrong IDs: times out');

  const silent = await dnsResponder(() => []);
  t.teardown(() => silent.close());
  r = await run(dnsChecker({ ...base, port: silent.port }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'timeout' });
  t.ok(r.latencyMs >= TIMEOUT - 5 && r.latencyMs < TIMEOUT + 500);

  const garbage = await dnsResponder((q) => [Buffer.concat([header(q.readUInt16BE(0), 0, 1, 1), q.subarray(12), Buffer.from([0xc0])])]);
  t.teardown(() => garbage.close());
  r = await run(dnsChecker({ ...base, port: garbage.port, expect_answer: '192.0.2.10' }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'malformed reply' });

  // Nobody bound: ICMP port unreachable comes back as ECONNREFUSED on the connected socket.
  const closed = await dnsResponder(() => []);
  await closed.close();
  r = await run(dnsChecker({ ...base, port: closed.port }));
  t.same({ ok: r.ok, reason: r.reason }, { ok: false, reason: 'refused' });
  t.ok(r.latencyMs < TIMEOUT, 'refused without waiting for the timeout');
});

t.test('dns wire helpers', async (t) => {
  t.same(encodeName('a.bc.'), Buffer.from([1, 0x61, 2, 0x62, 0x63, 0]));
  t.same(encodeName('.'), Buffer.from([0]));
  t.throws(() => encodeName('a..b'), CheckerSpecError);
  t.throws(() => encodeName('x'.repeat(64)), CheckerSpecError);
  t.throws(() => encodeName('a b.test'), CheckerSpecError);
  t.same(addressBytes('::1'), Buffer.from([...new Array<number>(15).fill(0), 1]));
  t.same(addressBytes('::ffff:192.0.2.1'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]));
  t.same(addressBytes('2001:db8::'), Buffer.from([0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(12).fill(0)]));
  t.same(addressBytes('192.0.2.1'), Buffer.from([192, 0, 2, 1]));
  const msg = Buffer.from([3, 0x77, 0x77, 0x77, 0xc0, 0x0c, 0xff]);
  t.equal(skipName(msg, 0), 6, 'labels then pointer');
  t.throws(() => skipName(Buffer.from([5, 0x61]), 0));
  t.throws(() => summarizeReply(Buffer.alloc(5)));
  t.throws(() => dnsChecker({ address: HOST, name: 'x.test', qtype: 'A', expect_answer: '::1', timeout_ms: 100 }), CheckerSpecError);
  t.throws(() => dnsChecker({ address: HOST, name: 'x.test', expect_answer: 'nope', timeout_ms: 100 }), CheckerSpecError);
});
