// server/answer/warm-up.ts: the made-up questions a server answers before it
// binds must leave no trace, neither in what it answers afterwards (they fill
// the snapshot's memo) nor in what it counts.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { Resolver } from 'node:dns/promises';
import { loadConfig } from '../zones/load.js';
import { buildSnapshot } from '../server/answer/snapshot.js';
import { respond } from '../server/answer/respond.js';
import { warmUp } from '../server/answer/warm-up.js';
import { startServer } from '../server/server.js';
import type { QueryObserver } from '../server/metrics/query-stats.js';
import { encodeQuery, type QuerySpec } from './helpers/dnsclient.js';

const EXAMPLE = fileURLToPath(new URL('../zones/examples/vigil.yaml', import.meta.url));

// Names the warm-up asks about (the first of the zone) and ones it does not, in odd case, with and without EDNS.
const QUESTIONS: QuerySpec[] = [
  { qname: 'example.test.', qtype: 'SOA' },
  { qname: 'Example.TEST.', qtype: 'A', edns: { udpPayload: 1232 } },
  { qname: 'www.example.test.', qtype: 'A' },
  { qname: 'WWW.example.test.', qtype: 'AAAA', edns: { udpPayload: 4096, do: true } },
  { qname: 'mail.example.test.', qtype: 'MX' },
  { qname: 'warm-up.example.test.', qtype: 'A' },
  { qname: 'WARM-UP.example.test.', qtype: 'TXT', edns: { udpPayload: 512 } },
  { qname: 'nothing.example.test.', qtype: 'A' },
];

t.test('a warmed snapshot answers byte for byte as a cold one', async (t) => {
  const { config } = await loadConfig(EXAMPLE);
  const cold = buildSnapshot(config);
  const warm = buildSnapshot(config);
  const n = warmUp(warm);
  t.ok(n > 1000, `warm-up answered ${n} questions`);
  t.ok(warm.views[0]!.answerCache.size > 0, 'and filled the memo');
  t.equal(cold.views[0]!.answerCache.size, 0, 'the cold snapshot has an empty memo');
  QUESTIONS.forEach((q, i) => {
    const msg = encodeQuery({ ...q, id: 4242 + i });
    const a = respond(msg, msg.length, cold, 'udp', '127.0.0.1');
    const b = respond(msg, msg.length, warm, 'udp', '127.0.0.1');
    t.ok(a, `${q.qname} ${String(q.qtype)}: answered`);
    t.equal(Buffer.from(b!).toString('hex'), Buffer.from(a!).toString('hex'), `${q.qname} ${String(q.qtype)}: the same bytes`);
  });
});

t.test('a started server has counted none of its warm-up questions', async (t) => {
  const { config } = await loadConfig(EXAMPLE);
  let seen = 0;
  const observer: QueryObserver = {
    query() {
      seen++;
    },
  };
  const server = await startServer({ ...config, server: { ...config.server, listen: [{ host: '127.0.0.1', port: 0 }] } }, { observer });
  t.teardown(() => server.close());
  t.equal(seen, 0, 'nothing observed before the first real query');
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  resolver.setServers([`127.0.0.1:${server.addresses.udp[0]!.port}`]);
  t.same(await resolver.resolve4('www.example.test'), ['192.0.2.10'], 'answers as usual');
  t.equal(seen, 1, 'and counts exactly the one real query');
});
