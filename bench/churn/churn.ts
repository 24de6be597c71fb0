// Throughput while health churns: the same dnsperf load against the same
// in-process Vigil, alternately with no health changes and with N members
// flipping every second, so the ratio of the two medians is the cost of churn.
// A measuring tool, not a test: nothing asserts on the numbers. See README.md.
//
//   npm run build && node dist/bench/churn/churn.js [--duration 10] [--rounds 3] [--flips 1000]

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { pino } from 'pino';
import { startDaemon, type Daemon } from '../../server/daemon.js';
import { Churner } from './churner.js';
import { DnsperfFailed, runDnsperf, type DnsperfResult } from './dnsperf.js';
import { CHURN_OPTIONS, churnArgs, probeListeners, waitUntilUp, writeChurnSetup, type ChurnProbe } from './setup.js';
import { intArg, UsageError } from '../args.js';

const USAGE = `usage: node dist/bench/churn/churn.js [options]
  --duration S   seconds per dnsperf run (10)
  --rounds N     rounds of (no-churn, churn) (3)
  --flips N      members flipped every second, one per service (1000; at most --services)
  --services N   failover services in churn.test. (1000)
  --slices N     spread each second's flips over N equal slices (1: one burst)
  --clients N    dnsperf -c (4)
  --probe P      tcp (a 1h-interval check of a local listener) or none (tcp)
  --port P       DNS port on 127.0.0.1 (0: any free port)
  --no-pin       do not pin the server to cpu 0 and dnsperf to cpu 1
  --windows S    instead of rounds: one dnsperf run of --duration seconds, churn switched on and off every S seconds,
                 q/s compared second by second (steadier on a machine whose speed drifts; try --duration 60 --windows 3)`;

interface Options {
  readonly durationS: number;
  readonly rounds: number;
  readonly flips: number;
  readonly services: number;
  readonly slices: number;
  readonly clients: number;
  readonly probe: ChurnProbe;
  readonly port: number;
  readonly pin: boolean;
  /** Seconds per window in the windowed mode; 0: rounds of whole runs. */
  readonly windowS: number;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      ...CHURN_OPTIONS,
      duration: { type: 'string' },
      rounds: { type: 'string' },
      clients: { type: 'string' },
      port: { type: 'string' },
      'no-pin': { type: 'boolean', default: false },
      windows: { type: 'string' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const { services, flips, slices, probe } = churnArgs(values, (n) => Math.min(1000, n), 0);
  return {
    durationS: intArg(values.duration, 'duration', 10, 1),
    rounds: intArg(values.rounds, 'rounds', 3, 1),
    flips,
    services,
    slices,
    clients: intArg(values.clients, 'clients', 4, 1),
    probe,
    port: intArg(values.port, 'port', 0, 0),
    pin: values['no-pin'] !== true,
    windowS: intArg(values.windows, 'windows', 0, 0),
  };
}

/** Pins every thread of this process (and the threads it starts later) to `cpu`. */
function pinSelf(cpu: number): boolean {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

interface RunResult {
  readonly kind: 'no-churn' | 'churn';
  readonly perf: DnsperfResult;
  readonly changesPerS: number;
  readonly loopMaxMs: number;
  readonly loopP99Ms: number;
  readonly batchMs: readonly number[];
  readonly overruns: number;
}

interface Window {
  readonly kind: 'no-churn' | 'churn';
  /** Unix time, ms. */
  readonly start: number;
  readonly end: number;
}

/**
 * The windowed mode's verdict. dnsperf's q/s over each second is put in the
 * window it lies in, the first second of each window left out (the switch
 * itself), then compared two ways: the median second with churn over the
 * median second without, and, per churn window, its median second over the
 * mean of the two quiet windows around it (drift slower than a few windows
 * cancels out there).
 */
function windowReport(perf: DnsperfResult, windows: readonly Window[]): string[] {
  const seconds = windows.map((w) => perf.intervals.filter((x) => x.at * 1000 - 1000 >= w.start + 1000 && x.at * 1000 <= w.end).map((x) => x.qps));
  const all = (k: Window['kind']): number[] => windows.flatMap((w, i) => (w.kind === k ? seconds[i]! : []));
  const quiet = all('no-churn');
  const churn = all('churn');
  const paired: number[] = [];
  windows.forEach((w, i) => {
    const around = [seconds[i - 1], seconds[i + 1]].filter((s): s is number[] => s !== undefined && s.length > 0).map(median);
    if (w.kind === 'churn' && seconds[i]!.length > 0 && around.length > 0) paired.push(median(seconds[i]!) / mean(around));
  });
  if (quiet.length === 0 || churn.length === 0) return [`windowed: too few whole seconds (${quiet.length} without churn, ${churn.length} with); use a longer --duration`];
  return [
    `windowed: ${windows.length} windows of ${(mean(windows.map((w) => w.end - w.start)) / 1000).toFixed(1)} s; ${quiet.length} seconds without churn, ${churn.length} with`,
    `median second without churn ${median(quiet).toFixed(0)} q/s, with churn ${median(churn).toFixed(0)} q/s: ratio ${(median(churn) / median(quiet)).toFixed(3)}`,
    `per churn window against the quiet windows around it: ${paired.map((x) => x.toFixed(2)).join(' ')}; median ${median(paired).toFixed(3)}`,
    `whole run ${perf.qps.toFixed(0)} q/s, lost ${perf.lostPct.toFixed(2)}%, avg ${perf.avgMs.toFixed(3)} ms, max ${perf.maxMs.toFixed(1)} ms`,
  ];
}

function fmtRun(label: string, r: RunResult): string {
  const base =
    `${label.padEnd(18)} ${r.perf.qps.toFixed(0).padStart(7)} q/s   lost ${r.perf.lostPct.toFixed(2).padStart(5)}%   ` +
    `avg ${r.perf.avgMs.toFixed(3).padStart(7)} ms   max ${r.perf.maxMs.toFixed(1).padStart(7)} ms   ` +
    `changes/s ${r.changesPerS.toFixed(1).padStart(7)}   loop delay p99 ${r.loopP99Ms.toFixed(0).padStart(5)} ms max ${r.loopMaxMs.toFixed(0).padStart(5)} ms`;
  if (r.kind === 'no-churn') return base;
  return `${base}   flip batches ${r.batchMs.length}, mean ${mean(r.batchMs).toFixed(1)} ms, max ${Math.max(0, ...r.batchMs).toFixed(1)} ms, overruns ${r.overruns}`;
}

async function main(): Promise<void> {
  const opts = options();
  const twoCpus = availableParallelism() >= 2;
  const pinned = opts.pin && twoCpus && pinSelf(0);

  const dir = mkdtempSync(join(tmpdir(), 'vigil-churn-'));
  let daemon: Daemon | undefined;
  let listeners: Server[] = [];
  let dnsperf: ChildProcess | undefined;
  let churner: Churner | undefined;
  const killDnsperf = (): void => {
    if (dnsperf !== undefined && dnsperf.exitCode === null && dnsperf.signalCode === null) dnsperf.kill('SIGKILL');
  };
  const shutdown = async (): Promise<void> => {
    killDnsperf();
    await churner?.stop().catch(() => undefined);
    // Bounded: an exit must not hang on a listener that will not close.
    await Promise.race([daemon?.close(), new Promise((r) => setTimeout(r, 5000).unref())]);
    for (const s of listeners) s.close();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', () => {
    killDnsperf();
    rmSync(dir, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: stopping dnsperf and the server\n`);
      void shutdown().finally(() => process.exit(130));
    });
  }

  try {
    let probePort = 0;
    if (opts.probe === 'tcp') {
      const l = await probeListeners();
      listeners = l.servers;
      probePort = l.port;
    }
    const setup = writeChurnSetup({ dir, services: opts.services, port: opts.port, probe: opts.probe, probePort });
    const log = pino({ level: 'error' }, process.stderr);

    const t0 = performance.now();
    daemon = await startDaemon(setup.configFile, log, { levelFixed: true });
    const started = performance.now() - t0;
    const port = daemon.server.addresses.udp[0]?.port;
    if (port === undefined) throw new Error('the daemon has no UDP listener');
    const engine = daemon.engine;

    let changes = 0;
    engine.on('answerChange', () => changes++);

    // Members start unknown (served as up); wait until their one probe has made them up,
    // so that change does not land in the first run.
    if (opts.probe === 'tcp') await waitUntilUp(() => engine.state(), 60_000);

    const out = (line: string): void => void process.stdout.write(`${line}\n`);
    out(
      `churn: ${opts.services} failover services, ${opts.flips} flips/s in ${opts.slices} slice(s), probe ${opts.probe}; ` +
        `${setup.queryLines} query lines (${setup.churnLines} for services); ${opts.durationS}s runs, ${opts.clients} clients, ${opts.rounds} rounds; ` +
        (pinned ? 'vigil on cpu 0, dnsperf on cpu 1' : 'unpinned') +
        `; daemon started in ${started.toFixed(0)} ms`,
    );

    const perfOpts = { port, queryFile: setup.queryFile, clients: opts.clients, ...(pinned ? { cpu: 1 } : {}) };
    const loop = monitorEventLoopDelay({ resolution: 10 });

    const run = async (kind: 'no-churn' | 'churn', durationS: number): Promise<RunResult> => {
      const c = kind === 'churn' && opts.flips > 0 ? new Churner(engine, setup.primaries.slice(0, opts.flips), { periodMs: 1000, slices: opts.slices }) : undefined;
      churner = c;
      const before = changes;
      loop.reset();
      loop.enable();
      const p = runDnsperf({ ...perfOpts, durationS });
      dnsperf = p.child;
      c?.start();
      try {
        const perf = await p.result;
        const during = changes - before;
        // libuv runs the histogram's timer only on the loop turn after a long block
        // (timers are compared with the time taken at the start of the turn), and
        // dnsperf's exit can be handled first: give that timer its turn.
        await new Promise((r) => setTimeout(r, 50));
        loop.disable();
        await c?.stop();
        return {
          kind,
          perf,
          changesPerS: during / durationS,
          loopMaxMs: loop.max / 1e6,
          loopP99Ms: loop.percentile(99) / 1e6,
          batchMs: c?.batchMs ?? [],
          overruns: c?.overruns ?? 0,
        };
      } finally {
        loop.disable();
        dnsperf = undefined;
        churner = undefined;
        // Let the clears of the last batch and their epoch claims land before the next run.
        await new Promise((r) => setTimeout(r, 1000));
      }
    };

    // JIT and first-answer encoding happen here, not in the first measured run.
    const warm = await run('no-churn', Math.min(2, opts.durationS));
    process.stderr.write(`warm-up ${warm.perf.qps.toFixed(0)} q/s (not counted)\n`);

    if (opts.windowS > 0) {
      const windows: Window[] = [];
      const p = runDnsperf({ ...perfOpts, durationS: opts.durationS, statsIntervalS: 1 });
      dnsperf = p.child;
      const done = p.result.then(
        () => true,
        () => true,
      );
      let finished = false;
      void done.then(() => (finished = true));
      for (let i = 0; !finished; i++) {
        const kind = i % 2 === 0 ? 'no-churn' : 'churn';
        const start = Date.now();
        const c = kind === 'churn' && opts.flips > 0 ? new Churner(engine, setup.primaries.slice(0, opts.flips), { periodMs: 1000, slices: opts.slices }) : undefined;
        churner = c;
        c?.start();
        await Promise.race([done, new Promise((r) => setTimeout(r, opts.windowS * 1000))]);
        await c?.stop();
        churner = undefined;
        windows.push({ kind, start, end: Date.now() });
      }
      dnsperf = undefined;
      for (const line of windowReport(await p.result, windows)) out(line);
      return;
    }

    const results: RunResult[] = [];
    for (let r = 1; r <= opts.rounds; r++) {
      for (const kind of ['no-churn', 'churn'] as const) {
        const res = await run(kind, opts.durationS);
        results.push(res);
        out(fmtRun(`run ${r} ${kind}`, res));
      }
    }

    const of = (k: RunResult['kind']): RunResult[] => results.filter((r) => r.kind === k);
    const q0 = median(of('no-churn').map((r) => r.perf.qps));
    const q1 = median(of('churn').map((r) => r.perf.qps));
    const summary = (k: RunResult['kind']): string => {
      const rs = of(k);
      return (
        `median ${k.padEnd(9)} ${median(rs.map((r) => r.perf.qps)).toFixed(0).padStart(7)} q/s   lost ${median(rs.map((r) => r.perf.lostPct)).toFixed(2).padStart(5)}%   ` +
        `avg ${median(rs.map((r) => r.perf.avgMs)).toFixed(3).padStart(7)} ms   max ${median(rs.map((r) => r.perf.maxMs)).toFixed(1).padStart(7)} ms   ` +
        `changes/s ${median(rs.map((r) => r.changesPerS)).toFixed(1).padStart(7)}`
      );
    };
    out(summary('no-churn'));
    out(summary('churn'));
    out(`ratio churn/no-churn throughput ${(q1 / q0).toFixed(3)}`);
    // Each churn run against the no-churn run just before it: on a machine whose speed drifts
    // (a shared VM), the pairs are steadier than the medians of runs minutes apart.
    const pairs = of('churn').map((c, i) => c.perf.qps / of('no-churn')[i]!.perf.qps);
    out(`per round ${pairs.map((x) => x.toFixed(2)).join(' ')}, median ${median(pairs).toFixed(3)}`);
    const batches = of('churn').flatMap((r) => r.batchMs);
    if (batches.length > 0) {
      const m = mean(batches);
      out(`flip batches: ${batches.length} of ${opts.flips} flips, mean ${m.toFixed(1)} ms per batch (${((m * 1000) / Math.max(1, opts.flips)).toFixed(1)} µs per flip), max ${Math.max(...batches).toFixed(1)} ms`);
    }
  } finally {
    await shutdown();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    if (err instanceof UsageError) process.stderr.write(`${err.message}\n${USAGE}\n`);
    else process.stderr.write(`churn bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    if (err instanceof DnsperfFailed) process.stderr.write(`dnsperf said:\n${err.output}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
