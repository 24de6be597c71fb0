// The drill itself: backends, Vigil, unbound resolvers and clients on
// loopback; warm up, kill the primary, watch traffic drain to the secondary,
// and build the timeline. Everything started here is stopped here, whatever
// happens (see procs.ts for signals).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LoggingBackend } from './backend.js';
import { ClientFleet } from './clients.js';
import { freePort, sleep, waitFor } from './net.js';
import { ChildFailed, ChildRegistry, type Child } from './procs.js';
import { buildTimeline, settledOnSecondary, type Poll, type Timeline } from './timeline.js';
import { checkUnboundInstalled, startUnbound, type RunningUnbound } from './unbound.js';
import { builtVigil, READY_ADDRESS, READY_NAME, repoRoot, SERVICE, startVigil, ZONE_ORIGIN, type AdminClient } from './vigil.js';

export const PRIMARY = '127.0.0.2';
export const SECONDARY = '127.0.0.3';

export interface DrillOptions {
  /** The service's ttl (s): what resolvers cache before the change. */
  readonly ttl: number;
  readonly resolvers: number;
  /** Clients per resolver. */
  readonly clients: number;
  /** Progress lines (start-up, warm-up, kill); default: none. */
  readonly progress?: (line: string) => void;
  /** Keep the temp dir (configs, logs) even when the drill completed. */
  readonly keep?: boolean;
  /** The script run as `node <vigilCli> serve --config FILE`; default: this checkout's dist/cli/vigil.js. */
  readonly vigilCli?: string;
}

export interface DrillResult {
  /** True when all client traffic reached the secondary and stayed there for HOLD_MS. */
  readonly ok: boolean;
  readonly failure: string | null;
  readonly timeline: Timeline | null;
  readonly warnings: readonly string[];
  /** The temp dir with configs and logs, when kept (on failure, or with `keep`). */
  readonly keptDir: string | null;
  readonly options: DrillOptions;
}

export class DrillOptionError extends Error {
  override name = 'DrillOptionError';
}

export class DrillAborted extends Error {
  override name = 'DrillAborted';
}

/** How long traffic must stay on the secondary before the drill calls it moved. */
export const HOLD_MS = 2000;
const POLL_MS = 100;

export function checkOptions(o: DrillOptions): void {
  const int = (name: string, v: number, lo: number, hi: number): void => {
    if (!Number.isInteger(v) || v < lo || v > hi) throw new DrillOptionError(`--${name} must be a whole number from ${lo} to ${hi}, got ${v}`);
  };
  int('ttl', o.ttl, 1, 3600);
  // Resolvers live on 127.0.0.11 upwards; 40 keeps them below 127.0.0.51.
  int('resolvers', o.resolvers, 1, 40);
  int('clients', o.clients, 1, 50);
}

/** Polls /state and /drain every POLL_MS into `polls` until stopped. */
class Poller {
  readonly polls: Poll[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly admin: AdminClient) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        await this.once();
        await sleep(POLL_MS);
      }
    })();
  }

  async once(): Promise<Poll> {
    const sent = Date.now();
    // A failed poll (a busy machine, Vigil restarting) is recorded as seeing nothing.
    const [service, drain] = await Promise.all([this.admin.service(SERVICE).catch(() => undefined), this.admin.drain(SERVICE).catch(() => undefined)]);
    const poll: Poll = { sent, received: Date.now(), service, drain };
    this.polls.push(poll);
    return poll;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

function assertAlive(children: readonly Child[]): void {
  for (const c of children) {
    if (c.exited !== undefined) throw new ChildFailed(c.name, `exited during the drill (${JSON.stringify(c.exited)}); last lines of its log:\n${c.tail(5)}`, c.logFile);
  }
}

export async function runDrill(options: DrillOptions): Promise<DrillResult> {
  checkOptions(options);
  const say = options.progress ?? ((): void => {});
  const warnings: string[] = [];
  checkUnboundInstalled();
  const { cli, warning } = options.vigilCli !== undefined ? { cli: options.vigilCli, warning: undefined } : builtVigil(repoRoot());
  if (warning !== undefined) {
    warnings.push(warning);
    say(`warning: ${warning}`);
  }

  const registry = new ChildRegistry();
  registry.guard();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-drill-'));
  if (options.keep !== true) registry.onInterrupt(() => rmSync(dir, { recursive: true, force: true }));
  const primary = new LoggingBackend('primary', PRIMARY);
  let secondary: LoggingBackend | undefined;
  let fleet: ClientFleet | undefined;
  let poller: Poller | undefined;
  let failure: string | null = null;
  let timeline: Timeline | null = null;
  let ok = false;
  try {
    await primary.start();
    // Same port on both addresses: one probe port in the service, as in a real pool.
    secondary = new LoggingBackend('secondary', SECONDARY, primary.port);
    await secondary.start();
    const dnsPort = await freePort('127.0.0.1');
    let adminPort = await freePort('127.0.0.1');
    while (adminPort === dnsPort) adminPort = await freePort('127.0.0.1');
    say(`backends on ${PRIMARY}:${primary.port} and ${SECONDARY}:${secondary.port}; starting Vigil (DNS 127.0.0.1:${dnsPort}, admin 127.0.0.1:${adminPort}); logs in ${dir}`);

    const vigil = await startVigil(registry, cli, { dir, dnsPort, adminPort, backendPort: primary.port, ttl: options.ttl });
    const children: Child[] = [vigil.child];
    // Both members probed up and the settle window of the start-up over, so
    // resolvers cache the steady TTL, the one the drill is about.
    let last = '';
    await waitFor(
      'both members up and the steady TTL served',
      async () => {
        assertAlive(children);
        const s = await vigil.admin.service(SERVICE);
        last = `answer ${s.answer}, ttl ${s.ttl}, members ${s.members.map((m) => `${m.name}=${m.status}`).join(' ')}`;
        return s.members.length >= 2 && s.members.every((m) => m.status === 'up') && s.ttl === options.ttl && !s.degraded && s.answer.includes(PRIMARY);
      },
      20_000,
      POLL_MS,
      () => last,
    );

    say(`starting ${options.resolvers} unbound resolvers`);
    const resolvers: RunningUnbound[] = await Promise.all(
      Array.from({ length: options.resolvers }, (_, i) => startUnbound(registry, i + 1, dir, ZONE_ORIGIN, dnsPort, READY_NAME, READY_ADDRESS)),
    );
    children.push(...resolvers.map((r) => r.child));

    poller = new Poller(vigil.admin);
    // At least one poll before T0, however short the warm-up: it holds the answer to compare with.
    await poller.once();
    poller.start();

    // Resolver i's clients start (i-1)/N of a TTL after the first's, so the
    // resolvers' caches expire at different moments after the kill, as those
    // of resolvers that fetched at different times do.
    fleet = new ClientFleet(SERVICE.replace(/\.$/, ''), primary.port);
    const staggerMs = (options.ttl * 1000) / options.resolvers;
    let id = 0;
    for (const r of resolvers) {
      for (let c = 0; c < options.clients; c++) fleet.start({ id: id++, resolver: r.setup.index, server: r.server }, (r.setup.index - 1) * staggerMs);
    }
    const total = options.resolvers * options.clients;
    say(`warming up: ${total} clients${options.resolvers > 1 ? `, resolvers started ${(staggerMs / 1000).toFixed(1)} s apart` : ''}`);
    const f = fleet;
    await waitFor(
      'every client has reached the primary',
      () => {
        assertAlive(children);
        return f.reachedCount(PRIMARY) === total;
      },
      (options.resolvers - 1) * staggerMs + 20_000,
      50,
      () => `${f.reachedCount(PRIMARY)} of ${total}; last errors: ${f.attempts.filter((a) => a.outcome !== 'ok').slice(-3).map((a) => a.error).join(', ')}`,
    );
    if (f.reachedCount(SECONDARY) > 0) throw new DrillAborted('some client reached the secondary before the kill: the drill would not measure a failover');

    const t0 = Date.now();
    await primary.kill();
    say(`primary killed at T0; waiting for traffic to settle on the secondary (at most ${options.ttl + 30} s)`);

    const bound = t0 + (options.ttl + 30) * 1000;
    let settled = false;
    while (Date.now() < bound) {
      assertAlive(children);
      if (settledOnSecondary(f.attempts, SECONDARY, total, Date.now(), HOLD_MS)) {
        settled = true;
        break;
      }
      await sleep(POLL_MS);
    }
    await poller.stop();
    // One last look: the drain tracker may count the last re-fetch a moment after it happened.
    await poller.once();
    await fleet.stop();

    timeline = buildTimeline({
      t0,
      polls: poller.polls,
      primaryAddress: PRIMARY,
      secondaryAddress: SECONDARY,
      secondaryLog: secondary.log,
      attempts: f.attempts,
      resolvers: options.resolvers,
      clients: total,
    });
    if (!settled) failure = `traffic had not settled on the secondary ${options.ttl + 30} s after the kill`;
    else if (timeline.traffic.all === null) failure = 'the secondary never took all the traffic in a 1 s window';
    else ok = true;
  } catch (err) {
    failure = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  } finally {
    await poller?.stop();
    await fleet?.stop();
    await primary.kill();
    await secondary?.kill();
    await registry.stopAll();
    registry.release();
  }
  const keep = !ok || options.keep === true;
  if (!keep) rmSync(dir, { recursive: true, force: true });
  return { ok, failure, timeline, warnings, keptDir: keep ? dir : null, options };
}
