// The answering function alone, in-process: nanoseconds per respond() call for
// each kind of query in bench/queries.txt, with no sockets, so it isolates
// what our code costs per query from what Node's dgram costs (bench/peers).
// Not a test; use it to compare before and after a change on the same machine:
//
//   npx tsc -p tsconfig.json && node dist/bench/hotpath/hotpath.js [--rounds 7]
//   node --cpu-prof dist/bench/hotpath/hotpath.js      # a profile of the same loop
//
// Each figure is CPU time, the fastest of several rounds (the least disturbed
// by other processes), after a warm-up that fills the answer memo and templates.

import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import packet from 'dns-packet';
import { loadConfig } from '../../zones/load.js';
import { buildSnapshot } from '../../server/answer/snapshot.js';
import { respond, newQueryInfo } from '../../server/answer/respond.js';
import { parseQuery } from '../../server/wire/query.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// Compiled to dist/bench/hotpath: the sources are two levels further up.
const repo = fs.existsSync(path.join(root, 'package.json')) ? root : path.resolve(root, '..');
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' } } });
const rounds = Number(values.rounds);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-hotpath-'));
fs.writeFileSync(path.join(dir, 'vigil.yaml'), `zones:\n  - origin: example.test.\n    file: ${path.join(repo, 'zones/examples/example.test.zone')}\n`);
const { config } = await loadConfig(path.join(dir, 'vigil.yaml'));
fs.rmSync(dir, { recursive: true });
const snap = buildSnapshot(config);

const lines = fs.readFileSync(path.join(repo, 'bench/queries.txt'), 'utf8').trim().split('\n');
const kinds = new Map<string, Buffer[]>([['all', []]]);
for (const [i, line] of lines.entries()) {
  const [name, type] = line.split(/\s+/) as [string, string];
  const q = packet.encode({
    type: 'query',
    id: i & 0xffff,
    flags: packet.RECURSION_DESIRED,
    questions: [{ name: name.replace(/\.$/, ''), type: type as 'A' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as never],
  });
  // The same classes as bench/make-queries.mjs writes.
  const kind = /^nx\d/.test(name) ? 'nxdomain' : /^host\d+\.apps\./.test(name) ? 'wildcard' : /[A-Z]/.test(name) ? 'mixed case' : 'memo hit';
  if (!kinds.has(kind)) kinds.set(kind, []);
  kinds.get(kind)!.push(q);
  kinds.get('all')!.push(q);
}

const info = newQueryInfo();
const all = kinds.get('all')!;
for (let r = 0; r < 5; r++) for (const q of all) respond(q, q.length, snap, 'udp', '127.0.0.1', info);

function fastest(fn: () => void, count: number): number {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    // CPU time, not wall time: other processes on the machine then cost us little but cache misses.
    const t0 = process.cpuUsage();
    fn();
    const used = process.cpuUsage(t0);
    best = Math.min(best, ((used.user + used.system) * 1000) / count);
  }
  return best;
}

const REPEAT = 20;
console.log('kind          queries  respond ns  of which parse ns');
for (const [kind, qs] of kinds) {
  const total = fastest(() => {
    for (let r = 0; r < REPEAT; r++) for (const q of qs) respond(q, q.length, snap, 'udp', '127.0.0.1', info);
  }, REPEAT * qs.length);
  const parse = fastest(() => {
    for (let r = 0; r < REPEAT; r++) for (const q of qs) parseQuery(q, q.length);
  }, REPEAT * qs.length);
  console.log(`${kind.padEnd(12)} ${String(qs.length).padStart(8)} ${total.toFixed(0).padStart(11)} ${parse.toFixed(0).padStart(18)}`);
}
