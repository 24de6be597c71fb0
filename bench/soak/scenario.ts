// The soak, shared by test/soak.test.ts (bounded, in CI) and bench/soak/soak.ts
// (long, on demand): the real `vigil serve` as a child process, HTTP backends
// flipping up and down so that probes flap and answers change, a steady
// query load with one retry per query, a config rewritten and reloaded with
// SIGHUP every couple of seconds (once with a broken config that must be
// refused while the old one keeps serving), and the child's memory sampled
// throughout. It reports; the callers decide what passes.

import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backend, type Backend } from '../../test/helpers/backend.js';
import { query } from '../../test/helpers/dnsclient.js';
import { ChildRegistry, type Child } from '../drill/procs.js';
import { freePort, sleep, waitFor } from '../drill/net.js';
import { builtVigil, repoRoot } from '../drill/vigil.js';
import { configYaml, MEMBER_ADDRESSES, SOAK_ZONE, writeZoneFiles, type ConfigPorts } from './config.js';
import { LoadStats, TcpLoad, UdpLoad, type FailureExample } from './load.js';
import { memoryVerdict, metricValue, mib, readRss, type MemorySample, type MemoryVerdict } from './memory.js';
import { generationOf, type GenerationWindow } from './queries.js';

export interface SoakOptions {
  readonly durationMs: number;
  /** UDP queries per second. */
  readonly rate: number;
  /** TCP queries per second (batches of 5 on fresh connections). */
  readonly tcpRate: number;
  /** Default 2000. */
  readonly reloadEveryMs?: number;
  /** Backends change state on this beat. Default 1000. */
  readonly flipEveryMs?: number;
  /** Share of the run before memory growth counts. Default 0.3. */
  readonly warmupShare?: number;
  /** Default 1000. */
  readonly sampleEveryMs?: number;
  /** Per try; each query gets one retry. Default 2000. */
  readonly timeoutMs?: number;
  /** UDP client sockets, each on its own loopback address. Default 8. */
  readonly clients?: number;
  /** `node <cli> serve`; default this checkout's dist/cli/vigil.js. */
  readonly cli?: string;
  /** Progress lines, every `progressEveryMs` (default: none). */
  readonly progress?: (line: string) => void;
  readonly progressEveryMs?: number;
  /** Keep the temp dir (config, Vigil's log) even when nothing went wrong. */
  readonly keep?: boolean;
}

export interface ReloadReport {
  /** Reloads planned: one every reloadEveryMs over the duration, the broken one included. */
  readonly planned: number;
  /** Valid configs written and signalled (generation 0 is the start-up config and not counted). */
  readonly valid: number;
  /** Of those, how many the metrics confirmed as loaded. */
  readonly confirmed: number;
  /** The broken config was signalled and vigil_config_reloads_total{result="failure"} went up. */
  readonly brokenRefused: boolean;
  /** The generation served right after the broken config was refused, and the one that was loaded before it. */
  readonly servedAfterBroken: number | undefined;
  readonly loadedBeforeBroken: number | undefined;
  /** The generation served at the end, and the newest written. */
  readonly finalServed: number | undefined;
  readonly finalWritten: number;
  readonly metricSuccess: number | undefined;
  readonly metricFailure: number | undefined;
  readonly problems: readonly string[];
}

export interface SoakResult {
  readonly durationMs: number;
  /** How long the load actually ran (longer than durationMs when reloads lagged). */
  readonly elapsedMs: number;
  readonly rate: number;
  readonly tcpRate: number;
  readonly warmupShare: number;
  readonly load: {
    readonly sent: number;
    readonly ok: number;
    readonly failed: number;
    readonly retried: number;
    readonly late: number;
    readonly skipped: number;
    readonly tcpQueries: number;
    readonly byKind: Readonly<Record<string, { sent: number; ok: number }>>;
    readonly failures: Readonly<Record<string, number>>;
    readonly examples: readonly FailureExample[];
  };
  /** Per service: distinct answers served (sorted addresses) and how often. */
  readonly services: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** Backend state changes made. */
  readonly flips: number;
  /** Sum of vigil_answer_changes_total at the end. */
  readonly answerChanges: number | undefined;
  readonly reloads: ReloadReport;
  readonly memory: { readonly samples: readonly MemorySample[]; readonly verdict: MemoryVerdict | undefined };
  /** Vigil was still running when the load stopped. */
  readonly vigilAlive: boolean;
  /** Why the run stopped early, if it did. */
  readonly aborted: string | undefined;
  readonly warnings: readonly string[];
  /** The temp dir with the config and Vigil's log, when kept. */
  readonly keptDir: string | undefined;
  /** The last lines of Vigil's log. */
  readonly vigilLogTail: string;
}

const HOST = '127.0.0.1';

async function scrape(port: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://${HOST}:${port}/metrics`, { signal: AbortSignal.timeout(3000) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

/** The generation gen.soak.test answers with now (one UDP query, c-ares-free, decoded by dns-packet). */
async function servedGeneration(port: number): Promise<number | undefined> {
  try {
    const r = await query(port, { qname: `gen.${SOAK_ZONE}`, qtype: 'TXT' }, { host: HOST, timeoutMs: 2000 });
    const g = generationOf(r.raw);
    return g >= 0 ? g : undefined;
  } catch {
    return undefined;
  }
}

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const reloadEveryMs = o.reloadEveryMs ?? 2000;
  const flipEveryMs = o.flipEveryMs ?? 1000;
  const warmupShare = o.warmupShare ?? 0.3;
  const sampleEveryMs = o.sampleEveryMs ?? 1000;
  const timeoutMs = o.timeoutMs ?? 2000;
  const clientCount = o.clients ?? 8;
  const say = o.progress ?? ((): void => {});
  const warnings: string[] = [];
  const root = repoRoot();
  let cli = o.cli;
  if (cli === undefined) {
    const built = builtVigil(root);
    cli = built.cli;
    if (built.warning !== undefined) warnings.push(built.warning);
  }

  const registry = new ChildRegistry();
  registry.guard();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-soak-'));
  const backends: Backend[] = [];
  let failedRun = true;
  try {
    for (const address of MEMBER_ADDRESSES) {
      const b = backend(address);
      await b.start();
      backends.push(b);
    }
    const ports: ConfigPorts = {
      dns: await freePort(HOST),
      metrics: await freePort(HOST),
      backends: new Map(backends.map((b) => [b.host, b.port])),
    };
    writeZoneFiles(dir, root);
    const configFile = join(dir, 'vigil.yaml');
    // Replaced whole by a rename, as an editor or a config manager would, so a reload never reads half a file.
    const writeConfig = (text: string): void => {
      writeFileSync(`${configFile}.new`, text);
      renameSync(`${configFile}.new`, configFile);
    };
    writeConfig(configYaml(ports, 0));
    // Standalone whatever the caller's environment says ($VIGIL_REDIS_URL would make it replicate).
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIGIL_')));
    const child = registry.spawn('vigil', process.execPath, [cli, 'serve', '--config', configFile], join(dir, 'vigil.log'), env);
    await waitFor(
      'Vigil answering DNS and metrics',
      async () => {
        if (child.exited !== undefined) throw new Error(`vigil exited (${JSON.stringify(child.exited)}) before answering:\n${child.tail()}`);
        return (await servedGeneration(ports.dns)) === 0 && (await scrape(ports.metrics)) !== undefined;
      },
      30_000,
      200,
    );
    const pid = child.process.pid!;
    say(`vigil pid ${pid} on ${HOST}:${ports.dns}, metrics :${ports.metrics}; ${o.rate} UDP q/s + ${o.tcpRate} TCP q/s for ${(o.durationMs / 1000).toFixed(0)} s`);

    const t0 = Date.now();
    const window: { written: number; confirmed: number } = { written: 0, confirmed: 0 };
    const view = (): GenerationWindow => window;
    const stats = new LoadStats(t0);
    const clients = Array.from({ length: clientCount }, (_, i) => `127.77.1.${i + 1}`);
    const udp = new UdpLoad({ host: HOST, port: ports.dns, clients, rate: o.rate, timeoutMs, window: view }, stats);
    const tcp = new TcpLoad({ host: HOST, port: ports.dns, rate: o.tcpRate, batch: 5, timeoutMs, window: view }, stats);

    // Backends: member i changes state every 1, 2 or 3 beats, so that every
    // service sees members come and go, sometimes all at once (fail open).
    let flips = 0;
    let beat = 0;
    const flipper = setInterval(() => {
      beat++;
      backends.forEach((b, i) => {
        if ((beat + i) % (1 + (i % 3)) === 0) {
          b.mode = b.mode === 'ok' ? '503' : 'ok';
          flips++;
        }
      });
    }, flipEveryMs);

    const samples: MemorySample[] = [];
    let aborted: string | undefined;
    let lastProgress = 0;
    const sampleOnce = async (): Promise<void> => {
      if (child.exited !== undefined) {
        aborted ??= `vigil exited (${JSON.stringify(child.exited)})`;
        return;
      }
      let rss: number;
      try {
        rss = readRss(pid);
      } catch (err) {
        aborted ??= (err as Error).message;
        return;
      }
      const text = await scrape(ports.metrics);
      const metric = (name: string): number | undefined => (text === undefined ? undefined : metricValue(text, name));
      const heap = metric('vigil_nodejs_heap_size_used_bytes');
      const atMs = Date.now() - t0;
      samples.push({ atMs, rssBytes: rss, heapUsedBytes: heap, heapTotalBytes: metric('vigil_nodejs_heap_size_total_bytes'), externalBytes: metric('vigil_nodejs_external_memory_bytes') });
      if (o.progressEveryMs !== undefined && atMs - lastProgress >= o.progressEveryMs) {
        lastProgress = atMs;
        say(`${(atMs / 1000).toFixed(0)} s: ${stats.sent} queries, ${stats.ok} ok, ${stats.failed} failed, ${stats.retried} retried; RSS ${mib(rss)}${heap === undefined ? '' : `, heap used ${mib(heap)}`}`);
      }
    };
    let sampling = Promise.resolve();
    const sampler = setInterval(() => {
      sampling = sampling.then(sampleOnce);
    }, sampleEveryMs);

    // Reloads: valid configs alternate variants A and B with a new generation
    // each; the middle one is broken instead.
    const reloadCount = Math.max(1, Math.floor(o.durationMs / reloadEveryMs) - 1);
    const brokenAt = Math.max(1, Math.floor(reloadCount / 2));
    const problems: string[] = [];
    let valid = 0;
    let confirmed = 0;
    let brokenRefused = false;
    let servedAfterBroken: number | undefined;
    let loadedBeforeBroken: number | undefined;
    let stopReloads = false;
    const counter = async (result: 'success' | 'failure'): Promise<number | undefined> => {
      const text = await scrape(ports.metrics);
      return text === undefined ? undefined : metricValue(text, 'vigil_config_reloads_total', `result="${result}"`);
    };
    const reloader = (async (): Promise<void> => {
      for (let k = 1; k <= reloadCount && !stopReloads; k++) {
        // On a fixed beat from the start, so that waiting for each confirmation does not stretch the schedule.
        await sleep(Math.max(0, t0 + k * reloadEveryMs - Date.now()));
        if (stopReloads || child.exited !== undefined) return;
        const broken = k === brokenAt;
        const which = broken ? 'failure' : 'success';
        const before = (await counter(which)) ?? 0;
        if (broken) writeConfig(configYaml(ports, window.written + 1, true));
        else {
          window.written++;
          writeConfig(configYaml(ports, window.written));
          valid++;
        }
        child.process.kill('SIGHUP');
        const seen = await waitFor('reload counted', async () => ((await counter(which)) ?? 0) > before, 15_000, 100).then(
          () => true,
          () => false,
        );
        if (broken) {
          brokenRefused = seen;
          if (!seen) problems.push('the broken config was not counted as a refused reload within 15 s');
          loadedBeforeBroken = window.confirmed;
          servedAfterBroken = await servedGeneration(ports.dns);
          if (servedAfterBroken !== window.confirmed) problems.push(`after the broken config, generation ${String(servedAfterBroken)} was served, not ${window.confirmed}`);
        } else if (seen) {
          confirmed++;
          window.confirmed = window.written;
        } else problems.push(`generation ${window.written} was not counted as loaded within 15 s`);
      }
    })();

    let reloadsDone = false;
    void reloader.then(() => (reloadsDone = true));

    await udp.start();
    tcp.start();
    // The load runs for the duration and, on a slow machine, until every
    // planned reload has been made (at most three times the duration), so
    // that each run checks the same reloads.
    const busy = (): boolean => Date.now() - t0 < o.durationMs || (!reloadsDone && Date.now() - t0 < 3 * o.durationMs);
    while (busy() && aborted === undefined) await sleep(100);
    const elapsedMs = Date.now() - t0;
    const vigilAlive = child.exited === undefined;
    stopReloads = true;
    await reloader;
    clearInterval(flipper);
    await Promise.all([udp.stop(), tcp.stop()]);
    clearInterval(sampler);
    await sampling;

    const finalServed = await servedGeneration(ports.dns);
    const text = await scrape(ports.metrics);
    let answerChanges: number | undefined;
    if (text !== undefined) {
      answerChanges = 0;
      for (const line of text.split('\n')) if (line.startsWith('vigil_answer_changes_total{')) answerChanges += Number(line.split(' ').at(-1));
    }
    const reloads: ReloadReport = {
      planned: reloadCount,
      valid,
      confirmed,
      brokenRefused,
      servedAfterBroken,
      loadedBeforeBroken,
      finalServed,
      finalWritten: window.written,
      metricSuccess: text === undefined ? undefined : metricValue(text, 'vigil_config_reloads_total', 'result="success"'),
      metricFailure: text === undefined ? undefined : metricValue(text, 'vigil_config_reloads_total', 'result="failure"'),
      problems,
    };
    const services: Record<string, Record<string, number>> = {};
    for (const [name, m] of stats.serviceAnswers) services[name] = Object.fromEntries(m);
    const result: SoakResult = {
      durationMs: o.durationMs,
      elapsedMs,
      rate: o.rate,
      tcpRate: o.tcpRate,
      warmupShare,
      load: {
        sent: stats.sent,
        ok: stats.ok,
        failed: stats.failed,
        retried: stats.retried,
        late: stats.late,
        skipped: stats.skipped,
        tcpQueries: stats.tcpQueries,
        byKind: Object.fromEntries(stats.byKind),
        failures: Object.fromEntries(stats.failures),
        examples: stats.examples,
      },
      services,
      flips,
      answerChanges,
      reloads,
      memory: { samples, verdict: memoryVerdict(samples, o.durationMs, warmupShare) },
      vigilAlive,
      aborted,
      warnings,
      keptDir: undefined,
      vigilLogTail: '',
    };
    failedRun = aborted !== undefined || !vigilAlive || stats.failed > 0 || problems.length > 0;
    return await finish(result, child);
  } finally {
    await registry.stopAll();
    registry.release();
    for (const b of backends) await b.stop();
    if (!failedRun && o.keep !== true) rmSync(dir, { recursive: true, force: true });
    else say(`kept ${dir} (config and vigil.log)`);
  }

  async function finish(r: SoakResult, child: Child): Promise<SoakResult> {
    await registry.stopAll();
    const kept = failedRun || o.keep === true;
    return { ...r, keptDir: kept ? dir : undefined, vigilLogTail: child.tail(30) };
  }
}
