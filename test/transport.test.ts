// Transport behaviour an operator relies on: IPv6 listeners, the TCP limits
// (per-client connections, idle timeout, queries per connection) and a
// snapshot swap that no query in flight can notice.

import t from 'tap';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../zones/load.js';
import { startServer } from '../server/server.js';
import type { CompiledConfig } from '../zones/zone.js';
import { SMALL_ZONE } from './helpers/vigil.js';
import { encodeQuery, sendUdp, sendTcp } from './helpers/dnsclient.js';

async function configWith(zone: string, yamlExtra: string): Promise<CompiledConfig> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-transport-'));
  writeFileSync(join(dir, 'example.test.zone'), zone);
  writeFileSync(join(dir, 'vigil.yaml'), `listen: ["127.0.0.1:0"]\nzones:\n  - origin: example.test.\n    file: example.test.zone\n${yamlExtra}`);
  try {
    return (await loadConfig(join(dir, 'vigil.yaml'))).config;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function frame(q: Buffer): Buffer {
  return Buffer.concat([Buffer.from([q.length >> 8, q.length & 255]), q]);
}

/** Resolves when the server closes the connection, with the number of complete responses seen. */
function untilClosed(sock: net.Socket): Promise<number> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let n = 0;
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        n++;
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(n));
  });
}

const www = (): Buffer => encodeQuery({ qname: 'www.example.test', qtype: 'A' });

t.test('IPv6 listener on ::1, UDP and TCP', async (t) => {
  const base = await configWith(SMALL_ZONE, '');
  const server = await startServer({ ...base, server: { ...base.server, listen: [{ host: '::1', port: 0 }] } });
  t.teardown(() => server.close());
  const port = server.addresses.udp[0]!.port;
  t.equal(server.addresses.tcp[0]!.port, port, 'UDP and TCP share the port');
  const udp = dnsPacket.decode(await sendUdp6(port, www()));
  t.same(udp.answers?.map((a) => ('data' in a ? a.data : undefined)), ['192.0.2.10']);
  const tcp = dnsPacket.decode(await sendTcp('::1', port, www(), 2000));
  t.same(tcp.answers?.map((a) => ('data' in a ? a.data : undefined)), ['192.0.2.10']);
});

async function sendUdp6(port: number, q: Buffer): Promise<Buffer> {
  const dgram = await import('node:dgram');
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp6');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error('timeout'));
    }, 2000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(q, port, '::1');
  });
}

t.test('TCP limits', async (t) => {
  const config = await configWith(
    SMALL_ZONE,
    'tcp:\n  idle_timeout: 300ms\n  max_connections_per_client: 2\n  max_queries_per_connection: 3\n',
  );
  const server = await startServer({ ...config, server: { ...config.server, listen: [{ host: '127.0.0.1', port: 0 }] } });
  t.teardown(() => server.close());
  const port = server.addresses.tcp[0]!.port;

  await t.test('a third connection from the same address is closed at once', async (t) => {
    const a = net.connect({ host: '127.0.0.1', port });
    const b = net.connect({ host: '127.0.0.1', port });
    await Promise.all([a, b].map((s) => new Promise((r) => s.once('connect', r))));
    const c = net.connect({ host: '127.0.0.1', port });
    const closedC = untilClosed(c);
    c.write(frame(www()));
    t.equal(await closedC, 0, 'no answer on the connection over the cap');
    // The two within the cap still work.
    const gotA = untilClosed(a);
    a.write(frame(www()));
    t.equal(await gotA, 1, 'first connection answered, then closed by the idle timeout');
    b.destroy();
  });

  await t.test('an idle connection is closed after the idle timeout', async (t) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const started = Date.now();
    const n = await untilClosed(s);
    t.equal(n, 0);
    t.ok(Date.now() - started < 5000, 'closed by the server, not by the test');
  });

  await t.test('the connection closes after max_queries_per_connection answers', async (t) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = untilClosed(s);
    s.write(Buffer.concat(Array.from({ length: 5 }, () => frame(www()))));
    t.equal(await done, 3);
  });

  await t.test('after all that, a fresh connection is served', async (t) => {
    const r = dnsPacket.decode(await sendTcp('127.0.0.1', port, www(), 2000));
    t.same(r.answers?.map((a) => ('data' in a ? a.data : undefined)), ['192.0.2.10']);
  });
});

t.test('swapping the snapshot while queries run loses none of them', async (t) => {
  const one = await configWith(SMALL_ZONE, '');
  const two = await configWith(SMALL_ZONE.replace('www A 192.0.2.10', 'www A 192.0.2.11'), '');
  const server = await startServer({ ...one, server: { ...one.server, listen: [{ host: '127.0.0.1', port: 0 }] } });
  t.teardown(() => server.close());
  const port = server.addresses.udp[0]!.port;
  const seen = new Set<string>();
  let failures = 0;
  const swapper = setInterval(() => server.swap(Math.random() < 0.5 ? one : two), 2);
  // 20 concurrent clients, 25 queries each: bounded, and enough to overlap many swaps.
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      for (let i = 0; i < 25; i++) {
        try {
          const r = dnsPacket.decode(await sendUdp('127.0.0.1', port, www(), 2000));
          const data = r.answers?.map((a) => ('data' in a ? String(a.data) : '')).join(',') ?? '';
          seen.add(data);
          if ((r.flags ?? 0) & 0x0f) failures++; // rcode is the low 4 bits of the flags word
        } catch {
          failures++;
        }
      }
    }),
  );
  clearInterval(swapper);
  t.equal(failures, 0, 'every query answered NOERROR');
  t.same([...seen].sort(), ['192.0.2.10', '192.0.2.11'], 'each answer came whole from one snapshot or the other');
});
