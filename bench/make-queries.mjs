#!/usr/bin/env node
// Writes a dnsperf query file ("name type" per line) with a realistic mix for
// the example zone. Deterministic: the same zone file gives the same output,
// so numbers from different runs and machines are comparable.
//
//   node bench/make-queries.mjs [ZONEFILE] [LINES] > bench/queries.txt
//
// The names come from the zone file itself (a deliberately small reader that
// understands what zones/examples/example.test.zone uses), so the mix follows
// the zone when it changes.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const zoneFile = process.argv[2] ?? resolve(here, '../zones/examples/example.test.zone');
const lines = Number(process.argv[3] ?? 10_000);

// The mix, in percent of queries. Existing A/AAAA dominate real authoritative
// traffic; NXDOMAIN and NODATA are the negative-answer paths; mixed case is
// what 0x20-randomising resolvers send and defeats naive exact-match caches.
const MIX = [
  ['address', 60],
  ['mxsrv', 10],
  ['nxdomain', 10],
  ['nodata', 10],
  ['mixedcase', 10],
];

const TYPES = new Set(['A', 'AAAA', 'NS', 'MX', 'TXT', 'SRV', 'CNAME', 'PTR', 'SOA', 'CAA', 'DS', 'HINFO']);

/** (owner, type) pairs of a master file: $ORIGIN, relative owners, blank owners, parentheses, comments. */
function readZone(text) {
  let origin = '';
  let owner = '';
  let depth = 0;
  const records = [];
  for (const raw of text.split('\n')) {
    // Quoted strings go first so that a ';' inside TXT data is not taken for a comment.
    const line = raw.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/;.*/, '');
    const continuing = depth > 0;
    depth += (line.match(/\(/g) ?? []).length - (line.match(/\)/g) ?? []).length;
    if (continuing || line.trim() === '') continue;
    const tokens = line.replace(/[()]/g, ' ').trim().split(/\s+/);
    if (tokens[0] === '$ORIGIN') {
      origin = tokens[1];
      continue;
    }
    if (tokens[0].startsWith('$')) continue;
    if (!/^\s/.test(line)) owner = tokens[0] === '@' ? origin : tokens[0].endsWith('.') ? tokens[0] : `${tokens[0]}.${origin}`;
    const type = tokens.find((t) => TYPES.has(t.toUpperCase()) || /^TYPE\d+$/i.test(t));
    if (type !== undefined) records.push({ owner: owner.toLowerCase(), type: type.toUpperCase() });
  }
  return { origin: origin.toLowerCase(), records };
}

/** mulberry32: tiny, seedable, good enough to spread picks evenly. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const { origin, records } = readZone(readFileSync(zoneFile, 'utf8'));
if (origin === '' || records.length === 0) throw new Error(`${zoneFile}: no $ORIGIN or no records`);
const random = rng(0x5eed);
const pick = (list) => list[Math.floor(random() * list.length)];

const typesAt = new Map();
for (const r of records) {
  if (!typesAt.has(r.owner)) typesAt.set(r.owner, new Set());
  typesAt.get(r.owner).add(r.type);
}
// Names below a delegation are answered with a referral, not data: not what "existing names" means here.
const cuts = [...typesAt].filter(([o, t]) => t.has('NS') && o !== origin).map(([o]) => o);
const belowCut = (o) => cuts.some((c) => o === c || o.endsWith(`.${c}`));
const wildcards = [...typesAt.keys()].filter((o) => o.startsWith('*.'));
const concrete = (o) => (o.startsWith('*.') ? `host${Math.floor(random() * 1000)}.${o.slice(2)}` : o);

const addressQueries = [];
for (const [o, types] of typesAt) {
  if (belowCut(o)) continue;
  // A CNAME answers any type, so it belongs with the address lookups clients make through it.
  for (const t of ['A', 'AAAA']) if (types.has(t) || types.has('CNAME')) addressQueries.push([o, t]);
}
const mxsrvQueries = records.filter((r) => (r.type === 'MX' || r.type === 'SRV') && !belowCut(r.owner)).map((r) => [r.owner, r.type]);
const nodataQueries = [];
for (const [o, types] of typesAt) {
  if (belowCut(o) || types.has('CNAME')) continue;
  for (const t of ['AAAA', 'MX', 'TXT', 'A']) if (!types.has(t)) nodataQueries.push([o, t]);
}
// Empty non-terminals: every proper ancestor of an owner that owns nothing itself.
for (const o of typesAt.keys()) {
  for (let p = o.slice(o.indexOf('.') + 1); p.length > origin.length; p = p.slice(p.indexOf('.') + 1)) {
    if (!typesAt.has(p) && !belowCut(p)) nodataQueries.push([p, 'A']);
  }
}
if (addressQueries.length === 0 || mxsrvQueries.length === 0 || nodataQueries.length === 0) {
  throw new Error(`${zoneFile}: the zone lacks addresses, MX/SRV or NODATA names for the mix`);
}

function mixCase(name) {
  let out = '';
  for (const ch of name) out += /[a-z]/.test(ch) && random() < 0.5 ? ch.toUpperCase() : ch;
  return out === name ? name.toUpperCase() : out;
}

const total = MIX.reduce((s, [, w]) => s + w, 0);
const out = [];
for (let i = 0; i < lines; i++) {
  let x = random() * total;
  let kind = MIX[0][0];
  for (const [k, w] of MIX) {
    if (x < w) {
      kind = k;
      break;
    }
    x -= w;
  }
  let q;
  switch (kind) {
    case 'address': {
      const [o, t] = pick(addressQueries);
      q = [concrete(o), t];
      break;
    }
    case 'mxsrv':
      q = pick(mxsrvQueries);
      break;
    case 'nxdomain':
      q = [`nx${Math.floor(random() * 1e6)}.${origin}`, pick(['A', 'AAAA'])];
      break;
    case 'nodata': {
      const [o, t] = pick(nodataQueries);
      q = [concrete(o), t];
      break;
    }
    case 'mixedcase': {
      const [o, t] = pick(addressQueries);
      q = [mixCase(concrete(o)), t];
      break;
    }
  }
  out.push(`${q[0]} ${q[1]}`);
}
process.stdout.write(out.join('\n') + '\n');
if (wildcards.length > 0) process.stderr.write(`wildcards expanded: ${wildcards.join(', ')}\n`);
process.stderr.write(`${lines} queries from ${typesAt.size} names in ${zoneFile}\n`);
