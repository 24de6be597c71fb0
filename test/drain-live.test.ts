// The drain tracker fed by real UDP queries: resolvers on several loopback
// addresses (127.0.0.2 … 127.0.0.9, all routed on lo) ask a small DNS server
// written here, which calls observe() with each packet's source address as
// the socket reports it. Proves the addresses the tracker keys on are the
// ones real sockets give, and that a change is measured from them.

import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import dnsPacket from 'dns-packet';
import { DrainTracker } from '../server/drain/tracker.js';

const NAME = 'www.drain.test';
const SERVICE = 'www.drain.test.';
const ASK_TIMEOUT_MS = 5_000;

interface Answering {
  readonly socket: dgram.Socket;
  readonly port: number;
  /** The A record served for NAME; the test changes it. */
  answer: string;
}

/** Answers A queries for NAME (observed by the tracker) and REFUSED for anything else (not observed). */
async function startServer(t: Test, type: 'udp4' | 'udp6', host: string, tracker: DrainTracker, service: string): Promise<Answering> {
  const socket = dgram.createSocket(type);
  const state: Answering = { socket, port: 0, answer: '192.0.2.1' };
  socket.on('message', (msg, rinfo) => {
    let q: dnsPacket.Packet;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    const known = question !== undefined && question.name.toLowerCase() === NAME && question.type === 'A';
    if (known) tracker.observe(service, rinfo.address, Date.now());
    const reply = dnsPacket.encode({
      type: 'response',
      id: q.id ?? 0,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | (known ? 0 : 5), // rcode 5: REFUSED
      questions: q.questions ?? [],
      answers: known ? [{ type: 'A', name: NAME, ttl: 30, data: state.answer }] : [],
    });
    socket.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: host, port: 0 }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  t.teardown(() => socket.close());
  return Object.assign(state, { port: (socket.address() as AddressInfo).port });
}

interface Client {
  readonly address: string;
  ask(name: string): Promise<{ rcode: number; addresses: string[] }>;
}

async function client(t: Test, type: 'udp4' | 'udp6', address: string, server: { host: string; port: number }): Promise<Client> {
  const socket = dgram.createSocket(type);
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address, port: 0 }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  t.teardown(() => socket.close());
  let nextId = 1;
  return {
    address,
    ask(name: string) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          socket.off('message', onMessage);
          reject(new Error(`no answer to ${address} for ${name} within ${ASK_TIMEOUT_MS} ms`));
        }, ASK_TIMEOUT_MS);
        const onMessage = (msg: Buffer): void => {
          const r = dnsPacket.decode(msg);
          if (r.id !== id) return;
          clearTimeout(timer);
          socket.off('message', onMessage);
          resolve({
            rcode: (r.flags ?? 0) & 0x0f,
            addresses: (r.answers ?? []).flatMap((a) => (a.type === 'A' ? [a.data] : [])),
          });
        };
        socket.on('message', onMessage);
        socket.send(dnsPacket.encode({ type: 'query', id, questions: [{ type: 'A', name }] }), server.port, server.host);
      });
    },
  };
}

async function untilClockPasses(at: number): Promise<void> {
  while (Date.now() <= at) await new Promise((r) => setTimeout(r, 1));
}

t.test('resolvers on 127.0.0.2-9: population, re-fetches, new resolvers and lagging from real packets', async (t) => {
  const tracker = new DrainTracker({ graceMs: 5_000 });
  const server = await startServer(t, 'udp4', '127.0.0.1', tracker, SERVICE);
  const clients = new Map<number, Client>();
  for (let i = 2; i <= 9; i++) clients.set(i, await client(t, 'udp4', `127.0.0.${i}`, { host: '127.0.0.1', port: server.port }));
  const ask = async (i: number, times = 1, name = NAME): Promise<string[]> => {
    let last: string[] = [];
    for (let k = 0; k < times; k++) last = (await clients.get(i)!.ask(name)).addresses;
    return last;
  };

  // Before the change: five resolvers, each with its own number of queries.
  t.same(await ask(2), ['192.0.2.1']);
  t.same(await ask(3, 3), ['192.0.2.1']);
  t.same(await ask(4, 2), ['192.0.2.1']);
  t.same(await ask(5, 2), ['192.0.2.1']);
  t.same(await ask(6), ['192.0.2.1']);
  // Another name: answered, never observed.
  const other = await clients.get(9)!.ask('other.drain.test');
  t.equal(other.rcode, 5, 'REFUSED');
  t.equal(tracker.report(Date.now(), SERVICE).services[0]!.resolversTracked, 5);

  const at = Date.now();
  server.answer = '192.0.2.2';
  tracker.change(SERVICE, { at, epoch: 2, from: '192.0.2.1', to: '192.0.2.2', oldTtl: 30 });
  await untilClockPasses(at);

  // After: three of the five come back (the third of them reaches 50%), two resolvers never seen before ask.
  t.same(await ask(2), ['192.0.2.2']);
  t.same(await ask(4), ['192.0.2.2']);
  const beforeThird = Date.now();
  t.same(await ask(5), ['192.0.2.2']);
  const afterThird = Date.now();
  t.same(await ask(7, 2), ['192.0.2.2']);
  t.same(await ask(8), ['192.0.2.2']);

  const svc = tracker.report(Date.now(), SERVICE).services[0]!;
  t.equal(svc.resolversTracked, 7, '127.0.0.9 asked only for another name');
  t.equal(svc.changes.length, 1);
  const c = svc.changes[0]!;
  t.equal(c.at, at);
  t.equal(c.population, 5);
  t.equal(c.refetched, 3);
  t.equal(c.ratio, 0.6);
  t.equal(c.newResolvers, 2);
  t.ok(c.p50Ms !== undefined && c.p50Ms >= beforeThird - at && c.p50Ms <= afterThird - at, `p50 ${c.p50Ms} ms is when 127.0.0.5 asked`);
  t.notOk('p90Ms' in c);
  t.equal(c.expectedDoneAt, at + 35_000);
  t.notOk(c.overdue, 'the old TTL has not run out yet');
  t.same(c.lagging, []);

  const late = tracker.report(c.expectedDoneAt + 1, SERVICE).services[0]!.changes[0]!;
  t.ok(late.overdue);
  t.same(
    late.lagging.map((l) => [l.client, l.queries]),
    [
      ['127.0.0.3', 3],
      ['127.0.0.6', 1],
    ],
    'the two that never came back, the busier first, keyed by their real source addresses',
  );
  t.ok(late.lagging[0]!.lastSeenBeforeMs >= late.lagging[1]!.lastSeenBeforeMs, '127.0.0.6 asked after 127.0.0.3');
  t.ok(late.lagging[1]!.lastSeenBeforeMs >= 0);
});

t.test('an IPv6 resolver is tracked by its address as the socket gives it', async (t) => {
  const tracker = new DrainTracker({ graceMs: 0 });
  const service = 'v6.drain.test.';
  const server = await startServer(t, 'udp6', '::1', tracker, service);
  const c = await client(t, 'udp6', '::1', { host: '::1', port: server.port });
  t.same((await c.ask(NAME)).addresses, ['192.0.2.1']);
  const at = Date.now();
  tracker.change(service, { at, epoch: 1, from: 'a', to: 'b', oldTtl: 1 });
  const lagging = tracker.report(at + 1_001, service).services[0]!.changes[0]!.lagging;
  t.same(lagging.map((l) => [l.client, l.queries]), [['::1', 1]]);
  await untilClockPasses(at);
  await c.ask(NAME);
  const after = tracker.report(at + 1_001, service).services[0]!.changes[0]!;
  t.equal(after.refetched, 1);
  t.same(after.lagging, []);
});
