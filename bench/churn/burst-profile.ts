// Where a burst of health flips goes on the serving thread, in-process and
// without dnsperf (the machine has two cores; dnsperf runs belong to churn.ts).
// It starts the churn bench's daemon (same config, startDaemon, so metrics, the
// drain tracker and the answer-change handlers are wired) and, once a second,
// flips the primaries the way churn.ts does: all forced down, the next second
// all cleared. Per second it reports
//   - flips: wall time from the first call to the last promise resolved,
//   - busy: the event loop's active time over the whole second, less this
//     harness's own memo pass: everything a query would have waited behind,
//     the epoch claims and the gauge refresh that follow a burst included,
//   - cpu: CPU time of the serving (main) thread over the second, less the
//     memo pass, from /proc (Linux); unlike busy, time the thread waited for
//     a CPU taken by other processes of a loaded machine does not count, so
//     it is the steadier figure to compare builds with,
//   - proc: the same for the whole process (GC helper threads included),
//   - block: the longest single stretch without a turn of the loop,
//   - refill: one pass over every distinct question of the bench's query file
//     through respond() right after the snapshot swap, less the same pass
//     again (all from the memo then): what the first queries after a swap pay
//     to encode the answers the new snapshot's memo does not hold (an upper
//     bound: real load may not ask every name before the next swap).
// Seconds without flips come first: their busy time (the divergence check's
// update and the gauge refresh it triggers) is the baseline.
//
//   npm run build && node dist/bench/churn/burst-profile.js                 # 10 bursts of 1000
//   node dist/bench/churn/burst-profile.js --slices 10                      # 10 bursts of 100 a second
//   node dist/bench/churn/burst-profile.js --profile /tmp/burst.cpuprofile  # plus a CPU profile of 10 more seconds
//
// The profile is taken in-process (node:inspector), over churn seconds run
// without the memo pass, so it shows the engine's share alone; the file opens
// in Chrome DevTools like one from `node --cpu-prof`.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import type { Profiler } from 'node:inspector';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import packet from 'dns-packet';
import { pino } from 'pino';
import { startDaemon, type Daemon } from '../../server/daemon.js';
import { newQueryInfo, respond } from '../../server/answer/respond.js';
import type { Engine } from '../../server/engine.js';
import { CHURN_OPTIONS, churnArgs, probeListeners, waitUntilUp, writeChurnSetup, type ChurnProbe } from './setup.js';
import { intArg, UsageError } from '../args.js';

const USAGE = `usage: node dist/bench/churn/burst-profile.js [options]
  --services N   failover services in churn.test. (1000)
  --flips N      members flipped each second, one per service (all of them)
  --slices N     each second's flips in N bursts spread over the second (1)
  --seconds N    churn seconds measured (10)
  --idle N       seconds without flips measured first, the baseline (3)
  --probe P      tcp (as churn.ts: a 1h-interval check of local listeners) or none (tcp)
  --no-refill    skip the memo pass after each burst
  --profile FILE also profile --seconds more churn seconds and write the profile to FILE
  --top N        functions listed from the profile (25)`;

interface Options {
  readonly services: number;
  readonly flips: number;
  readonly slices: number;
  readonly seconds: number;
  readonly idle: number;
  readonly probe: ChurnProbe;
  readonly refill: boolean;
  readonly profile: string | undefined;
  readonly top: number;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      ...CHURN_OPTIONS,
      seconds: { type: 'string' },
      idle: { type: 'string' },
      'no-refill': { type: 'boolean', default: false },
      profile: { type: 'string' },
      top: { type: 'string' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const { services, flips, slices, probe } = churnArgs(values, (n) => n, 1);
  return {
    services,
    flips,
    slices,
    seconds: intArg(values.seconds, 'seconds', 10, 1),
    idle: intArg(values.idle, 'idle', 3, 0),
    probe,
    refill: values['no-refill'] !== true,
    profile: values.profile,
    top: intArg(values.top, 'top', 25, 1),
  };
}

interface Second {
  readonly flipMs: number;
  readonly busyMs: number;
  readonly cpuMs: number;
  readonly procMs: number;
  readonly blockMs: number;
  readonly refillMs: number;
  readonly changes: number;
}

/** CPU time of this process's main thread so far, in ms (Linux /proc; NaN elsewhere). */
function mainThreadCpuMs(): number {
  try {
    // First field: time spent on a CPU, in ns.
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return NaN;
  }
}

const sleepUntil = (t: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, t - performance.now())));
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Query packets for every distinct (name, type) of the query file, as dnsperf would send them (EDNS, RD). */
function questions(queryFile: string): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  for (const line of readFileSync(queryFile, 'utf8').split('\n')) {
    const [name, type] = line.trim().split(/\s+/);
    if (name === undefined || name === '' || type === undefined) continue;
    const key = `${name.toLowerCase()} ${type}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(
      packet.encode({
        type: 'query',
        id: out.length & 0xffff,
        flags: packet.RECURSION_DESIRED,
        questions: [{ name: name.replace(/\.$/, ''), type: type as 'A' }],
        additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as never],
      }),
    );
  }
  return out;
}

function stats(xs: readonly number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  const med = s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return `mean ${mean.toFixed(1).padStart(6)}  median ${med.toFixed(1).padStart(6)}  max ${(s[s.length - 1] ?? NaN).toFixed(1).padStart(6)}`;
}

/** Self time per function (name, file, line), biggest first, idle time left out of the total. */
function topSelf(profile: Profiler.Profile, top: number): string[] {
  const byId = new Map<number, Profiler.ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  const selfUs = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let total = 0;
  for (let i = 0; i < samples.length; i++) {
    const node = byId.get(samples[i]!);
    // The delta before sample i+1 is the time spent in sample i.
    const us = deltas[i + 1] ?? 0;
    if (node === undefined || node.callFrame.functionName === '(idle)') continue;
    const cf = node.callFrame;
    const file = cf.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/');
    const key = `${cf.functionName || '(anonymous)'}  ${file}${file !== '' ? `:${cf.lineNumber + 1}` : ''}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + us);
    total += us;
  }
  const rows = [...selfUs].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [
    `profile: ${(total / 1000).toFixed(0)} ms not idle; top ${rows.length} by self time`,
    ...rows.map(([k, us]) => `${(us / 1000).toFixed(1).padStart(8)} ms ${((100 * us) / Math.max(1, total)).toFixed(1).padStart(5)}%  ${k}`),
  ];
}

async function main(): Promise<void> {
  const opts = options();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-burst-'));
  let daemon: Daemon | undefined;
  let listeners: Server[] = [];
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  try {
    let probePort = 0;
    if (opts.probe === 'tcp') {
      const l = await probeListeners();
      listeners = l.servers;
      probePort = l.port;
    }
    const setup = writeChurnSetup({ dir, services: opts.services, port: 0, probe: opts.probe, probePort });
    const t0 = performance.now();
    daemon = await startDaemon(setup.configFile, pino({ level: 'error' }, process.stderr), { levelFixed: true });
    const started = performance.now() - t0;
    const engine: Engine = daemon.engine;
    if (opts.probe === 'tcp') await waitUntilUp(() => engine.state(), 60_000);
    let changes = 0;
    engine.on('answerChange', () => changes++);

    const qs = questions(setup.queryFile);
    const info = newQueryInfo();
    const pass = (): number => {
      const snap = engine.current();
      const s = performance.now();
      for (const q of qs) respond(q, q.length, snap, 'udp', '127.0.0.1', info);
      return performance.now() - s;
    };
    // JIT, and a memo full of the current snapshot's answers.
    for (let i = 0; i < 20; i++) pass();
    const warm: number[] = [];
    for (let i = 0; i < 10; i++) warm.push(pass());
    const warmMs = Math.min(...warm);

    const members = setup.primaries.slice(0, opts.flips);
    const size = Math.ceil(members.length / opts.slices);
    let down = false;
    const delay = monitorEventLoopDelay({ resolution: 1 });

    const second = async (flip: boolean, refill: boolean): Promise<Second> => {
      const start = performance.now();
      const elu0 = performance.eventLoopUtilization();
      const cpu0 = process.cpuUsage();
      const thread0 = mainThreadCpuMs();
      const changes0 = changes;
      delay.reset();
      delay.enable();
      let flipMs = 0;
      let refillMs = 0;
      let passMs = 0;
      for (let s = 0; flip && s < opts.slices; s++) {
        await sleepUntil(start + (s * 1000) / opts.slices);
        const part = members.slice(s * size, (s + 1) * size);
        const f0 = performance.now();
        // Issued together and awaited together, as churner.ts does.
        if (down) await Promise.all(part.map((m) => engine.clearOverride(m, 'bench:burst', 'burst profile')));
        else await Promise.all(part.map((member) => engine.setOverride({ member, action: 'force_down', reason: 'burst profile', by: 'bench:burst' })));
        flipMs += performance.now() - f0;
        if (refill) {
          // Its own turn, so the block column shows the engine's stretch and this one apart.
          await turn();
          const cold = pass();
          // The same pass again, all from the memo now: the difference is what the swap cost.
          const warm = pass();
          passMs += cold + warm;
          refillMs += Math.max(0, cold - warm);
        }
      }
      if (flip) down = !down;
      await sleepUntil(start + 1000);
      const elu = performance.eventLoopUtilization(elu0);
      const cpu = process.cpuUsage(cpu0);
      const thread = mainThreadCpuMs() - thread0;
      delay.disable();
      return { flipMs, busyMs: elu.active - passMs, cpuMs: thread - passMs, procMs: (cpu.user + cpu.system) / 1000 - passMs, blockMs: delay.max / 1e6, refillMs, changes: changes - changes0 };
    };

    out(
      `burst-profile: ${opts.services} failover services, ${opts.flips} flips a second in ${opts.slices} burst(s) of ${size}, probe ${opts.probe}; ` +
        `daemon started in ${started.toFixed(0)} ms; memo pass: ${qs.length} distinct questions, ${warmMs.toFixed(1)} ms warm`,
    );
    const idle: Second[] = [];
    for (let i = 0; i < opts.idle; i++) idle.push(await second(false, false));
    const idleBusy = idle.map((s) => s.busyMs);
    if (idle.length > 0) {
      out(`idle seconds: ${idle.length}`);
      out(`  busy ms  ${stats(idleBusy)}`);
      out(`  cpu ms   ${stats(idle.map((s) => s.cpuMs))}`);
      out(`  proc ms  ${stats(idle.map((s) => s.procMs))}`);
      out(`  block ms ${stats(idle.map((s) => s.blockMs))}`);
    }

    // One unmeasured second each way: the first flips pay for JIT.
    await second(true, false);
    await second(true, false);
    const seconds: Second[] = [];
    for (let i = 0; i < opts.seconds; i++) {
      const s = await second(true, opts.refill);
      seconds.push(s);
      out(
        `second ${String(i + 1).padStart(2)} ${(down ? 'down ' : 'clear').padEnd(5)}  flips ${s.flipMs.toFixed(1).padStart(7)} ms  busy ${s.busyMs.toFixed(1).padStart(7)} ms  ` +
          `cpu ${s.cpuMs.toFixed(1).padStart(7)} ms  block ${s.blockMs.toFixed(1).padStart(6)} ms` +
          (opts.refill ? `  refill ${s.refillMs.toFixed(1).padStart(6)} ms` : '') +
          `  changes ${s.changes}`,
      );
    }
    const meanOf = (xs: readonly number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
    const idleBusyMean = meanOf(idleBusy);
    const idleCpuMean = meanOf(idle.map((s) => s.cpuMs));
    const idleProcMean = meanOf(idle.map((s) => s.procMs));
    out(`churn seconds: ${seconds.length}`);
    out(`  flips ms  ${stats(seconds.map((s) => s.flipMs))}`);
    out(`  busy ms   ${stats(seconds.map((s) => s.busyMs))}   less the idle second's ${idleBusyMean.toFixed(1)}: ${stats(seconds.map((s) => s.busyMs - idleBusyMean))}`);
    out(`  cpu ms    ${stats(seconds.map((s) => s.cpuMs))}   less the idle second's ${idleCpuMean.toFixed(1)}: ${stats(seconds.map((s) => s.cpuMs - idleCpuMean))}`);
    out(`  proc ms   ${stats(seconds.map((s) => s.procMs))}   less the idle second's ${idleProcMean.toFixed(1)}: ${stats(seconds.map((s) => s.procMs - idleProcMean))}`);
    out(`  block ms  ${stats(seconds.map((s) => s.blockMs))}`);
    if (opts.refill) out(`  refill ms ${stats(seconds.map((s) => s.refillMs))}`);

    if (opts.profile !== undefined) {
      const session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 100 });
      await session.post('Profiler.start');
      for (let i = 0; i < opts.seconds; i++) await second(true, false);
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      writeFileSync(opts.profile, JSON.stringify(profile));
      out(`profile of ${opts.seconds} churn seconds written to ${opts.profile}`);
      for (const line of topSelf(profile, opts.top)) out(line);
    }
  } finally {
    await Promise.race([daemon?.close(), new Promise((r) => setTimeout(r, 5000).unref())]);
    for (const s of listeners) s.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    if (err instanceof UsageError) process.stderr.write(`${err.message}\n${USAGE}\n`);
    else process.stderr.write(`burst-profile failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
