// Owns the listeners, the current snapshot and the UDP rate limiter. swap()
// replaces the snapshot in one assignment: queries already running finish on
// the old one, the next datagram sees the new one, and nothing in between can
// observe a mix. The limiter outlives swaps (its accounts are the memory of
// who has been flooding) and is rebuilt only when its settings change.

import { pino, type Logger } from 'pino';
import { warmUp } from './answer/warm-up.js';
import { buildSnapshot, type Snapshot } from './answer/snapshot.js';
import { listenUdp, type UdpListener } from './transport/udp.js';
import { listenTcp, type TcpListener } from './transport/tcp.js';
import type { QueryObserver } from './metrics/query-stats.js';
import { ResponseRateLimiter, type RrlSettings } from './limits/rrl.js';
import type { CompiledConfig } from '../zones/zone.js';

export interface VigilServer {
  readonly addresses: {
    readonly udp: readonly { address: string; port: number }[];
    readonly tcp: readonly { address: string; port: number }[];
  };
  /** The snapshot queries are answered from right now. */
  snapshot(): Snapshot;
  /** Serves `next` from the next query on: a config without services, or a prebuilt snapshot (the engine's). */
  swap(next: CompiledConfig | Snapshot): void;
  /** The UDP rate limiter in force (its dropped/slipped counts), undefined when rate limiting is off. */
  rateLimiter(): ResponseRateLimiter | undefined;
  close(): Promise<void>;
}

export interface StartOptions {
  readonly logger?: Logger;
  /** The first snapshot to serve; built from the config (static data only) when absent. */
  readonly snapshot?: Snapshot;
  /** Told about every query and TCP connection, and every snapshot swap; see QueryObserver. Absent: no cost at all. */
  readonly observer?: QueryObserver;
  /**
   * false: TCP only. The UDP sockets on the same addresses are then served by
   * a cluster's workers (server/cluster), which this process does not run.
   */
  readonly udp?: boolean;
}

function isSnapshot(x: CompiledConfig | Snapshot): x is Snapshot {
  return 'views' in x && 'matchView' in x;
}

/** With port 0, TCP picks a port and UDP binds the same one; a clash with another UDP user is retried. */
async function bindPair(
  host: string,
  port: number,
  current: () => Snapshot,
  config: CompiledConfig,
  log: Logger,
  observer: QueryObserver | undefined,
  limiter: () => ResponseRateLimiter | undefined,
): Promise<{ udp: UdpListener; tcp: TcpListener }> {
  for (let attempt = 0; ; attempt++) {
    const tcp = await listenTcp(host, port, current, config.server.tcp, log, observer);
    try {
      const udp = await listenUdp(host, tcp.address.port, current, log, observer, limiter);
      return { udp, tcp };
    } catch (err) {
      await tcp.close();
      if (port !== 0 || attempt >= 20) throw err;
    }
  }
}

function sameCidrs(a: RrlSettings['allow'], b: RrlSettings['allow']): boolean {
  return a.length === b.length && a.every((x, i) => x.family === b[i]!.family && x.prefix === b[i]!.prefix && Buffer.compare(x.bytes, b[i]!.bytes) === 0);
}

function sameRrlSettings(a: Readonly<RrlSettings>, b: Readonly<RrlSettings>): boolean {
  return (
    a.responsesPerSecond === b.responsesPerSecond &&
    a.nxdomainsPerSecond === b.nxdomainsPerSecond &&
    a.errorsPerSecond === b.errorsPerSecond &&
    a.slip === b.slip &&
    a.windowS === b.windowS &&
    a.ipv4Prefix === b.ipv4Prefix &&
    a.ipv6Prefix === b.ipv6Prefix &&
    a.tableSize === b.tableSize &&
    sameCidrs(a.allow, b.allow)
  );
}

/**
 * The limiter for `settings`: `running` itself when they are unchanged (every
 * health-driven swap, and a reload that leaves rate_limit alone), so a flood
 * in progress stays limited; a new, empty one otherwise.
 */
export function limiterFor(settings: Readonly<RrlSettings> | undefined, running: ResponseRateLimiter | undefined): ResponseRateLimiter | undefined {
  if (settings === undefined) return undefined;
  if (running !== undefined && sameRrlSettings(running.settings, settings)) return running;
  return new ResponseRateLimiter(settings);
}

export async function startServer(config: CompiledConfig, opts: StartOptions = {}): Promise<VigilServer> {
  const log = opts.logger ?? pino({ level: 'silent' });
  const observer = opts.observer;
  let current = opts.snapshot ?? buildSnapshot(config);
  let rrl = limiterFor(current.rateLimit, undefined);
  observer?.snapshotChanged?.(current);
  const get = (): Snapshot => current;
  const limiter = (): ResponseRateLimiter | undefined => rrl;
  // Before the first listener: the first real queries then run compiled code.
  warmUp(current);
  const udp: UdpListener[] = [];
  const tcp: TcpListener[] = [];
  try {
    for (const l of config.server.listen) {
      if (opts.udp === false) {
        tcp.push(await listenTcp(l.host, l.port, get, config.server.tcp, log, observer));
        continue;
      }
      const pair = await bindPair(l.host, l.port, get, config, log, observer, limiter);
      udp.push(pair.udp);
      tcp.push(pair.tcp);
    }
  } catch (err) {
    await Promise.all([...udp, ...tcp].map((x) => x.close()));
    throw err;
  }
  return {
    addresses: { udp: udp.map((u) => u.address), tcp: tcp.map((t) => t.address) },
    snapshot: get,
    swap(next: CompiledConfig | Snapshot): void {
      const snap = isSnapshot(next) ? next : buildSnapshot(next);
      // Built before the assignment: bad settings (which the config checks rule out) throw with the old snapshot still serving.
      rrl = limiterFor(snap.rateLimit, rrl);
      current = snap;
      // Same tick as the assignment: no query can be answered from `current` before the observer knows its views.
      observer?.snapshotChanged?.(current);
    },
    rateLimiter: limiter,
    async close(): Promise<void> {
      await Promise.all([...udp, ...tcp].map((x) => x.close()));
    },
  };
}
