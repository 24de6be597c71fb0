// The answer path under a structure-aware fuzzer (test/fuzz/): a seeded,
// bounded campaign against the example zones over UDP, TCP and TCP streams,
// every input checked against the invariants in test/fuzz/harness.ts; the
// oracle itself shown to catch broken answers; and every input ever saved in
// test/fuzz/crashes/ (by `npx tsx bench/fuzz.ts`) replayed as a regression.

import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { respond } from '../server/answer/respond.js';
import { parseQuery } from '../server/wire/query.js';
import { Campaign, checkMessage, crashName, fuzzSnapshot, runInput, type Responder } from './fuzz/harness.js';
import { seedCorpus } from './fuzz/corpus.js';
import { frame, frames, layout, mutate, Rng } from './fuzz/mutator.js';
import { encodeQuery } from './helpers/dnsclient.js';

/** About 5 s of work on a quiet machine, 10-15 s on this shared one; the long run is bench/fuzz.ts. */
const ITERATIONS = 40_000;
const SEED = 0x5eed_2026;

const snapPromise = fuzzSnapshot();

t.test('the oracle catches broken answers', async (t) => {
  const snap = await snapPromise;
  const q = encodeQuery({ qname: 'www.example.test', qtype: 'A', id: 0x4242, edns: {} });
  const real: Responder = (m, n, s, tr, c) => respond(m, n, s, tr, c);
  t.same(checkMessage(snap, q, 'udp', '192.0.2.1', real).violations, [], 'the real answer passes');

  const broken: [string, Responder, string][] = [
    ['throws', () => { throw new Error('boom'); }, 'respond never throws'],
    ['wrong ID', (m, n, s, tr, c) => { const o = respond(m, n, s, tr, c)!; o[1]! ^= 1; return o; }, 'ID echoed'],
    ['QR clear', (m, n, s, tr, c) => { const o = respond(m, n, s, tr, c)!; o[2]! &= 0x7f; return o; }, 'QR set'],
    ['RD invented', (m, n, s, tr, c) => { const o = respond(m, n, s, tr, c)!; o[2]! |= 1; return o; }, 'RD copied'],
    ['silent', () => undefined, 'every packet the parser accepts is answered'],
    ['trailing octet', (m, n, s, tr, c) => Buffer.concat([respond(m, n, s, tr, c)!, Buffer.from([0])]), 'dns-packet reads the whole answer'],
    ['too big', (m, n, s, tr, c) => { const o = respond(m, n, s, tr, c)!; return Buffer.concat([o, Buffer.alloc(1300)]); }, 'within the size limit'],
    ['counts lie', (m, n, s, tr, c) => { const o = respond(m, n, s, tr, c)!; o.writeUInt16BE(5, 6); return o; }, 'dns-packet decodes the answer'],
    ['question case lost', (m, n, s, tr, c) => { const o = respond(m, n, s, tr, c)!; o[13] = 0x57; return o; }, 'the question is echoed as sent'],
    ['no OPT', (m, n, s, tr, c) => { const o = respond(m, n, s, tr, c)!; o.writeUInt16BE(0, 10); return o.subarray(0, o.length - 11); }, 'one OPT in the answer exactly when the query had one'],
    [
      'quadratic reader',
      (m, n, s, tr, c) => {
        let x = 0;
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) x ^= m[j]!;
        return x === -1 ? undefined : respond(m, n, s, tr, c);
      },
      'bounded work',
    ],
  ];
  for (const [what, answer, invariant] of broken) {
    const v = checkMessage(snap, q, 'udp', '192.0.2.1', answer).violations.map((x) => x.invariant);
    t.ok(v.includes(invariant), `${what}: "${invariant}" reported (got ${JSON.stringify(v)})`);
  }
  const dropped = Buffer.from(q);
  dropped[2]! |= 0x80;
  const answersEverything: Responder = (m, n, s, tr, c) => respond(Buffer.from(q), q.length, s, tr, c);
  t.same(
    checkMessage(snap, dropped, 'udp', '192.0.2.1', answersEverything).violations.map((x) => x.invariant),
    ['a dropped packet gets no answer'],
    'answering a response (QR=1) is caught',
  );
  const badvers = encodeQuery({ qname: 'www.example.test', qtype: 'A', id: 7, edns: { version: 1 } });
  const ignoresVersion: Responder = (m, n, s, tr, c) => {
    const o = respond(encodeQuery({ qname: 'www.example.test', qtype: 'A', id: 7, edns: {} }), 1000, s, tr, c)!;
    return o;
  };
  t.ok(
    checkMessage(snap, badvers, 'udp', '192.0.2.1', ignoresVersion).violations.some((x) => x.invariant === 'BADVERS for EDNS versions above 0'),
    'answering EDNS version 1 as version 0 is caught',
  );
});

t.test('the mutator', async (t) => {
  const q = encodeQuery({ qname: 'www.example.test', qtype: 'A', edns: { options: [{ code: 10, data: Buffer.alloc(8) }] } });
  const l = layout(q);
  t.same(l.labels, [12, 16, 24, 29], 'question labels found');
  t.equal(l.qtypeAt, 30);
  t.equal(l.records.length, 1);
  t.equal(l.options.length, 1, 'the COOKIE option found');
  t.equal(q.readUInt16BE(l.options[0]!), 10);
  t.same(frames(frame([q, q.subarray(0, 20)])), [q, q.subarray(0, 20)], 'framing round-trips');
  t.same(frames(Buffer.concat([frame([q]), Buffer.from([0, 99, 1])])), [q], 'a partial frame is left out');

  // Same seed, same mutants: a run can be reproduced from its seed.
  const seeds = seedCorpus();
  const a = new Rng(99);
  const b = new Rng(99);
  for (let i = 0; i < 200; i++) {
    const x = mutate(a, seeds[i % seeds.length]!, seeds[(i * 7) % seeds.length]!);
    const y = mutate(b, seeds[i % seeds.length]!, seeds[(i * 7) % seeds.length]!);
    if (!x.data.equals(y.data) || x.mode !== y.mode) t.fail(`mutant ${i} differs`);
  }
  t.pass('200 mutants reproduced');
  t.equal(crashName(q), crashName(Buffer.from(q)), 'a crash file is named by its content');
  t.match(crashName(q), /^[0-9a-f]{16}\.bin$/);
});

t.test('a campaign finds a planted bug, and its finding replays', async (t) => {
  const snap = await snapPromise;
  // The bug: a question name holding octet 63 (a 63-octet label, or a '?'; legal, absent from the seeds) gets a wrong ID.
  const planted: Responder = (m, n, s, tr, c) => {
    const out = respond(m, n, s, tr, c);
    const p = parseQuery(m, n);
    if (out !== undefined && p.kind === 'query' && p.qname.includes('\x3f')) out[0]! ^= 0x80;
    return out;
  };
  const c = new Campaign(snap, seedCorpus(), 7, planted);
  t.same(c.findings, [], 'the seeds do not trigger it');
  for (let i = 0; i < 3000 && c.findings.length === 0; i++) c.step();
  t.ok(c.findings.length > 0, `found after ${c.iterations} mutants`);
  const f = c.findings[0];
  if (f !== undefined) {
    t.same(
      f.violations.map((v) => v.invariant),
      ['ID echoed'],
      'reported as the broken invariant',
    );
    t.ok(runInput(snap, f.input, planted).violations.length > 0, 'the saved input reproduces it');
    t.same(runInput(snap, f.input).violations, [], 'and passes against the real respond()');
  }
});

t.test(`a seeded campaign of ${ITERATIONS} mutants finds no violation`, async (t) => {
  const snap = await snapPromise;
  const seeds = seedCorpus();
  const c = new Campaign(snap, seeds, SEED);
  t.same(c.findings, [], 'every seed passes');
  const fromSeeds = c.signatures.size;
  for (let i = 0; i < ITERATIONS; i++) c.step();
  const shown = c.findings.slice(0, 5).map((f) => ({ mode: f.input.mode, input: f.input.data.toString('hex'), violations: f.violations }));
  t.same(shown, [], `no invariant broken in ${c.iterations} mutants (${c.findings.length} findings)`);
  t.ok(c.signatures.size > fromSeeds + 50, `mutants reached ${c.signatures.size - fromSeeds} signatures the seeds did not (${c.signatures.size} in all)`);
  t.ok(c.kept > 10, `${c.kept} mutants kept for reaching something new`);

  // The paths a hostile client must be able to reach, each named by its signature.
  const sigs = [...c.signatures];
  const reached = (what: string, re: RegExp): void => {
    t.ok(sigs.some((s) => re.test(s)), `reached: ${what}`);
  };
  reached('dropped responses (QR=1)', /^(udp|tcp)\|drop\|QR set/);
  reached('dropped runts', /\|drop\|shorter than a header/);
  reached('FORMERR for a bad question', /\|error\|question does not parse\|rc1/);
  reached('FORMERR for QDCOUNT', /\|error\|QDCOUNT #\|rc1/);
  reached('FORMERR for a malformed COOKIE (RFC 7873)', /\|error\|malformed COOKIE option of # octets\|rc1\|\|\|edns/);
  reached('FORMERR for two OPTs', /\|error\|more than one OPT record\|rc1/);
  reached('FORMERR for an OPT in the wrong section', /\|error\|OPT outside the additional section/);
  reached('FORMERR for an option overrunning the OPT', /\|error\|EDNS option overruns OPT/);
  reached('FORMERR for a record that does not parse (pointers and lengths)', /\|error\|record does not parse/);
  reached('NOTIMP for another opcode', /\|error\|opcode #\|rc4/);
  reached('BADVERS', /\|query\|\|rc16\|/);
  reached('NXDOMAIN', /\|query\|\|rc3\|aa\|ns\|/);
  reached('REFUSED', /\|query\|\|rc5\|/);
  reached('a referral', /\|query\|\|rc0\|\|nsar\|/);
  reached('a truncated UDP answer', /^udp\|query\|\|rc0\|aatc\|/);
  reached('a truncated referral (glue that must fit)', /^udp\|query\|\|rc0\|tc\|nsar\|/);
  reached('queries carrying a server cookie', /\|query\|.*cookie\+$/);
  reached('pipelined TCP frames', /^stream\|[23] frames/);
});

t.test('every saved crash replays clean in every transport', async (t) => {
  const snap = await snapPromise;
  const dir = fileURLToPath(new URL('./fuzz/crashes/', import.meta.url));
  t.ok(existsSync(join(dir, 'README.md')), 'the crashes folder is there (kept by its README)');
  const files = readdirSync(dir).filter((f) => f.endsWith('.bin')).sort();
  if (files.length === 0) t.pass('no crash recorded yet');
  for (const f of files) {
    const data = readFileSync(join(dir, f));
    for (const mode of ['udp', 'tcp', 'stream'] as const) {
      const r = runInput(snap, { data, mode });
      t.same(r.violations, [], `${f} over ${mode}`);
    }
  }
});
