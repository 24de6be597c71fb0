// The long fuzz run: the campaign of test/fuzz.test.ts for as long as asked,
// with a fresh seed each time unless one is given. Every input that breaks
// an invariant is written to test/fuzz/crashes/<hash>.bin, where
// test/fuzz.test.ts replays it from then on.
//
//   npx tsx bench/fuzz.ts --seconds 600 [--seed N] [--out DIR]
//
// Exit status 1 when anything was found. Timings printed here (iterations per
// second, the slowest single step) are for the reader; nothing asserts on them.

import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Campaign, crashName, fuzzSnapshot } from '../test/fuzz/harness.js';
import { seedCorpus } from '../test/fuzz/corpus.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    seed: { type: 'string' },
    out: { type: 'string', default: fileURLToPath(new URL('../test/fuzz/crashes/', import.meta.url)) },
  },
});

const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error(`--seconds must be a positive number, not "${values.seconds}"`);
  process.exit(2);
}
const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
const out = values.out;
mkdirSync(out, { recursive: true });

const snap = await fuzzSnapshot();
const campaign = new Campaign(snap, seedCorpus(), seed);
console.log(`fuzzing for ${seconds} s, seed ${seed} (rerun with --seed ${seed}); crashes go to ${out}`);

const start = performance.now();
const deadline = start + seconds * 1000;
let written = 0;
let reported = 0;
let slowest = 0;
let lastProgress = start;

while (performance.now() < deadline) {
  for (let i = 0; i < 500; i++) {
    const t0 = performance.now();
    campaign.step();
    const dt = performance.now() - t0;
    if (dt > slowest) slowest = dt;
  }
  for (; reported < campaign.findings.length; reported++) {
    const f = campaign.findings[reported]!;
    const name = crashName(f.input.data);
    const path = join(out, name);
    if (!existsSync(path)) {
      writeFileSync(path, f.input.data);
      written++;
    }
    console.log(`CRASH ${name} (${f.input.mode}, ${f.input.data.length} octets): ${f.violations.map((v) => `${v.invariant}: ${v.detail}`).join('; ')}`);
  }
  const now = performance.now();
  if (now - lastProgress >= 10_000) {
    lastProgress = now;
    const rate = Math.round(campaign.iterations / ((now - start) / 1000));
    console.log(
      `${Math.round((now - start) / 1000)} s: ${campaign.iterations} inputs (${rate}/s), ${campaign.signatures.size} signatures, corpus ${campaign.corpus.length}, ${campaign.findings.length} findings`,
    );
  }
}

const elapsed = (performance.now() - start) / 1000;
console.log(
  `done: ${campaign.iterations} inputs in ${elapsed.toFixed(1)} s, ${campaign.signatures.size} signatures, ${campaign.kept} kept, ` +
    `slowest step ${slowest.toFixed(1)} ms, ${campaign.findings.length} findings, ${written} new crash files`,
);
process.exit(campaign.findings.length > 0 ? 1 : 0);
