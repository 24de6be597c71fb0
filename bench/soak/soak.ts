// `node dist/bench/soak/soak.js` (or `npx tsx bench/soak/soak.ts`): the soak
// for as long as you like, at a higher rate than CI's, with a memory time
// series per minute and a verdict. See README.md.

import { parseArgs } from 'node:util';
import { runSoak, type SoakResult } from './scenario.js';
import { memoryBuckets, mib, MiB } from './memory.js';

const HELP = `Usage: node dist/bench/soak/soak.js [options]

Runs the real vigil serve under steady UDP and TCP load while its probes flap
and its config is reloaded every 2 s (once with a broken config), and reports
failed queries and memory per minute.

Options:
  --minutes N        how long (default 10; fractions allowed)
  --rate N           UDP queries per second (default 5000)
  --tcp-rate N       TCP queries per second (default 100)
  --bound-mib N      allowed RSS growth after the warm-up, MiB (default 32, see README.md)
  --json             also print the whole result as one JSON line
  --keep             keep the temp dir (config, vigil.log)
  -h, --help         this help

Exit status: 0 when no query failed, every reload behaved and memory grew no
more than the bound; 1 otherwise; 2 on bad options.
`;

const DEFAULT_BOUND_MIB = 32;

function verdict(r: SoakResult, boundBytes: number): string[] {
  const bad: string[] = [];
  if (r.aborted !== undefined) bad.push(`aborted: ${r.aborted}`);
  if (!r.vigilAlive) bad.push('vigil died');
  if (r.load.failed > 0) bad.push(`${r.load.failed} queries failed`);
  bad.push(...r.reloads.problems);
  if (!r.reloads.brokenRefused) bad.push('the broken config was not refused');
  if (r.reloads.valid !== r.reloads.planned - 1) bad.push(`${r.reloads.valid} valid reloads made of ${r.reloads.planned - 1} planned`);
  if (r.reloads.finalServed !== r.reloads.finalWritten) bad.push(`final generation ${String(r.reloads.finalServed)}, written ${r.reloads.finalWritten}`);
  const v = r.memory.verdict;
  if (v === undefined) bad.push('too few memory samples after the warm-up');
  else if (v.growthBytes > boundBytes) bad.push(`RSS grew ${mib(v.growthBytes)} after the warm-up (bound ${mib(boundBytes)})`);
  return bad;
}

function report(r: SoakResult, boundBytes: number): string {
  const lines: string[] = [];
  const l = r.load;
  lines.push(`load: ${l.sent} queries (${l.tcpQueries} over TCP) in ${(r.elapsedMs / 60_000).toFixed(1)} min, ${l.ok} ok, ${l.failed} failed, ${l.retried} retried, ${l.late} late answers, ${l.skipped} sends skipped by the pacer`);
  for (const [kind, k] of Object.entries(l.byKind)) lines.push(`  ${kind.padEnd(10)} ${k.sent} sent, ${k.ok} ok`);
  for (const [reason, n] of Object.entries(l.failures)) lines.push(`  failed: ${reason}: ${n}`);
  for (const e of l.examples.slice(0, 5)) lines.push(`  e.g. at ${(e.atMs / 1000).toFixed(1)} s ${e.transport} ${e.reason}: ${e.detail}`);
  lines.push(`probes: ${r.flips} backend flips, ${String(r.answerChanges)} answer changes (vigil_answer_changes_total)`);
  for (const [svc, answers] of Object.entries(r.services)) lines.push(`  ${svc}: ${Object.keys(answers).length} distinct answers`);
  const rl = r.reloads;
  lines.push(`reloads: ${rl.planned} planned, ${rl.valid} valid written, ${rl.confirmed} confirmed; broken config refused: ${rl.brokenRefused} (served generation ${String(rl.servedAfterBroken)} after it, ${String(rl.loadedBeforeBroken)} before); final generation ${String(rl.finalServed)} of ${rl.finalWritten}; metrics success ${String(rl.metricSuccess)}, failure ${String(rl.metricFailure)}`);
  lines.push('memory per minute (RSS min / max / last; heap used min / max / last):');
  for (const b of memoryBuckets(r.memory.samples, 60_000)) {
    const heap = b.heapUsed === undefined ? 'n/a' : `${mib(b.heapUsed.min)} / ${mib(b.heapUsed.max)} / ${mib(b.heapUsed.last)}`;
    lines.push(`  min ${String(b.fromMs / 60_000).padStart(3)}: ${mib(b.rss.min)} / ${mib(b.rss.max)} / ${mib(b.rss.last)};  ${heap}`);
  }
  const v = r.memory.verdict;
  if (v !== undefined) {
    lines.push(`after the warm-up (${Math.round(r.warmupShare * 100)}%): RSS ${mib(v.baselineRss)} → peak ${mib(v.peakRss)}, growth ${mib(v.growthBytes)} (bound ${mib(boundBytes)}), trend ${(v.slopeBytesPerMin / MiB).toFixed(2)} MiB/min over ${v.samplesAfterWarmup} samples`);
  }
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  if (r.keptDir !== undefined) lines.push(`kept: ${r.keptDir}`);
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        minutes: { type: 'string', default: '10' },
        rate: { type: 'string', default: '5000' },
        'tcp-rate': { type: 'string', default: '100' },
        'bound-mib': { type: 'string', default: String(DEFAULT_BOUND_MIB) },
        json: { type: 'boolean', default: false },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`soak: ${err instanceof Error ? err.message : String(err)}\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const minutes = Number(values.minutes);
  const rate = Number(values.rate);
  const tcpRate = Number(values['tcp-rate']);
  const bound = Number(values['bound-mib']);
  if (!(minutes > 0 && minutes <= 24 * 60) || !(rate > 0 && rate <= 200_000) || !(tcpRate >= 0 && tcpRate <= 10_000) || !(bound > 0)) {
    process.stderr.write(`soak: --minutes must be in (0, 1440], --rate in (0, 200000], --tcp-rate in [0, 10000], --bound-mib > 0\n`);
    return 2;
  }
  const result = await runSoak({
    durationMs: Math.round(minutes * 60_000),
    rate,
    tcpRate,
    keep: values.keep,
    progressEveryMs: 60_000,
    progress: (line) => void process.stderr.write(`soak: ${line}\n`),
  });
  process.stdout.write(report(result, bound * MiB) + '\n');
  if (values.json) process.stdout.write(JSON.stringify(result) + '\n');
  const bad = verdict(result, bound * MiB);
  process.stdout.write(bad.length === 0 ? 'verdict: PASS\n' : `verdict: FAIL\n${bad.map((b) => `  - ${b}`).join('\n')}\n`);
  return bad.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
