// A serving worker of a cluster (server/cluster/README.md): answers UDP on
// sockets the primary bound and shares, from snapshots it builds itself out
// of the config and service answers the primary sends. It probes nothing,
// reads no file and talks to no Redis: the control plane is the primary's.
// What the primary needs from the answering path (query counts, who asked
// for health-driven names, rate-limit actions) goes back every REPORT_MS.

import type { Logger } from 'pino';
import { adoptProcessCookieSecret, SnapshotBuilder, type Snapshot } from '../answer/snapshot.js';
import type { ServiceAnswer } from '../answer/policy/types.js';
import { listenUdp, type UdpListener } from '../transport/udp.js';
import { limiterFor } from '../server.js';
import { queryLogger, rrlObserver, serviceObserver } from '../daemon.js';
import { QueryStats, composeObservers, type QueryObserver } from '../metrics/query-stats.js';
import type { ResponseRateLimiter } from '../limits/rrl.js';
import type { CompiledConfig } from '../../zones/zone.js';
import type { FromWorker, ServiceQueries, ToWorker } from './messages.js';
import { ConfigReceiver } from './zone-refs.js';
import { warmUp } from '../answer/warm-up.js';
import { dropPrivileges } from '../privileges.js';

/** How often counts and observations go to the primary: /metrics and the drain report lag by at most this. */
const REPORT_MS = 250;

/**
 * Every serving process keeps its own rate-limit table and the kernel spreads
 * a client's datagrams evenly over them, so each allows its share.
 */
function shareOfRateLimit(config: CompiledConfig, workers: number): CompiledConfig {
  const r = config.server.rateLimit;
  if (r === undefined || workers <= 1) return config;
  const share = (n: number | undefined): number | undefined => (n === undefined ? undefined : n / workers);
  const rateLimit = {
    ...r,
    responsesPerSecond: r.responsesPerSecond / workers,
    ...(r.nxdomainsPerSecond !== undefined ? { nxdomainsPerSecond: share(r.nxdomainsPerSecond) } : {}),
    ...(r.errorsPerSecond !== undefined ? { errorsPerSecond: share(r.errorsPerSecond) } : {}),
  };
  return { ...config, server: { ...config.server, rateLimit } };
}

/** Runs until the primary goes away; never returns normally. */
export function runWorker(log: Logger): Promise<number> {
  const send = (m: FromWorker): void => {
    if (process.connected) process.send!(m);
  };
  let workers = 1;
  let querySample = 0;
  let config: CompiledConfig | undefined;
  let current: Snapshot | undefined;
  let rrl: ResponseRateLimiter | undefined;
  let listeners: UdpListener[] | undefined;
  let listen: readonly { host: string; port: number }[] = [];

  const zones = new ConfigReceiver();
  const snapshots = new SnapshotBuilder();
  const stats = new QueryStats();
  const asked = new Map<string, { label: string; client: string; first: number; last: number }>();
  const failedOpen = new Map<string, number>();
  let rrlDropped = 0;
  let rrlSlipped = 0;
  const observers: QueryObserver[] = [
    stats,
    serviceObserver({
      asked(label, client, at) {
        const key = `${label}\u0000${client}`;
        const seen = asked.get(key);
        if (seen === undefined) asked.set(key, { label, client, first: at, last: at });
        else seen.last = at;
      },
      failedOpen(label) {
        failedOpen.set(label, (failedOpen.get(label) ?? 0) + 1);
      },
    }),
    rrlObserver((action) => {
      if (action === 'dropped') rrlDropped++;
      else rrlSlipped++;
    }),
  ];
  let observer = composeObservers(...observers);

  const report = (): void => {
    const delta = stats.take();
    if (delta === undefined && asked.size === 0 && failedOpen.size === 0 && rrlDropped === 0 && rrlSlipped === 0) return;
    const services: ServiceQueries[] = [...asked.values()];
    send({ type: 'report', stats: delta, services, failedOpen: [...failedOpen], rrlDropped, rrlSlipped });
    asked.clear();
    failedOpen.clear();
    rrlDropped = 0;
    rrlSlipped = 0;
  };
  const timer = setInterval(report, REPORT_MS);

  const serve = (answers: ReadonlyMap<string, ServiceAnswer>, changed?: readonly string[]): void => {
    if (config === undefined) return;
    // Observations of one interval describe one answer: the drain tracker times re-fetches against changes.
    report();
    // Incremental when the primary says which keys changed, as the primary's own engine does.
    current = snapshots.build(config, answers, changed);
    rrl = limiterFor(current.rateLimit, rrl);
    observer.snapshotChanged?.(current);
  };

  const bind = async (): Promise<void> => {
    warmUp(current!);
    const bound: UdpListener[] = [];
    try {
      for (const l of listen) bound.push(await listenUdp(l.host, l.port, () => current!, log, observer, () => rrl, true));
    } catch (err) {
      await Promise.all(bound.map((b) => b.close()));
      throw err;
    }
    listeners = bound;
    // Forked by a primary that still ran as root; its sockets are bound now, so it drops too.
    if (config !== undefined) dropPrivileges(config.server, log);
  };

  // A terminal's Ctrl-C and a reload's SIGHUP reach the whole process group: the primary decides for us.
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  return new Promise<number>(() => {
    process.on('disconnect', () => {
      clearInterval(timer);
      process.exit(0);
    });
    process.on('message', (m: ToWorker) => {
      switch (m.type) {
        case 'start':
          workers = m.workers;
          listen = m.listen;
          querySample = m.querySample;
          log.level = m.logLevel;
          if (m.cookieSecret !== undefined) adoptProcessCookieSecret(m.cookieSecret);
          {
            const qlog = queryLogger(querySample, log);
            if (qlog !== undefined) observer = composeObservers(...observers, qlog);
          }
          return;
        case 'config':
          config = shareOfRateLimit(zones.decode(m.config), workers);
          serve(m.answers);
          send({ type: 'applied' });
          break;
        case 'answers':
          serve(m.answers, m.changed);
          break;
      }
      // Bound only once there is a snapshot, so it never answers from nothing.
      if (listeners === undefined && current !== undefined) {
        listeners = [];
        bind().then(
          () => send({ type: 'listening' }),
          (err: unknown) => {
            send({ type: 'failed', error: err instanceof Error ? err.message : String(err) });
            process.exit(1);
          },
        );
      }
    });
    send({ type: 'hello' });
  });
}
