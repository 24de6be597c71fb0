// Every Prometheus metric Vigil exposes, in one prom-client Registry. The
// answering path never touches prom-client: it counts in QueryStats, and the
// dns/tcp metrics here read those arrays when /metrics is scraped. The control
// plane (engine, probes, replication, reload, drain) calls the typed methods
// below, at its own pace. Names, labels and meanings: README.md beside this.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DURATION_BUCKETS, QueryStats, TCP_REJECT_REASONS, TRANSPORTS, type DurationCounts, type QueryObserver } from './query-stats.js';

export interface VigilMetricsOptions {
  /** This node's id and PoP: vigil_build_info labels, and the node label of this node's probe checks. */
  readonly node: string;
  readonly pop: string;
  /** Default: the version in Vigil's package.json. */
  readonly version?: string;
  /** Process and Node.js metrics (prom-client's defaults, prefixed vigil_). Default true. */
  readonly processMetrics?: boolean;
  /** Counters to read the answering path from; a fresh QueryStats when absent. */
  readonly queries?: QueryStats;
}

export type ProbeResult = 'up' | 'down';

/** One probe check, as the probe monitor reports it (a structural subset of its CheckEvent). */
export interface ProbeCheck {
  readonly memberId: string;
  readonly family: string;
  /** Probe type: http, https, tcp, dns. */
  readonly type: string;
  readonly check: { readonly ok: boolean; readonly latencyMs: number };
}

/**
 * What updateState reads from the engine's state (the admin API's GET /state
 * document; a structural subset, so the engine's own type fits).
 */
export interface MetricsState {
  readonly replication: {
    readonly redis: 'connected' | 'disconnected' | 'none';
    readonly nodes: readonly { readonly fresh: boolean; readonly self: boolean; readonly lastSeenMs: number; readonly diverged: boolean }[];
  };
  readonly services: readonly {
    /** With the trailing dot. */
    readonly name: string;
    readonly views: readonly string[];
    readonly epoch: number;
    readonly degraded: boolean;
    readonly failedOpen: boolean;
    readonly diverged: boolean;
    readonly members: readonly {
      readonly member: string;
      readonly family: string;
      /** up | down | unknown; unknown is served as up. */
      readonly status: string;
      readonly local: { readonly status: string };
      readonly override?: { readonly action: OverrideAction };
    }[];
  }[];
}

/** What updateState reads from the drain tracker's report (structural subset of DrainReport). */
export interface MetricsDrainReport {
  readonly services: readonly { readonly service: string; readonly changes: readonly { readonly ratio: number }[] }[];
}
export type OverrideAction = 'drain' | 'force_up' | 'force_down';
export type RrlAction = 'dropped' | 'slipped';

/** Probe durations: a local TCP connect is ~100 µs, a timeout is seconds. */
const PROBE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/**
 * Time for 90% of the resolvers that held the old answer to fetch the new
 * one: bounded below by nothing (resolvers that asked again at once) and
 * above by the old TTL plus resolver lag, so seconds to hours.
 */
const DRAIN_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200];

/** The member id is "<service name>/<member name>", and member names cannot contain "/". */
export function serviceOfMember(member: string): string {
  const slash = member.lastIndexOf('/');
  return slash < 0 ? member : member.slice(0, slash);
}

/** How metrics name a service: its name, plus "@view,..." when limited to views (the engine's serviceLabel). */
export function serviceLabelOf(service: { readonly name: string; readonly views: readonly string[] }): string {
  return service.views.length > 0 ? `${service.name}@${service.views.join(',')}` : service.name;
}

/** As the policies serve it: anything but down is served, so an unknown member counts as up (policy/README.md). */
function upValue(status: string): number {
  return status === 'down' ? 0 : 1;
}

let packageVersionMemo: string | undefined;

/** Walks up from this module to Vigil's package.json: the same from sources and from dist/. */
function packageVersion(): string {
  if (packageVersionMemo !== undefined) return packageVersionMemo;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'vigil' && typeof pkg.version === 'string') return (packageVersionMemo = pkg.version);
    } catch {
      /* no package.json here: keep walking up */
    }
    const up = dirname(dir);
    if (up === dir) return (packageVersionMemo = 'unknown');
    dir = up;
  }
}

interface SampleValue {
  readonly value: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly metricName: string;
}

/**
 * A histogram whose buckets are counted elsewhere (QueryStats). prom-client's
 * Histogram takes one observation per call and has no way to set a bucket, so
 * this stands in for one: prom-client's Registry renders any registered object
 * with name, help, type, aggregator and get(), and calls reset() on
 * resetMetrics().
 */
class ExternalHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    private readonly read: () => readonly { labels: Readonly<Record<string, string>>; counts: DurationCounts }[],
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: SampleValue[] }> {
    const values: SampleValue[] = [];
    for (const { labels, counts } of this.read()) {
      counts.cumulative.forEach((value, i) => {
        const le = i < DURATION_BUCKETS.length ? String(DURATION_BUCKETS[i]) : '+Inf';
        values.push({ value, labels: { ...labels, le }, metricName: `${this.name}_bucket` });
      });
      values.push({ value: counts.sum, labels, metricName: `${this.name}_sum` });
      values.push({ value: counts.count, labels, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** The counts belong to QueryStats, which never resets. */
  reset(): void {}
}

/**
 * The values last set on one service's gauges. prom-client hashes the labels
 * on every set, so setting a thousand services' gauges every second costs
 * tens of milliseconds when almost none of them moved: only changes are set.
 */
interface ServiceGauges {
  readonly labels: { readonly service: string };
  epoch: number | undefined;
  failedOpen: number | undefined;
  degraded: number | undefined;
  diverged: number | undefined;
  /** By member id, then family. */
  readonly members: Map<string, Map<string, MemberGauges>>;
  /** Bumped by every update of the service; a member whose mark is older was not in the last one. */
  mark: number;
  /** Member gauges (member and family) held. */
  size: number;
}

interface MemberGauges {
  readonly member: string;
  readonly family: string;
  readonly labels: { readonly service: string; readonly member: string; readonly family: string };
  up: number | undefined;
  local: number | undefined;
  mark: number;
}

/** A series whose labels go beyond `service`, remembered so it can be removed with its service or member. */
interface TrackedSeries {
  readonly metric: { remove(labels: Record<string, string>): void };
  readonly labels: Record<string, string>;
  readonly member: string;
  /** Set by updateState (gauges it owns); a gauge series not refreshed by an update is gone from the state. */
  readonly gauge: boolean;
}

export class VigilMetrics {
  readonly registry = new Registry();
  /** Hot-path counters; queryObserver() returns this same object. */
  readonly queries: QueryStats;
  private readonly node: string;

  // --- control plane ---
  private readonly probeChecks: Counter<'member' | 'family' | 'node' | 'result'>;
  private readonly probeSeconds: Histogram<'type'>;
  private readonly memberUp: Gauge<'service' | 'member' | 'family'>;
  private readonly memberLocalUp: Gauge<'service' | 'member' | 'family'>;
  private readonly memberOverride: Gauge<'service' | 'member' | 'action'>;
  private readonly answerChanges: Counter<'service'>;
  private readonly healthEpoch: Gauge<'service'>;
  private readonly serviceFailedOpen: Gauge<'service'>;
  private readonly failedOpenAnswers: Counter<'service'>;
  private readonly serviceDegraded: Gauge<'service'>;
  private readonly redisConnected: Gauge;
  private readonly replicationNodes: Gauge<'state'>;
  private readonly replicationLag: Gauge;
  private readonly nodesDiverged: Gauge;
  private readonly serviceDiverged: Gauge<'service'>;
  private readonly configReloads: Counter<'result'>;
  private readonly configInfo: Gauge<'hash'>;
  private readonly configLastSuccess: Gauge;
  private readonly drainRatio: Gauge<'service'>;
  private readonly drainTime: Histogram<'service'>;
  private readonly rrlResponses: Counter<'action'>;

  /** Metrics that only exist once replication reports (a single node has no Redis to be disconnected from). */
  private readonly replicationMetrics: readonly Gauge<string>[];
  private replicationRegistered = false;
  /** Failed-open answers counted per query by the caller, added to the counter at scrape time. */
  private readonly failedOpenPending = new Map<string, number>();
  /** Answer changes since the last scrape, by service label: how many, and the epoch of the last (see answerChanged). */
  private readonly changesPending = new Map<string, { n: number; epoch: number | undefined }>();
  /** Series with labels beyond `service`, by service label (probe checks: by the service name in the member id). */
  private readonly tracked = new Map<string, Map<string, TrackedSeries>>();
  /** Active override action by service label, then member id, to replace its series when the action changes. */
  private readonly overrides = new Map<string, Map<string, OverrideAction>>();
  /** Metrics whose only label is `service`, split by whether updateState owns them. */
  private readonly perServiceGauges: readonly Gauge<'service'>[];
  private readonly perServiceOthers: readonly { remove(labels: { service: string }): void }[];
  /** Services seen by the last updateState (and updateServices since), to drop the gauges of those no longer in the state. */
  private stateServices = new Set<string>();
  /** What the health gauges of each service were last set to, by service label. */
  private readonly gauges = new Map<string, ServiceGauges>();
  /** What vigil_failover_drain_ratio was last set to, by service label. */
  private readonly drainRatios = new Map<string, number>();
  private readonly renderHooks: (() => void)[] = [];

  constructor(opts: VigilMetricsOptions) {
    const registers = [this.registry];
    this.node = opts.node;
    const stats = (this.queries = opts.queries ?? new QueryStats());

    // --- answering path, read from QueryStats at scrape time ---
    new Counter({
      name: 'vigil_dns_queries_total',
      help: 'DNS queries answered (FORMERR/NOTIMP included, drops not), by view, query type, response code and transport.',
      labelNames: ['view', 'qtype', 'rcode', 'transport'] as const,
      registers,
      collect() {
        this.reset();
        for (const c of stats.queryCounts()) this.inc({ view: c.view, qtype: c.qtype, rcode: c.rcode, transport: c.transport }, c.count);
      },
    });
    this.registry.registerMetric(
      new ExternalHistogram(
        'vigil_dns_response_duration_seconds',
        'Time from receiving a query to handing its response to the socket, by transport.',
        ['transport'],
        () => TRANSPORTS.map((transport) => ({ labels: { transport }, counts: stats.durations(transport) })),
      ) as unknown as Histogram,
    );
    const perTransport = (name: string, help: string, read: (t: 'udp' | 'tcp') => number): void => {
      new Counter({
        name,
        help,
        labelNames: ['transport'] as const,
        registers,
        collect() {
          this.reset();
          for (const transport of TRANSPORTS) this.inc({ transport }, read(transport));
        },
      });
    };
    perTransport('vigil_dns_truncated_total', 'Responses sent with TC=1 (answer did not fit the client\'s size).', (t) => stats.truncated(t));
    perTransport('vigil_dns_malformed_total', 'Queries answered with an error because they did not parse (FORMERR, NOTIMP).', (t) => stats.malformed(t));
    perTransport('vigil_dns_dropped_total', 'Packets given no response at all (shorter than a header, QR=1, or an internal error).', (t) => stats.dropped(t));
    new Gauge({
      name: 'vigil_tcp_connections',
      help: 'TCP connections open now.',
      registers,
      collect() {
        this.set(stats.tcp().open);
      },
    });
    new Counter({
      name: 'vigil_tcp_connections_total',
      help: 'TCP connections accepted.',
      registers,
      collect() {
        this.reset();
        this.inc(stats.tcp().total);
      },
    });
    new Counter({
      name: 'vigil_tcp_rejected_total',
      help: 'TCP connections refused at accept by a connection cap, by cap.',
      labelNames: ['reason'] as const,
      registers,
      collect() {
        this.reset();
        for (const [reason, n] of stats.tcp().rejected) this.inc({ reason }, n);
      },
    });

    // --- probes and health ---
    this.probeChecks = new Counter({
      name: 'vigil_probe_checks_total',
      help: 'Probe verdicts by member id, address family, probing node and result.',
      labelNames: ['member', 'family', 'node', 'result'] as const,
      registers,
    });
    this.probeSeconds = new Histogram({
      name: 'vigil_probe_duration_seconds',
      help: 'Duration of this node\'s probe checks, by probe type.',
      labelNames: ['type'] as const,
      buckets: PROBE_BUCKETS,
      registers,
    });
    this.memberUp = new Gauge({
      name: 'vigil_member_up',
      help: 'Member health as served (consensus of the nodes, overrides applied): 1 up, 0 down.',
      labelNames: ['service', 'member', 'family'] as const,
      registers,
    });
    this.memberLocalUp = new Gauge({
      name: 'vigil_member_local_up',
      help: 'Member health by this node\'s own probes alone: 1 up, 0 down.',
      labelNames: ['service', 'member', 'family'] as const,
      registers,
    });
    this.memberOverride = new Gauge({
      name: 'vigil_member_override',
      help: '1 while an operator override (drain, force_up, force_down) is active on the member.',
      labelNames: ['service', 'member', 'action'] as const,
      registers,
    });
    this.answerChanges = new Counter({
      name: 'vigil_answer_changes_total',
      help: 'Times the service\'s answer changed because of health (each bumps its health epoch).',
      labelNames: ['service'] as const,
      registers,
    });
    this.healthEpoch = new Gauge({
      name: 'vigil_health_epoch',
      help: 'Current health epoch of the service (increases with every answer change).',
      labelNames: ['service'] as const,
      registers,
    });
    this.serviceFailedOpen = new Gauge({
      name: 'vigil_service_failed_open',
      help: '1 while no member is healthy and the service answers with every member (fail-open) or its last resort.',
      labelNames: ['service'] as const,
      registers,
    });
    const failedOpenPending = this.failedOpenPending;
    this.failedOpenAnswers = new Counter({
      name: 'vigil_failed_open_answers_total',
      help: 'Queries answered for the service while it was failed open.',
      labelNames: ['service'] as const,
      registers,
      collect() {
        for (const [service, n] of failedOpenPending) this.inc({ service }, n);
        failedOpenPending.clear();
      },
    });
    this.serviceDegraded = new Gauge({
      name: 'vigil_service_degraded',
      help: '1 while the service is degraded (a member down, a failover or ramp under way): answers carry degraded_ttl.',
      labelNames: ['service'] as const,
      registers,
    });

    // --- replication (registered on first report) ---
    this.redisConnected = new Gauge({ name: 'vigil_redis_connected', help: '1 while connected to Redis.', registers: [] });
    this.replicationNodes = new Gauge({
      name: 'vigil_replication_nodes',
      help: 'Nodes known through replication (this one included), by freshness of their last heartbeat.',
      labelNames: ['state'] as const,
      registers: [],
    });
    this.replicationLag = new Gauge({
      name: 'vigil_replication_lag_seconds',
      help: 'Age of the oldest report among the fresh remote nodes.',
      registers: [],
    });
    this.nodesDiverged = new Gauge({
      name: 'vigil_nodes_diverged',
      help: 'Nodes whose served answers have differed from this node\'s for longer than divergence_after.',
      registers: [],
    });
    this.replicationMetrics = [this.redisConnected, this.replicationNodes, this.replicationLag, this.nodesDiverged];
    this.serviceDiverged = new Gauge({
      name: 'vigil_service_diverged',
      help: '1 while another node serves a different answer for the service for longer than divergence_after.',
      labelNames: ['service'] as const,
      registers,
    });

    // --- config ---
    this.configReloads = new Counter({
      name: 'vigil_config_reloads_total',
      help: 'Config reloads (SIGHUP or POST /reload) by result; a failed one leaves the old config serving.',
      labelNames: ['result'] as const,
      registers,
    });
    for (const result of ['success', 'failure']) this.configReloads.inc({ result }, 0);
    this.configInfo = new Gauge({
      name: 'vigil_config_info',
      help: 'Always 1; the hash label identifies the config being served.',
      labelNames: ['hash'] as const,
      registers,
    });
    this.configLastSuccess = new Gauge({
      name: 'vigil_config_last_reload_success_timestamp_seconds',
      help: 'Unix time the config being served was loaded (at start or by the last successful reload).',
      registers,
    });

    // --- drain tracking ---
    this.drainRatio = new Gauge({
      name: 'vigil_failover_drain_ratio',
      help: 'Share of the resolvers active before the service\'s last answer change that have fetched the new answer.',
      labelNames: ['service'] as const,
      registers,
    });
    this.drainTime = new Histogram({
      name: 'vigil_failover_drain_time_seconds',
      help: 'Seconds from an answer change until 90% of the resolvers active before it had fetched the new answer; one observation per change.',
      labelNames: ['service'] as const,
      buckets: DRAIN_BUCKETS,
      registers,
    });

    // --- RRL ---
    this.rrlResponses = new Counter({
      name: 'vigil_rrl_responses_total',
      help: 'Responses withheld by response rate limiting: dropped, or slipped (sent truncated).',
      labelNames: ['action'] as const,
      registers,
    });
    for (const action of ['dropped', 'slipped']) this.rrlResponses.inc({ action }, 0);

    new Gauge({
      name: 'vigil_build_info',
      help: 'Always 1; labels give the version and this node\'s identity.',
      labelNames: ['version', 'node', 'pop'] as const,
      registers,
    }).set({ version: opts.version ?? packageVersion(), node: opts.node, pop: opts.pop }, 1);

    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'vigil_' });

    this.perServiceGauges = [this.healthEpoch, this.serviceFailedOpen, this.serviceDegraded, this.serviceDiverged];
    this.perServiceOthers = [this.answerChanges, this.failedOpenAnswers, this.drainRatio, this.drainTime];
  }

  /** The observer to give startServer; compose it with others through composeObservers. */
  queryObserver(): QueryObserver {
    return this.queries;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Runs `hook` at the start of every render(), before any series is read: a
   * source of gauges that is cheaper to read when a scrape asks than to push
   * on every change (the engine's state under health churn) sets them there.
   */
  onRender(hook: () => void): void {
    this.renderHooks.push(hook);
  }

  /** The text exposition format, for GET /metrics. */
  render(): Promise<string> {
    try {
      this.flushAnswerChanges();
      for (const hook of this.renderHooks) hook();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.registry.metrics();
  }

  // --- probes ---

  /** One probe check: counts its verdict (node label: this node unless given) and observes its duration. */
  probeCheck(e: ProbeCheck, node: string = this.node): void {
    this.probeVerdict(e.memberId, e.family, node, e.check.ok ? 'up' : 'down');
    if (node === this.node) this.probeSeconds.observe({ type: e.type }, e.check.latencyMs / 1000);
  }

  /** One verdict alone (a remote node's, say), without a duration. */
  probeVerdict(member: string, family: string, node: string, result: ProbeResult): void {
    const labels = { member, family, node, result };
    this.track(serviceOfMember(member), member, `c|${member}|${family}|${node}|${result}`, this.probeChecks, labels, false);
    this.probeChecks.inc(labels);
  }

  // --- health state ---

  /**
   * Sets every health, replication and drain gauge from the engine's state
   * and the drain report (call it after each engine update). Gauges of
   * services, members and overrides missing from `state` are removed; the
   * counters of a removed service go with removeService. Only values that
   * changed since the last update reach prom-client.
   */
  updateState(state: MetricsState, drain?: MetricsDrainReport): void {
    const seen = new Set<string>();
    for (const s of state.services) seen.add(this.updateService(s));
    for (const service of [...this.gauges.keys()]) if (!seen.has(service)) this.dropServiceGauges(service);
    for (const service of this.stateServices) {
      if (!seen.has(service)) for (const g of this.perServiceGauges) g.remove({ service });
    }
    this.stateServices = seen;
    this.updateReplication(state.replication);
    for (const d of drain?.services ?? []) {
      const latest = d.changes[0];
      if (latest !== undefined) this.setDrainRatio(d.service, latest.ratio);
    }
  }

  /**
   * Sets the health gauges of these services only, as updateState would
   * (a member missing from a service's entry loses its gauges), and the
   * replication gauges when given; other services' gauges stay as they are.
   * For the services whose state changed since the last update (the engine's
   * stateChanges()): after a burst of changes to some services of thousands,
   * the cost follows the burst.
   */
  updateServices(services: MetricsState['services'], replication?: MetricsState['replication']): void {
    for (const s of services) this.stateServices.add(this.updateService(s));
    if (replication !== undefined) this.updateReplication(replication);
  }

  /** Sets vigil_failover_drain_ratio of each service to the ratio of its newest change (DrainTracker.latestRatios()). */
  updateDrainRatios(ratios: ReadonlyMap<string, number>): void {
    for (const [service, ratio] of ratios) this.setDrainRatio(service, ratio);
  }

  /** Sets one service's health gauges; returns its label. */
  private updateService(s: MetricsState['services'][number]): string {
    const service = serviceLabelOf(s);
    let g = this.gauges.get(service);
    if (g === undefined) {
      g = { labels: { service }, epoch: undefined, failedOpen: undefined, degraded: undefined, diverged: undefined, members: new Map(), mark: 0, size: 0 };
      this.gauges.set(service, g);
    }
    const mark = ++g.mark;
    if (g.epoch !== s.epoch) this.healthEpoch.set(g.labels, (g.epoch = s.epoch));
    const failedOpen = s.failedOpen ? 1 : 0;
    if (g.failedOpen !== failedOpen) this.serviceFailedOpen.set(g.labels, (g.failedOpen = failedOpen));
    const degraded = s.degraded ? 1 : 0;
    if (g.degraded !== degraded) this.serviceDegraded.set(g.labels, (g.degraded = degraded));
    const diverged = s.diverged ? 1 : 0;
    if (g.diverged !== diverged) this.serviceDiverged.set(g.labels, (g.diverged = diverged));
    for (const m of s.members) {
      let families = g.members.get(m.member);
      if (families === undefined) {
        families = new Map();
        g.members.set(m.member, families);
      }
      let mg = families.get(m.family);
      if (mg === undefined) {
        mg = { member: m.member, family: m.family, labels: { service, member: m.member, family: m.family }, up: undefined, local: undefined, mark };
        families.set(m.family, mg);
        g.size++;
        this.track(service, m.member, `u|${m.member}|${m.family}`, this.memberUp, mg.labels, true);
        this.track(service, m.member, `l|${m.member}|${m.family}`, this.memberLocalUp, mg.labels, true);
      }
      mg.mark = mark;
      const up = upValue(m.status);
      if (mg.up !== up) this.memberUp.set(mg.labels, (mg.up = up));
      const local = upValue(m.local.status);
      if (mg.local !== local) this.memberLocalUp.set(mg.labels, (mg.local = local));
      this.setOverride(service, m.member, m.override?.action);
    }
    // Usually every member was in the update: check before looking for the ones that were not.
    if (s.members.length !== g.size) {
      for (const [member, families] of [...g.members]) {
        for (const mg of [...families.values()]) if (mg.mark !== mark) this.dropMemberGauges(service, g, mg);
        // A member gone from the service altogether takes its override series along.
        if (families.size === 0) this.setOverride(service, member, undefined);
      }
    }
    return service;
  }

  private dropMemberGauges(service: string, g: ServiceGauges, mg: MemberGauges): void {
    this.memberUp.remove(mg.labels);
    this.memberLocalUp.remove(mg.labels);
    const series = this.tracked.get(service);
    series?.delete(`u|${mg.member}|${mg.family}`);
    series?.delete(`l|${mg.member}|${mg.family}`);
    const families = g.members.get(mg.member);
    families?.delete(mg.family);
    if (families?.size === 0) g.members.delete(mg.member);
    g.size--;
  }

  /** Removes the member and override gauges of a service no longer in the state (its per-service gauges go with stateServices). */
  private dropServiceGauges(service: string): void {
    const g = this.gauges.get(service);
    if (g === undefined) return;
    for (const families of [...g.members.values()]) for (const mg of [...families.values()]) this.dropMemberGauges(service, g, mg);
    for (const member of [...(this.overrides.get(service)?.keys() ?? [])]) this.setOverride(service, member, undefined);
    this.gauges.delete(service);
    const series = this.tracked.get(service);
    if (series?.size === 0) this.tracked.delete(service);
  }

  private updateReplication(rep: MetricsState['replication']): void {
    if (rep.redis === 'none') return;
    this.replication();
    this.redisConnected.set(rep.redis === 'connected' ? 1 : 0);
    let fresh = 0;
    let lagMs = 0;
    let diverged = 0;
    for (const n of rep.nodes) {
      if (n.fresh) fresh++;
      if (n.fresh && !n.self) lagMs = Math.max(lagMs, n.lastSeenMs);
      if (n.diverged) diverged++;
    }
    this.replicationNodes.set({ state: 'fresh' }, fresh);
    this.replicationNodes.set({ state: 'stale' }, rep.nodes.length - fresh);
    this.replicationLag.set(lagMs / 1000);
    this.nodesDiverged.set(diverged);
  }

  private setDrainRatio(service: string, ratio: number): void {
    if (this.drainRatios.get(service) === ratio) return;
    this.drainRatios.set(service, ratio);
    this.drainRatio.set({ service }, ratio);
  }

  /**
   * The service's answer changed (its health epoch is now `epoch`). A burst
   * reports a thousand of these at once, and prom-client hashes the labels
   * on every inc and set: they are counted here and handed to prom-client
   * when /metrics is scraped (render), as failed-open answers are.
   */
  answerChanged(service: string, epoch?: number): void {
    const p = this.changesPending.get(service);
    if (p === undefined) this.changesPending.set(service, { n: 1, epoch });
    else {
      p.n++;
      if (epoch !== undefined) p.epoch = epoch;
    }
  }

  private flushAnswerChanges(): void {
    for (const [service, p] of this.changesPending) {
      const g = this.gauges.get(service);
      const labels = g?.labels ?? { service };
      this.answerChanges.inc(labels, p.n);
      if (p.epoch === undefined) continue;
      this.healthEpoch.set(labels, p.epoch);
      if (g !== undefined) g.epoch = p.epoch;
    }
    this.changesPending.clear();
  }

  /** Cheap enough to call per query: a map update; prom-client sees the sum at the next scrape. */
  failedOpenAnswer(service: string, n = 1): void {
    this.failedOpenPending.set(service, (this.failedOpenPending.get(service) ?? 0) + n);
  }

  // --- config ---

  /** The config with this hash is now served (at start; configReloaded calls it on success). Keeps one vigil_config_info series. */
  configLoaded(hash: string, atMs: number = Date.now()): void {
    this.configInfo.reset();
    this.configInfo.set({ hash }, 1);
    this.configLastSuccess.set(atMs / 1000);
  }

  /** A reload finished: counted by result; on success `hash` is the config now served. */
  configReloaded(ok: boolean, hash?: string, atMs: number = Date.now()): void {
    this.configReloads.inc({ result: ok ? 'success' : 'failure' });
    if (ok && hash !== undefined) this.configLoaded(hash, atMs);
  }

  // --- drain tracking ---

  /** Once per answer change, when 90% of the resolvers active before it have re-fetched (DrainTracker's onThreshold at 0.9). */
  drainTime90(service: string, seconds: number): void {
    this.drainTime.observe({ service }, seconds);
  }

  // --- RRL ---

  rrlResponse(action: RrlAction, n = 1): void {
    this.rrlResponses.inc({ action }, n);
  }

  // --- cleanup after a reload ---

  /**
   * Removes every series of a service (by its label, as in updateState) and
   * of its members, so /metrics stays bounded across reloads. Probe-check
   * counters go by the service name in the member ids.
   */
  removeService(service: string): void {
    for (const m of [...this.perServiceGauges, ...this.perServiceOthers]) m.remove({ service });
    this.failedOpenPending.delete(service);
    this.changesPending.delete(service);
    this.stateServices.delete(service);
    this.gauges.delete(service);
    this.drainRatios.delete(service);
    this.forget(service, () => true);
    this.overrides.delete(service);
    // Probe checks are filed under the name in the member ids, without "@views"; a
    // same-named service in other views keeps its gauges (they are under its own label).
    const at = service.indexOf('@');
    if (at >= 0) this.forget(service.slice(0, at), (s) => !s.gauge);
  }

  /** Removes the series of one member (a reload removed it from a service that stays). */
  removeMember(member: string): void {
    for (const [service, series] of this.tracked) {
      for (const [key, s] of series) {
        if (s.member !== member) continue;
        s.metric.remove(s.labels);
        series.delete(key);
      }
      this.overrides.get(service)?.delete(member);
    }
    for (const g of this.gauges.values()) {
      const families = g.members.get(member);
      if (families === undefined) continue;
      g.size -= families.size;
      g.members.delete(member);
    }
  }

  /** The member's active override in this service, or undefined when it has none (its series is removed). */
  private setOverride(service: string, member: string, action: OverrideAction | undefined): void {
    let actions = this.overrides.get(service);
    const old = actions?.get(member);
    if (old === action) return;
    if (old !== undefined) {
      this.memberOverride.remove({ service, member, action: old });
      this.tracked.get(service)?.delete(`o|${member}|${old}`);
      actions!.delete(member);
    }
    if (action === undefined) return;
    const labels = { service, member, action };
    this.track(service, member, `o|${member}|${action}`, this.memberOverride, labels, true);
    this.memberOverride.set(labels, 1);
    if (actions === undefined) {
      actions = new Map();
      this.overrides.set(service, actions);
    }
    actions.set(member, action);
  }

  private forget(service: string, which: (s: TrackedSeries) => boolean): void {
    const series = this.tracked.get(service);
    if (series === undefined) return;
    for (const [key, s] of series) {
      if (!which(s)) continue;
      s.metric.remove(s.labels);
      series.delete(key);
    }
    if (series.size === 0) this.tracked.delete(service);
  }

  private track(service: string, member: string, key: string, metric: TrackedSeries['metric'], labels: Record<string, string>, gauge: boolean): void {
    let series = this.tracked.get(service);
    if (series === undefined) {
      series = new Map();
      this.tracked.set(service, series);
    }
    if (!series.has(key)) series.set(key, { metric, labels, member, gauge });
  }

  private replication(): void {
    if (this.replicationRegistered) return;
    this.replicationRegistered = true;
    for (const m of this.replicationMetrics) this.registry.registerMetric(m);
  }
}
