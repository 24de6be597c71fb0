// `vigil serve`: load the config file, start the engine, the admin API and
// the metrics listener, and reload on SIGHUP or POST /reload. A config that
// fails to load is refused with every error logged, and the running one keeps
// serving. Zone files over DEFER_ZONE_BYTES are loaded after the server
// answers the rest (their names answer SERVFAIL meanwhile, and /readyz says
// not ready): a restart beside a million-record zone is not 12 s of silence
// for every other zone. This is the one place that wires observers to the
// engine's events.

import type { Logger } from 'pino';
import { loadConfig, formatErrors } from '../zones/load.js';
import { Engine } from './engine.js';
import { startAdmin, type AdminServer } from './http/admin.js';
import { startOps, type OpsServer } from './http/ops.js';
import { DrainTracker } from './drain/tracker.js';
import { VigilMetrics } from './metrics/registry.js';
import { composeObservers, type QueryObserver } from './metrics/query-stats.js';
import { serviceLabel, type Snapshot } from './answer/snapshot.js';
import { formatName } from './wire/name.js';
import type { VigilServer } from './server.js';
import { ServingWorkers } from './cluster/primary.js';
import { dropPrivileges } from './privileges.js';
import type { CompiledConfig } from '../zones/zone.js';

export interface Daemon {
  readonly engine: Engine;
  readonly server: VigilServer;
  readonly admin: AdminServer | undefined;
  readonly ops: OpsServer | undefined;
  readonly metrics: VigilMetrics;
  readonly drain: DrainTracker;
  reload(): Promise<{ ok: boolean; errors?: string }>;
  close(): Promise<void>;
}

export class ConfigRefused extends Error {
  override name = 'ConfigRefused';
}

export interface DaemonOptions {
  /** Rewrites each loaded config (tests use it to listen on ephemeral ports). */
  readonly adjust?: (c: CompiledConfig) => CompiledConfig;
  /** The log level was given on the command line: do not take the config's. */
  readonly levelFixed?: boolean;
  /**
   * Serving processes for UDP (server/cluster): above 1, this process keeps
   * the control plane and TCP and forks that many workers that share the UDP
   * sockets. Needs a cluster-capable entry point (the vigil CLI). Default 1.
   */
  readonly workers?: number;
  /** Zone files larger than this load after the server started answering (default DEFER_ZONE_BYTES; Infinity: never). */
  readonly deferZonesOver?: number;
}

/**
 * Zone files above this size (about 200,000 records, 2-3 s to load here) are
 * loaded after the server starts answering the other zones.
 */
export const DEFER_ZONE_BYTES = 8 * 1024 * 1024;

/** Every Nth query is logged for a sample share of 1/N: a counter costs less than a random draw per query. */
export function queryLogger(sample: number, log: Logger): QueryObserver | undefined {
  if (sample <= 0) return undefined;
  const every = Math.max(1, Math.round(1 / sample));
  let n = 0;
  let snap: Snapshot | undefined;
  const qlog = log.child({ component: 'query' });
  return {
    snapshotChanged(s) {
      snap = s;
    },
    query(info, transport, client) {
      if (++n < every) return;
      n = 0;
      qlog.info({ client, transport, qname: info.qname === '' ? '' : formatName(info.qname), qtype: info.qtype, rcode: info.rcode, view: snap?.views[info.view]?.name ?? null, outcome: info.outcome, tc: info.truncated }, 'query');
    },
  };
}

/** Where the answering path's per-service facts go: straight to the tracker and metrics, or batched for the primary (server/cluster). */
export interface ServiceQuerySink {
  /** `client` asked for the health-driven name of service `label` at `at` (ms epoch). */
  asked(label: string, client: string, at: number): void;
  /** An answer for service `label` was served failed open. */
  failedOpen(label: string): void;
}

/** Reports queries for health-driven names (for the drain tracker) and answers served failed open. */
export function serviceObserver(sink: ServiceQuerySink): QueryObserver {
  let snap: Snapshot | undefined;
  return {
    snapshotChanged(s) {
      snap = s;
    },
    query(info, _transport, client) {
      if (info.outcome !== 'answer' || info.view < 0 || snap === undefined) return;
      const ref = snap.views[info.view]?.services.get(info.qname);
      if (ref === undefined) return;
      sink.asked(ref.label, client, Date.now());
      if (ref.failedOpen) sink.failedOpen(ref.label);
    },
  };
}

/** Reports what UDP rate limiting withheld, as the transport records it per query (QueryInfo.rrlAction). */
export function rrlObserver(withheld: (action: 'dropped' | 'slipped') => void): QueryObserver {
  return {
    query(info) {
      if (info.rrlAction !== 'send') withheld(info.rrlAction === 'drop' ? 'dropped' : 'slipped');
    },
  };
}

export async function startDaemon(file: string, log: Logger, opts: DaemonOptions = {}): Promise<Daemon> {
  const adjust = opts.adjust ?? ((c: CompiledConfig) => c);
  let loaded;
  try {
    const over = opts.deferZonesOver ?? DEFER_ZONE_BYTES;
    loaded = await loadConfig(file, Number.isFinite(over) ? { deferZonesOver: over } : {});
  } catch (err) {
    throw new ConfigRefused(formatErrors(err));
  }
  for (const w of loaded.warnings) log.warn({ config: file }, w);
  let config = adjust(loaded.config);
  const ops = config.operations;
  if (opts.levelFixed !== true) log.level = ops.log.level;

  const metrics = new VigilMetrics({ node: ops.node.id, pop: ops.node.pop });
  // Per service at most 5000 resolvers and 4 changes: about 2 MB (server/drain/README.md has the arithmetic).
  const drain = new DrainTracker({
    maxResolversPerService: 5000,
    maxChangesPerService: 4,
    onThreshold: (service, share, afterMs) => {
      if (share === 0.9) metrics.drainTime90(service, afterMs / 1000);
    },
  });
  const observers = [
    metrics.queryObserver(),
    serviceObserver({ asked: (label, client, at) => drain.observe(label, client, at), failedOpen: (label) => metrics.failedOpenAnswer(label) }),
    rrlObserver((action) => metrics.rrlResponse(action)),
  ];
  const qlog = queryLogger(ops.log.querySample, log);
  if (qlog !== undefined) observers.push(qlog);

  const clustered = (opts.workers ?? 1) > 1;
  const engine = new Engine(config, { logger: log, serverOptions: { observer: composeObservers(...observers), ...(clustered ? { udp: false } : {}) } });
  engine.on('check', (e) => metrics.probeCheck(e));
  engine.on('answerChange', (c) => {
    const label = c.label;
    metrics.answerChanged(label, c.epoch);
    if (c.from !== null) drain.change(label, { at: c.at, epoch: c.epoch, from: c.from, to: c.to, oldTtl: c.oldTtl });
  });
  // The health, replication and drain gauges are set when /metrics is scraped, from the services whose
  // state changed since the last scrape (Engine.stateChanges): between scrapes, however fast health churns
  // and however often nodes heartbeat, they cost nothing, and a scrape reads the state of that moment.
  let gaugeVersion = 0;
  metrics.onRender(() => {
    const changes = engine.stateChanges(gaugeVersion);
    gaugeVersion = changes.version;
    if (changes.all) metrics.updateState({ replication: changes.replication, services: changes.services });
    else metrics.updateServices(changes.services, changes.replication);
    metrics.updateDrainRatios(drain.latestRatios());
  });
  metrics.configLoaded(config.hash);

  const server = await engine.start();
  let workers: ServingWorkers | undefined;
  if (clustered) {
    // The workers bind UDP where this process bound TCP (the same ports when the config says port 0).
    const listen = config.server.listen.map((l, i) => ({ host: l.host, port: server.addresses.tcp[i]!.port }));
    workers = new ServingWorkers({
      workers: opts.workers!,
      listen,
      cookieSecret: server.snapshot().cookies,
      logLevel: log.level,
      querySample: ops.log.querySample,
      state: () => engine.servingState(),
      metrics,
      drain,
      log,
    });
    engine.on('snapshot', (c, a, changed) => workers!.update(c, a, changed));
    try {
      await workers.start();
    } catch (err) {
      await engine.close();
      throw err;
    }
  }
  log.info({ udp: workers !== undefined ? config.server.listen.map((l, i) => ({ address: l.host, port: server.addresses.tcp[i]!.port })) : server.addresses.udp, tcp: server.addresses.tcp, workers: opts.workers ?? 1, zones: config.zones.size, services: config.services.length, hash: config.hash, node: ops.node.id, pop: ops.node.pop, redis: ops.replication.redis !== undefined }, 'listening');

  let inFlight: Promise<{ ok: boolean; errors?: string }> | undefined;
  // Aborted by close(): a load in progress (a large zone takes seconds) stops at its next slice.
  const closing = new AbortController();
  const reload = (): Promise<{ ok: boolean; errors?: string }> => {
    // Two reloads at once would race to swap; the second waits for the first's result.
    inFlight ??= (async () => {
      const pending = config.pendingZones;
      try {
        // Zones whose file, origin and bytes are unchanged are taken from the serving config, not parsed again.
        const { config: next, warnings } = await loadConfig(file, { previous: config, signal: closing.signal });
        // A load with nothing to slice does not look at the signal: closed meanwhile, there is nothing to swap into.
        closing.signal.throwIfAborted();
        for (const w of warnings) log.warn({ config: file }, w);
        const adjusted = adjust(next);
        if (JSON.stringify(adjusted.server.listen) !== JSON.stringify(config.server.listen)) {
          log.warn('listen addresses changed: they take effect at the next restart');
        }
        if (JSON.stringify(adjusted.operations.metrics) !== JSON.stringify(config.operations.metrics) || JSON.stringify(adjusted.operations.admin) !== JSON.stringify(config.operations.admin)) {
          log.warn('admin or metrics listener changed: it takes effect at the next restart');
        }
        if (adjusted.server.user !== config.server.user || adjusted.server.group !== config.server.group) {
          // Privileges are dropped once, after binding; a running process cannot take them back to switch again.
          log.warn({ user: adjusted.server.user ?? null, group: adjusted.server.group ?? null }, 'server.user or server.group changed: it takes effect at the next restart');
        }
        engine.reload({ ...adjusted, server: { ...adjusted.server, listen: config.server.listen } });
        const keep = new Set(adjusted.services.map(serviceLabel));
        for (const s of config.services) {
          const label = serviceLabel(s);
          if (!keep.has(label)) {
            drain.forget(label);
            metrics.removeService(label);
          }
        }
        config = adjusted;
        metrics.configReloaded(true, adjusted.hash);
        log.info({ zones: adjusted.zones.size, services: adjusted.services.length, hash: adjusted.hash }, 'config reloaded');
        return { ok: true };
      } catch (err) {
        if (closing.signal.aborted) return { ok: false, errors: 'the server is shutting down' };
        const errors = formatErrors(err);
        metrics.configReloaded(false);
        if (pending !== undefined) {
          log.error({ errors, pending: [...pending].map(formatName) }, 'reload refused; the zones not loaded yet keep answering SERVFAIL and the others keep serving');
        } else log.error({ errors }, 'reload refused; the previous config keeps serving');
        return { ok: false, errors };
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  };

  let admin: AdminServer | undefined;
  let opsServer: OpsServer | undefined;
  try {
    if (ops.admin !== undefined) {
      admin = await startAdmin(
        { listen: ops.admin, ...(ops.adminToken !== undefined ? { token: ops.adminToken } : {}) },
        {
          state: () => engine.state(),
          drain: (service) => {
            const report = drain.report(Date.now());
            if (service === undefined) return report;
            const want = service.endsWith('.') ? service.toLowerCase() : `${service.toLowerCase()}.`;
            return { services: report.services.filter((s) => s.service.toLowerCase() === want || s.service.toLowerCase().startsWith(`${want}@`)) };
          },
          audit: (count) => engine.auditLog(count),
          setOverride: (b) => engine.setOverride(b),
          clearOverride: (m, by, reason) => engine.clearOverride(m, by, reason),
          reload,
          approveFailback: (n) => engine.approveFailback(n),
        },
        log,
      );
      log.info({ admin: admin.address, auth: ops.adminToken !== undefined }, 'admin API listening');
    }
    if (ops.metrics !== undefined) {
      const ready = (): { ready: boolean; reasons: string[] } => {
        const r = engine.ready();
        const missing = workers?.ready() ?? [];
        return missing.length === 0 ? r : { ready: false, reasons: [...r.reasons, ...missing] };
      };
      opsServer = await startOps(ops.metrics, { metrics, ready }, log);
      log.info({ metrics: opsServer.address }, 'metrics listening');
    }
    // Every socket is bound (the workers' UDP too: the primary binds those for them).
    dropPrivileges(config.server, log);
  } catch (err) {
    await admin?.close();
    await workers?.close();
    await engine.close();
    throw err;
  }
  const pending = config.pendingZones;
  if (pending !== undefined) {
    // The complete config, loaded as a reload loads it: the zones already served are reused, the
    // large ones parsed in slices between which queries are answered. A reload asked for meanwhile waits for it.
    log.info({ zones: [...pending].map(formatName), overBytes: opts.deferZonesOver ?? DEFER_ZONE_BYTES }, 'large zones load now; their names answer SERVFAIL until then');
    void reload().then((r) => {
      if (r.ok) log.info({ zones: [...pending].map(formatName) }, 'large zones loaded');
    });
  }
  return {
    engine,
    server,
    admin,
    ops: opsServer,
    metrics,
    drain,
    reload,
    async close() {
      closing.abort(new Error('the server is shutting down'));
      await admin?.close();
      await opsServer?.close();
      await workers?.close();
      await engine.close();
    },
  };
}
