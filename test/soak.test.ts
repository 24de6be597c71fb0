// The bounded soak (bench/soak/README.md): the real `vigil serve` (dist/, built
// by `npm test` before tap runs) under a steady 2,000 UDP queries/s plus TCP,
// for 20 s, while every backend flips between up and down every 1-3 s and the
// config is rewritten and reloaded with SIGHUP every 2 s, once with a broken
// config. No query may fail (after one retry, as a resolver would), every
// service answer must be one of its members, reloads must take effect (the
// broken one must not), and RSS may grow at most CI_RSS_GROWTH_BOUND after
// the warm-up. The scenario is bench/soak/scenario.ts, shared with the long
// on-demand run.

import t from 'tap';
import { runSoak } from '../bench/soak/scenario.js';
import { SERVICES } from '../bench/soak/config.js';
import { mib, MiB } from '../bench/soak/memory.js';

const DURATION_MS = 20_000;
const RATE = 2000;
/**
 * Allowed RSS growth after the warm-up (the first 30%, 6 s) of this 20 s run.
 * Derived in bench/soak/README.md ("The CI bound"): measured growth over
 * such runs and the 10-minute steady state, with margin.
 */
const CI_RSS_GROWTH_BOUND = 24 * MiB;

t.test('soak: steady load while probes flap and configs reload', async (t) => {
  const r = await runSoak({ durationMs: DURATION_MS, rate: RATE, tcpRate: 50, warmupShare: 0.3 });
  t.comment(`${r.load.sent} queries (${r.load.tcpQueries} TCP), ${r.load.retried} retried, ${r.flips} flips, ${String(r.answerChanges)} answer changes, ${r.reloads.valid} reloads`);
  for (const w of r.warnings) t.comment(`warning: ${w}`);

  t.equal(r.aborted, undefined, 'the run was not cut short');
  t.ok(r.vigilAlive, 'vigil is still running at the end', { log: r.vigilLogTail });

  t.equal(r.load.failed, 0, 'no query failed (no answer after the retry, wrong rcode, SERVFAIL, malformed, wrong or foreign address)', {
    failures: r.load.failures,
    examples: r.load.examples,
  });
  // The load really ran: at least half the planned queries (the pacer skips sends only when this process stalls).
  t.ok(r.load.sent >= (RATE * DURATION_MS) / 1000 / 2, `${r.load.sent} queries sent`);
  t.ok(r.load.tcpQueries > 0, 'some over TCP');
  for (const kind of ['static', 'service', 'nxdomain', 'generation']) t.ok((r.load.byKind[kind]?.ok ?? 0) > 0, `${kind} queries answered`);

  // Probes flapped and answers followed them.
  t.ok((r.answerChanges ?? 0) >= 3, `answers changed (${String(r.answerChanges)} times)`);
  for (const s of SERVICES) {
    const seen = Object.keys(r.services[s.name] ?? {});
    t.ok(seen.length >= 2, `${s.name} served ${seen.length} different answers: ${seen.join(' | ')}`);
  }

  const rl = r.reloads;
  t.same(rl.problems, [], 'every reload behaved');
  t.equal(rl.planned, DURATION_MS / 2000 - 1, 'a reload every 2 s');
  t.equal(rl.valid, rl.planned - 1, 'every planned valid config was written and signalled');
  t.equal(rl.confirmed, rl.valid, 'each one counted as loaded');
  t.equal(rl.metricSuccess, rl.valid, 'vigil_config_reloads_total{result="success"}');
  t.ok(rl.brokenRefused, 'the broken config was refused');
  t.equal(rl.metricFailure, 1, 'vigil_config_reloads_total{result="failure"}');
  t.equal(rl.servedAfterBroken, rl.loadedBeforeBroken, 'the old config kept serving after the broken one');
  t.equal(rl.finalServed, rl.finalWritten, 'the last valid config is the one served at the end');

  const v = r.memory.verdict;
  t.ok(v !== undefined && v.samplesAfterWarmup >= 5, 'memory sampled after the warm-up');
  if (v !== undefined) {
    t.comment(`RSS after warm-up ${mib(v.baselineRss)}, peak ${mib(v.peakRss)}, growth ${mib(v.growthBytes)}`);
    t.ok(v.growthBytes <= CI_RSS_GROWTH_BOUND, `RSS grew ${mib(v.growthBytes)} after the warm-up (bound ${mib(CI_RSS_GROWTH_BOUND)})`, {
      samples: r.memory.samples.map((s) => `${(s.atMs / 1000).toFixed(1)}s ${mib(s.rssBytes)}`),
    });
  }
});
