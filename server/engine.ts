// Ties the flow together: config → own probes (HealthMonitor) → verdicts of
// every node (HealthStore) → consensus → operator overrides → service answers
// → snapshot → listeners. Any input change (a probe verdict, another node's
// verdict, an override, a scheduled step) recomputes the answers of the
// services it touches; a new snapshot is built, from the last one, only when
// an answer changed, so the answer memo survives the heartbeats of other
// nodes. Nothing here runs per query.

import { EventEmitter } from 'node:events';
import { hash } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { HealthMonitor, type CheckEvent } from '../probes/monitor.js';
import { healthKey, type FamilyHealth, type HealthSnapshot } from '../probes/health/state.js';
import { computeConsensus, type ConsensusResult, type MemberVotes } from '../probes/replication/consensus.js';
import { applyOverrides, type OverrideResult } from '../probes/replication/overrides.js';
import { LocalStore } from '../probes/replication/local-store.js';
import { RedisStore } from '../probes/replication/redis-store.js';
import type { AuditEntry, HealthStore, NodeReport, Override, OverrideAction, Verdict } from '../probes/replication/types.js';
import { computeServiceAnswer } from './answer/policy/compute.js';
import type { ServiceAnswer, ServiceRuntime } from './answer/policy/types.js';
import { SnapshotBuilder, serviceKey, serviceLabel, type Snapshot } from './answer/snapshot.js';
import { startServer, type StartOptions, type VigilServer } from './server.js';
import { formatName } from './wire/name.js';
import type { CompiledConfig } from '../zones/zone.js';
import type { CompiledMember, CompiledService } from '../zones/service.js';

export interface MemberState {
  /** CompiledMember.id, what overrides name. */
  readonly member: string;
  readonly name: string;
  readonly family: 'v4' | 'v6';
  readonly address: string;
  /** The state answers follow: consensus of the nodes, then overrides. */
  readonly status: string;
  readonly reason: string;
  readonly held: boolean;
  readonly since: number | null;
  /** This node's own probes. */
  readonly local: { readonly status: string; readonly reason: string };
  readonly votes: MemberVotes;
  readonly override?: Override;
}

export interface ServiceState {
  readonly name: string;
  readonly key: string;
  readonly views: readonly string[];
  readonly policy: string;
  /** Cluster-wide answer version; 0 until the first answer's epoch is known. */
  readonly epoch: number;
  readonly answer: string;
  readonly ttl: number;
  readonly degraded: boolean;
  readonly failedOpen: boolean;
  /** Another node has served a different epoch for longer than divergence_after. */
  readonly diverged: boolean;
  readonly members: readonly MemberState[];
}

export interface NodeState {
  readonly id: string;
  readonly pop: string;
  readonly fresh: boolean;
  /** ms since we last heard from it (0 for this node). */
  readonly lastSeenMs: number;
  readonly self: boolean;
  readonly diverged: boolean;
}

export interface EngineState {
  readonly node: { readonly id: string; readonly pop: string };
  readonly replication: {
    readonly redis: 'connected' | 'disconnected' | 'none';
    readonly disconnectedSince: number | null;
    /** Other nodes' last verdicts count although Redis is gone (within outage_grace). */
    readonly frozen: boolean;
    readonly quorum: string;
    readonly nodes: readonly NodeState[];
  };
  readonly services: readonly ServiceState[];
}

export interface AnswerChange {
  readonly service: string;
  /** serviceLabel(): the name, plus "@views" for a service limited to views. */
  readonly label: string;
  readonly key: string;
  readonly views: readonly string[];
  readonly from: string | null;
  readonly to: string;
  readonly ttl: number;
  /** Seconds a cache may still hold the answer being replaced (the longest TTL it was served with, counted down). */
  readonly oldTtl: number;
  readonly epoch: number;
  /** When the new answer started being served. */
  readonly at: number;
  readonly failedOpen: boolean;
  readonly degraded: boolean;
  readonly cause: string;
}

/** What stateChanges() returns: the services whose state may have changed since a version, and the replication state now. */
export interface StateChanges {
  /** Pass this to the next stateChanges() call. */
  readonly version: number;
  /** Every service is listed (the first call, or the config changed since): entries missing from `services` are gone. */
  readonly all: boolean;
  /** In config order. */
  readonly services: readonly ServiceState[];
  readonly replication: EngineState['replication'];
}

export interface EngineEvents {
  /** After every recompute and divergence check: gauges may read state() (or, cheaper, stateChanges()). */
  update: [];
  /** An answer changed and its epoch is known. */
  answerChange: [change: AnswerChange];
  /** Every probe check of this node. */
  check: [event: CheckEvent];
  /** Redis reachable or not. */
  connection: [connected: boolean];
  /**
   * A new snapshot is served, built from this config and these answers (by
   * serviceKey): what other serving processes need to build the same one.
   * `changed`: the service keys whose answers differ from the previous
   * snapshot's; undefined after a start or reload (everything).
   */
  snapshot: [config: CompiledConfig, answers: ReadonlyMap<string, ServiceAnswer>, changed: readonly string[] | undefined];
}

export interface EngineOptions {
  readonly logger?: Logger;
  readonly now?: () => number;
  /** Replaces the store the config asks for (tests). */
  readonly store?: HealthStore;
  /** Passed to startServer (the query observer). */
  readonly serverOptions?: Omit<StartOptions, 'logger' | 'snapshot'>;
  /**
   * A recompute for more services than this (a burst of changes) computes
   * them this many per turn of the event loop, answering queries between
   * turns, and swaps in the new snapshot at the end. Default 50 (about 1 ms of work a turn).
   */
  readonly recomputeChunk?: number;
}

export class UnknownMember extends Error {
  override name = 'UnknownMember';
}

export interface OverrideRequest {
  readonly member: string;
  readonly action: OverrideAction;
  readonly reason: string;
  readonly by: string;
  readonly forMs?: number;
}

/** Timers are capped so a far-off step does not overflow setTimeout, and floored so a past one does not spin. */
const MIN_DELAY_MS = 10;
const MAX_DELAY_MS = 3_600_000;
/** How often served epochs are compared with the other nodes'. */
const DIVERGENCE_CHECK_MS = 1_000;

type Cause = 'start' | 'health' | 'replication' | 'reload' | 'schedule';

function hashSummary(summary: string): string {
  return hash('sha256', summary).slice(0, 16);
}

/**
 * Whether a member's health (one family) may change its services' answers:
 * it appeared, went, or changed status, since or hold, or a change is in
 * progress either side (that caps the TTL by the time left, which moves with
 * the clock, so such a service is computed again at every recompute).
 */
function healthMoved(a: FamilyHealth | undefined, b: FamilyHealth | undefined): boolean {
  if (a === b) return a?.nextChangeAt !== undefined;
  if (a === undefined || b === undefined) return true;
  return a.status !== b.status || a.since !== b.since || a.held !== b.held || a.nextChangeAt !== undefined || b.nextChangeAt !== undefined;
}

/** Keys whose value differs between two maps (identity), either side. */
function* mapChanges<K, V>(before: ReadonlyMap<K, V>, after: ReadonlyMap<K, V>): Generator<K> {
  if (before === after) return;
  for (const [k, v] of after) if (before.get(k) !== v) yield k;
  for (const k of before.keys()) if (!after.has(k)) yield k;
}

/** The member id of a healthKey (`${member id}|${family}`). */
function memberOfKey(key: string): string {
  return key.slice(0, key.lastIndexOf('|'));
}

/** One address family of one member that has an address in it: what state() lists. */
interface MemberSlot {
  readonly member: CompiledMember;
  readonly family: 'v4' | 'v6';
  readonly address: string;
  /** healthKey(member.id, family). */
  readonly key: string;
}

/** What state(), logs and events say of a service, made once per config rather than once per call. */
interface ServiceInfo {
  /** serviceKey(). */
  readonly key: string;
  /** Presentation form. */
  readonly name: string;
  /** serviceLabel(). */
  readonly label: string;
  readonly slots: readonly MemberSlot[];
}

/** Lookups the recompute needs, made once per config. */
interface ConfigIndex {
  readonly config: CompiledConfig;
  readonly info: ReadonlyMap<CompiledService, ServiceInfo>;
  /** serviceKey() of each service, which builds a string per call. */
  readonly keys: ReadonlyMap<CompiledService, string>;
  readonly byKey: ReadonlyMap<string, CompiledService>;
  /** Position in config.services: services computed again are taken in config order, as a full pass takes them. */
  readonly order: ReadonlyMap<CompiledService, number>;
  /** Member id → the services it is a member of (two, for a name served by different services in disjoint views). */
  readonly byMember: ReadonlyMap<string, readonly CompiledService[]>;
  /** Name key → services of that name (failback approvals go by name). */
  readonly byName: ReadonlyMap<string, readonly CompiledService[]>;
}

function indexConfig(config: CompiledConfig): ConfigIndex {
  const keys = new Map<CompiledService, string>();
  const byKey = new Map<string, CompiledService>();
  const order = new Map<CompiledService, number>();
  const byMember = new Map<string, CompiledService[]>();
  const byName = new Map<string, CompiledService[]>();
  const add = (m: Map<string, CompiledService[]>, k: string, s: CompiledService): void => {
    const list = m.get(k);
    if (list === undefined) m.set(k, [s]);
    else if (!list.includes(s)) list.push(s);
  };
  const info = new Map<CompiledService, ServiceInfo>();
  config.services.forEach((s, i) => {
    const key = serviceKey(s);
    const slots: MemberSlot[] = [];
    for (const member of s.members) {
      for (const family of ['v4', 'v6'] as const) {
        const address = (family === 'v4' ? member.v4 : member.v6)[0];
        if (address !== undefined) slots.push({ member, family, address, key: healthKey(member.id, family) });
      }
    }
    info.set(s, { key, name: formatName(s.name), label: serviceLabel(s), slots });
    keys.set(s, key);
    byKey.set(key, s);
    order.set(s, i);
    for (const m of s.members) add(byMember, m.id, s);
    add(byName, s.name, s);
  });
  return { config, info, keys, byKey, order, byMember, byName };
}

/** `some` in the order of `all` (the config's services): a sort when they are few, a filter when many. */
function inConfigOrder(some: ReadonlySet<CompiledService>, index: ConfigIndex, all: readonly CompiledService[]): CompiledService[] {
  if (some.size * Math.log2(some.size + 2) < all.length) return [...some].sort((a, b) => index.order.get(a)! - index.order.get(b)!);
  return all.filter((s) => some.has(s));
}

/** A recompute under way (see Engine.prepare, computeOne, commit). */
interface Prepared {
  readonly cause: Cause;
  readonly now: number;
  readonly o: OverrideResult;
  /** Every service is computed (start, reload). */
  readonly full: boolean;
  /** The services to compute, in config order. */
  readonly todo: readonly CompiledService[];
  readonly results: { readonly service: CompiledService; readonly key: string; readonly answer: ServiceAnswer }[];
}

/** Services computed in one turn by a recompute spread over turns (EngineOptions.recomputeChunk). */
const RECOMPUTE_CHUNK = 50;
/** Answer changes reported (epoch claimed, logged, event emitted) in one turn; see reportChanges. */
const REPORT_SLICE = 25;

/** An answer change committed and not yet reported. */
interface PendingChange {
  readonly service: CompiledService;
  /** Taken at the commit: a reload before the report must not change whose change it is. */
  readonly info: ServiceInfo;
  readonly before: ServiceAnswer | undefined;
  readonly after: ServiceAnswer;
  readonly oldTtl: number;
  readonly cause: Cause;
  readonly at: number;
}

/** What the last consensus was computed from: the same inputs give the same result, so it is kept. */
interface ConsensusInputs {
  readonly local: HealthSnapshot;
  readonly remotes: readonly NodeReport[];
  readonly frozen: boolean;
  /** Which remotes were fresh (their order in `remotes`). */
  readonly fresh: readonly boolean[];
}

export class Engine extends EventEmitter<EngineEvents> {
  private config: CompiledConfig;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly monitor: HealthMonitor;
  readonly store: HealthStore;
  private server: VigilServer | undefined;
  private readonly serverOptions: EngineOptions['serverOptions'];
  private readonly answers = new Map<string, ServiceAnswer>();
  private readonly runtimes = new Map<string, ServiceRuntime>();
  private readonly epochs = new Map<string, number>();
  /**
   * Per service: the latest moment a cache may still hold a copy of the
   * current answer. The TTL served can shrink while a change is confirmed,
   * but copies handed out earlier at the full TTL are still out there; the
   * drain of the next change is measured against this, not the last TTL.
   */
  private readonly cachedUntil = new Map<string, number>();
  /** Answer changes committed and not yet reported, oldest first, from `reportedUpTo` on (see reportChanges). */
  private pendingChanges: PendingChange[] = [];
  private reportedUpTo = 0;
  private reporting: Promise<void> | undefined;
  private consensus: ConsensusResult;
  private overridden: HealthSnapshot;
  private activeOverrides: ReadonlyMap<string, Override> = new Map();
  /** `${node}\n${service key}` → when that node was first seen serving another epoch. */
  private readonly mismatchSince = new Map<string, number>();
  private readonly divergedServices = new Set<string>();
  private readonly divergedNodes = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private divergenceTimer: NodeJS.Timeout | undefined;
  private snapshot: Snapshot;
  private closed = false;
  /** The recompute that events asked for, run once for every event of the same turn (see recomputeSoon). */
  private soon: { cause: Cause; done: Promise<void> } | undefined;
  /** The probe worker reported a change not yet handed to the store. */
  private localChanged = false;
  private indexed: ConfigIndex | undefined;
  /** Makes each snapshot from the last, remaking only the records of services whose answer changed. */
  private readonly builder = new SnapshotBuilder();
  /** Services computed since the last snapshot build (their answer objects are new): what the builder must look at. */
  private readonly unbuilt = new Set<string>();
  /** recomputeAt of each service's current answer, by serviceKey: the services a recompute must take although nothing else changed. */
  private readonly scheduled = new Map<string, number>();
  private consensusInputs: ConsensusInputs | undefined;
  /** What the last applyOverrides was given and gave (see overridesOn). */
  private overridesInput: { readonly health: HealthSnapshot; readonly list: readonly Override[]; readonly result: OverrideResult } | undefined;
  /** This node's own health as state() last reported it changing (see markLocal). */
  private lastLocal: HealthSnapshot | undefined;
  /** See stateChanges(): a counter, the version of each service's last possible change, and of the last change of everything. */
  private stateVersion = 0;
  private readonly serviceVersions = new Map<string, number>();
  private allVersion = 0;
  /** The served epochs changed and are not yet published: published once per turn, not once per answer change. */
  private servedImmediate: NodeJS.Immediate | undefined;
  private readonly spreadChunk: number;
  /** The recompute spread over turns that is under way (see recomputeSpread); another one waits for spreadDone. */
  private spreading: object | undefined;
  private spreadDone: Promise<void> | undefined;

  constructor(config: CompiledConfig, opts: EngineOptions = {}) {
    super();
    this.config = config;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.now = opts.now ?? Date.now;
    this.serverOptions = opts.serverOptions;
    this.spreadChunk = Math.max(1, opts.recomputeChunk ?? RECOMPUTE_CHUNK);
    const rep = config.operations.replication;
    this.store =
      opts.store ??
      (rep.redis !== undefined
        ? new RedisStore({ ...rep, redis: rep.redis }, { logger: this.log, now: this.now })
        : new LocalStore(rep.node, { now: this.now }));
    this.monitor = new HealthMonitor({ logger: this.log });
    this.monitor.update(config.services);
    const empty = this.monitor.snapshot();
    this.consensus = { health: empty, votes: new Map(), fresh: [rep.node.id], stale: [] };
    this.overridden = empty;
    this.snapshot = this.recompute('start');
    this.monitor.on('change', () => {
      this.localChanged = true;
      void this.recomputeSoon('health');
    });
    this.monitor.on('check', (e) => this.emit('check', e));
    this.store.on('change', () => {
      void this.recomputeSoon('replication');
    });
    this.store.on('connection', (up) => {
      this.emit('connection', up);
      void this.recomputeSoon('replication');
    });
  }

  /** Connects the store (bounded when Redis is down), then binds the listeners and starts answering. */
  async start(): Promise<VigilServer> {
    await this.store.start();
    this.publishLocal(this.monitor.snapshot());
    this.snapshot = this.recompute('replication');
    this.server = await startServer(this.config, { ...this.serverOptions, logger: this.log, snapshot: this.snapshot });
    this.divergenceTimer = setInterval(() => this.checkDivergence(), DIVERGENCE_CHECK_MS);
    this.divergenceTimer.unref();
    return this.server;
  }

  /** Swaps in a new, already validated config; members whose id and probe are unchanged keep their health. */
  reload(next: CompiledConfig): void {
    const before = this.config.operations.replication;
    const after = next.operations.replication;
    if (JSON.stringify({ ...before, redis: undefined }) !== JSON.stringify({ ...after, redis: undefined }) || JSON.stringify(before.redis) !== JSON.stringify(after.redis)) {
      this.log.warn('node and replication settings changed: they take effect at the next restart');
    }
    this.config = { ...next, operations: { ...next.operations, node: this.config.operations.node, replication: before } };
    const keep = new Set(next.services.map(serviceKey));
    for (const k of [...this.runtimes.keys()]) if (!keep.has(k)) this.runtimes.delete(k);
    for (const k of [...this.answers.keys()]) if (!keep.has(k)) this.answers.delete(k);
    for (const k of [...this.epochs.keys()]) if (!keep.has(k)) this.epochs.delete(k);
    for (const k of [...this.cachedUntil.keys()]) if (!keep.has(k)) this.cachedUntil.delete(k);
    for (const k of [...this.scheduled.keys()]) if (!keep.has(k)) this.scheduled.delete(k);
    for (const k of [...this.serviceVersions.keys()]) if (!keep.has(k)) this.serviceVersions.delete(k);
    this.monitor.update(next.services);
    this.consensusInputs = undefined;
    this.overridesInput = undefined;
    this.snapshot = this.recompute('reload');
  }

  /** Lets a service held by `failback: manual` return to its better members. False when no such service. */
  approveFailback(name: string): boolean {
    const found = this.findService(name);
    if (found === undefined) return false;
    this.monitor.approveFailback(found.name, this.now());
    return true;
  }

  /** Sets an override on every node (through the store). Throws UnknownMember for an id no service has. */
  async setOverride(req: OverrideRequest): Promise<Override> {
    if (!this.memberIds().has(req.member)) {
      throw new UnknownMember(`no member "${req.member}" (member ids look like "www.example.test./primary"; see GET /state)`);
    }
    const at = this.now();
    const o: Override = {
      member: req.member,
      action: req.action,
      reason: req.reason,
      by: req.by,
      at,
      ...(req.forMs !== undefined ? { expiresAt: at + req.forMs } : {}),
    };
    await this.store.setOverride(o);
    this.log.warn({ member: o.member, action: o.action, by: o.by, reason: o.reason, expiresAt: o.expiresAt }, 'override set');
    // Served from when the promise resolves; many at once (a script draining a PoP) share one rebuild.
    await this.recomputeSoon('replication');
    return o;
  }

  async clearOverride(member: string, by: string, reason: string): Promise<boolean> {
    const ok = await this.store.clearOverride(member, by, reason);
    if (ok) this.log.warn({ member, by, reason }, 'override cleared');
    await this.recomputeSoon('replication');
    return ok;
  }

  /**
   * Health verdicts, replication messages and overrides arrive one member at a
   * time, often hundreds in one turn of the event loop (a PoP losing a
   * backend network, a resync). Each would cost a pass over every service and
   * a snapshot rebuild that empties the answer memo; instead they share one,
   * run after the turn's I/O callbacks (setImmediate), a fraction of a
   * millisecond later (over several turns when it is large: recomputeSpread).
   */
  private recomputeSoon(cause: Cause): Promise<void> {
    if (this.soon !== undefined) {
      if (cause === 'health') this.soon.cause = cause;
      return this.soon.done;
    }
    const soon: { cause: Cause; done: Promise<void> } = {
      cause,
      done: new Promise<void>((resolve) => {
        setImmediate(() => {
          void (async () => {
            try {
              // One spread over turns is under way: it commits first, then this one starts from what it left.
              while (this.spreading !== undefined && !this.closed) await this.spreadDone;
              this.soon = undefined;
              if (this.closed) return;
              if (this.localChanged) {
                this.localChanged = false;
                this.publishLocal(this.monitor.snapshot());
              }
              await this.recomputeSpread(soon.cause);
            } finally {
              resolve();
            }
          })();
        });
      }),
    };
    this.soon = soon;
    return soon.done;
  }

  auditLog(count: number): Promise<readonly AuditEntry[]> {
    return this.store.auditLog(count);
  }

  /** Every member id of the current config (a script draining hundreds of members asks once per member). */
  private memberIds(): ReadonlyMap<string, unknown> {
    return this.index().byMember;
  }

  private index(): ConfigIndex {
    if (this.indexed?.config !== this.config) this.indexed = indexConfig(this.config);
    return this.indexed;
  }

  /** What the current snapshot was built from (see the 'snapshot' event). */
  servingState(): { config: CompiledConfig; answers: ReadonlyMap<string, ServiceAnswer> } {
    return { config: this.config, answers: this.answers };
  }

  current(): Snapshot {
    return this.snapshot;
  }

  /** Zones loaded and probes running. */
  ready(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (this.server === undefined) reasons.push('listeners not started');
    if (!this.monitor.running) reasons.push('probe worker not running');
    const pending = this.config.pendingZones;
    if (pending !== undefined) reasons.push(`zones not loaded yet: ${[...pending].map(formatName).join(', ')}`);
    return { ready: reasons.length === 0, reasons };
  }

  state(): EngineState {
    const now = this.now();
    const local = this.monitor.snapshot();
    return { node: { id: this.config.operations.node.id, pop: this.config.operations.node.pop }, replication: this.replicationState(now), services: this.config.services.map((s) => this.serviceState(s, local)) };
  }

  /**
   * The services whose entry in state() may have changed since `since` (a
   * version an earlier call returned; 0 for all): their epoch, answer, TTL,
   * degraded, failed-open or diverged flag, or a member's status, hold,
   * since, local status or override. Member reasons and votes are not
   * followed (they change with every heartbeat); read state() for those.
   * What the metrics need after each update without rebuilding the state of
   * every service: a burst that changed a hundred services costs a hundred.
   */
  stateChanges(since: number): StateChanges {
    const now = this.now();
    const local = this.monitor.snapshot();
    this.markLocal(local);
    const index = this.index();
    const all = since < this.allVersion;
    const services: ServiceState[] = [];
    if (all) {
      for (const s of this.config.services) services.push(this.serviceState(s, local));
    } else {
      const changed = new Set<CompiledService>();
      for (const [key, v] of this.serviceVersions) {
        const s = v > since ? index.byKey.get(key) : undefined;
        if (s !== undefined) changed.add(s);
      }
      for (const s of inConfigOrder(changed, index, this.config.services)) services.push(this.serviceState(s, local));
    }
    return { version: this.stateVersion, all, services, replication: this.replicationState(now) };
  }

  private serviceState(s: CompiledService, local: HealthSnapshot): ServiceState {
    const info = this.index().info.get(s)!;
    const key = info.key;
    const a = this.answers.get(key);
    const members: MemberState[] = [];
    for (const { member: m, family, address, key: hk } of info.slots) {
      const h = this.overridden.members.get(hk);
      const own = local.members.get(hk);
      const override = this.activeOverrides.get(m.id);
      members.push({
        member: m.id,
        name: m.name,
        family,
        address,
        status: h?.status ?? s.initialState,
        reason: h?.reason ?? 'no verdict yet',
        held: h?.held ?? false,
        since: h?.since ?? null,
        local: { status: own?.status ?? s.initialState, reason: own?.reason ?? 'no verdict yet' },
        votes: this.consensus.votes.get(hk) ?? { up: [], down: [], unknown: [], required: 1 },
        ...(override !== undefined ? { override } : {}),
      });
    }
    return {
      name: info.name,
      key,
      views: s.views,
      policy: s.policy,
      epoch: this.epochs.get(key) ?? 0,
      answer: a?.summary ?? '',
      ttl: a?.ttl ?? s.ttl,
      degraded: a?.degraded ?? false,
      failedOpen: a?.failedOpen ?? false,
      diverged: this.divergedServices.has(key),
      members,
    };
  }

  private replicationState(now: number): EngineState['replication'] {
    const self = this.config.operations.node;
    const rep = this.config.operations.replication;
    const fresh = new Set(this.consensus.fresh);
    const nodes: NodeState[] = [
      { id: self.id, pop: self.pop, fresh: true, lastSeenMs: 0, self: true, diverged: false },
      ...this.store.reports().map((r) => ({
        id: r.node,
        pop: r.pop,
        fresh: fresh.has(r.node),
        lastSeenMs: Math.max(0, now - r.lastSeen),
        self: false,
        diverged: this.divergedNodes.has(r.node),
      })),
    ];
    return {
      redis: rep.redis === undefined ? 'none' : this.store.connected ? 'connected' : 'disconnected',
      disconnectedSince: this.store.disconnectedSince ?? null,
      frozen: this.frozen(now),
      quorum: rep.quorum.mode === 'majority' ? 'majority' : `${rep.quorum.k} of n`,
      nodes,
    };
  }

  /** A service's entry in state() may have changed (see stateChanges). */
  private touched(key: string): void {
    this.serviceVersions.set(key, ++this.stateVersion);
  }

  /** Every service's entry may have changed (start, reload). */
  private touchedAll(): void {
    this.allVersion = ++this.stateVersion;
  }

  /** Marks the services whose members' local status changed since the local health state() last saw. */
  private markLocal(local: HealthSnapshot): void {
    const before = this.lastLocal;
    this.lastLocal = local;
    if (before === undefined || before === local) return;
    const byMember = this.index().byMember;
    const mark = (k: string): void => {
      for (const s of byMember.get(memberOfKey(k)) ?? []) this.touched(this.index().keys.get(s)!);
    };
    for (const [k, h] of local.members) if (before.members.get(k)?.status !== h.status) mark(k);
    for (const k of before.members.keys()) if (!local.members.has(k)) mark(k);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.divergenceTimer !== undefined) clearInterval(this.divergenceTimer);
    this.timer = undefined;
    if (this.servedImmediate !== undefined) clearImmediate(this.servedImmediate);
    this.servedImmediate = undefined;
    await this.server?.close();
    await this.monitor.close();
    await this.reporting;
    await this.store.close();
  }

  private findService(name: string): CompiledService | undefined {
    const want = name.endsWith('.') ? name.toLowerCase() : `${name.toLowerCase()}.`;
    return this.config.services.find((s) => formatName(s.name).toLowerCase() === want);
  }

  private nameOfKey(key: string): string {
    const s = this.config.services.find((x) => serviceKey(x) === key);
    return s !== undefined ? formatName(s.name) : key;
  }

  private frozen(now: number): boolean {
    const since = this.store.disconnectedSince;
    return since !== undefined && now - since < this.config.operations.replication.outageGraceMs;
  }

  private publishLocal(local: HealthSnapshot): void {
    const verdicts = new Map<string, Verdict>();
    for (const [k, h] of local.members) verdicts.set(k, { status: h.status, since: h.since, reason: h.reason });
    this.store.publishVerdicts(verdicts);
  }

  /**
   * The same consensus inputs give the same result: a burst of overrides
   * changes none of them, and computing it is a pass over every member.
   */
  private consensusFor(now: number): { health: HealthSnapshot; computed: boolean } {
    const rep = this.config.operations.replication;
    const local = this.monitor.snapshot();
    const remotes = this.store.reports();
    const frozen = this.frozen(now);
    const fresh = remotes.map((r) => frozen || now - r.lastSeen <= rep.staleAfterMs);
    const last = this.consensusInputs;
    if (
      last !== undefined &&
      last.local === local &&
      last.frozen === frozen &&
      (last.remotes === remotes || (last.remotes.length === 0 && remotes.length === 0)) &&
      last.fresh.every((f, i) => f === fresh[i])
    ) {
      return { health: this.consensus.health, computed: false };
    }
    this.consensus = computeConsensus({
      self: rep.node,
      local,
      remotes,
      quorum: rep.quorum,
      staleAfterMs: rep.staleAfterMs,
      now,
      frozen,
      previous: this.consensus.health,
    });
    this.consensusInputs = { local, remotes, frozen, fresh };
    return { health: this.consensus.health, computed: true };
  }

  /**
   * The consensus with the overrides laid over it. The same health and the
   * same overrides (the same objects: a store hands out what it holds) give
   * the same result until the first of them lapses, and the store's own
   * 'change' after a burst of overrides asks for a recompute that would
   * otherwise copy every member's health again for nothing.
   */
  private overridesOn(health: HealthSnapshot, now: number): OverrideResult {
    const list = this.store.overrides();
    const last = this.overridesInput;
    if (
      last !== undefined &&
      last.health === health &&
      last.list.length === list.length &&
      last.list.every((o, i) => o === list[i]) &&
      (last.result.nextExpiry === undefined || last.result.nextExpiry > now)
    ) {
      return last.result;
    }
    const result = applyOverrides(health, list, now);
    this.overridesInput = { health, list, result };
    return result;
  }

  /**
   * Computes the answers again and builds a snapshot when one changed. On
   * start and reload every service is computed; otherwise only the services
   * whose inputs changed (a member's health, a failback approval) or whose
   * answer asked to be computed again by now (recomputeAt), in config order,
   * so a burst that touches a hundred services of ten thousand costs a hundred.
   * A service left alone keeps its answer, which a full pass would compute
   * the same. Its cachedUntil is not advanced either: the next change of its
   * answer takes max(cachedUntil, now + ttl) with that same TTL and a later
   * now, which covers every moment it was left alone.
   */
  private recompute(cause: Cause): Snapshot {
    // Whatever a recompute spread over turns was doing, this one computes from the current inputs.
    this.abortSpread();
    const p = this.prepare(cause);
    for (const service of p.todo) this.computeOne(p, service);
    return this.commit(p);
  }

  /**
   * What a recompute starts from: inputs, the services to compute, the time.
   * Nothing the engine serves or reports changes here (only caches of the
   * inputs), so a prepared recompute can be dropped unfinished.
   */
  private prepare(cause: Cause): Prepared {
    const now = this.now();
    const index = this.index();
    const previous = this.consensus.health;
    const consensus = this.consensusFor(now);
    if (cause !== 'start' && consensus.computed) this.auditConsensus(previous, consensus.health);
    const o = this.overridesOn(consensus.health, now);
    const previousHealth = this.overridden;
    const services = this.config.services;
    // Start and reload compute every service; so does anything that left a service without an answer.
    const full = cause === 'start' || cause === 'reload' || this.answers.size < services.length;
    if (full) return { cause, now, o, full, todo: services, results: [] };
    const hit = new Set<CompiledService>();
    const byMember = (k: string): void => {
      for (const s of index.byMember.get(memberOfKey(k)) ?? []) hit.add(s);
    };
    for (const [k, h] of o.health.members) if (healthMoved(previousHealth.members.get(k), h)) byMember(k);
    for (const k of previousHealth.members.keys()) if (!o.health.members.has(k)) byMember(k);
    for (const name of mapChanges(previousHealth.failbackApproved, o.health.failbackApproved)) {
      for (const s of index.byName.get(name) ?? []) hit.add(s);
    }
    for (const [key, at] of this.scheduled) {
      const s = at <= now ? index.byKey.get(key) : undefined;
      if (s !== undefined) hit.add(s);
    }
    return { cause, now, o, full, todo: inConfigOrder(hit, index, services), results: [] };
  }

  private computeOne(p: Prepared, service: CompiledService): void {
    const key = this.index().keys.get(service)!;
    p.results.push({ service, key, answer: computeServiceAnswer(service, p.o.health, this.runtimes.get(key) ?? {}, p.now) });
  }

  /** Makes a prepared and computed recompute what the engine serves and reports, all in one turn. */
  private commit(p: Prepared): Snapshot {
    const { now, o, full, cause } = p;
    const rep = this.config.operations.replication;
    const index = this.index();
    const previousOverrides = this.activeOverrides;
    this.overridden = o.health;
    this.activeOverrides = o.active;
    if (full) this.touchedAll();
    else {
      // An override's details (who, why) show in state() without moving the answer.
      for (const m of mapChanges(previousOverrides, o.active)) {
        for (const s of index.byMember.get(m) ?? []) this.touched(index.keys.get(s)!);
      }
    }

    const changed: { service: CompiledService; before: ServiceAnswer | undefined; after: ServiceAnswer; oldTtl: number }[] = [];
    for (const { service, key, answer } of p.results) {
      const before = this.answers.get(key);
      this.runtimes.set(key, answer.runtime);
      this.answers.set(key, answer);
      this.unbuilt.add(key);
      if (answer.recomputeAt !== undefined) this.scheduled.set(key, answer.recomputeAt);
      else this.scheduled.delete(key);
      if (!full) this.touched(key);
      const heldUntil = before !== undefined ? Math.max(this.cachedUntil.get(key) ?? 0, now + before.ttl * 1000) : 0;
      if (before === undefined || before.summary !== answer.summary || before.ttl !== answer.ttl || before.failedOpen !== answer.failedOpen) {
        changed.push({ service, before, after: answer, oldTtl: Math.max(0, Math.ceil((heldUntil - now) / 1000)) });
      }
      if (before !== undefined && before.summary !== answer.summary) this.cachedUntil.delete(key);
      else if (before !== undefined) this.cachedUntil.set(key, heldUntil);
    }
    let next = o.nextExpiry;
    for (const at of this.scheduled.values()) if (next === undefined || at < next) next = at;
    // A fresh node ages out (and the outage grace ends) without any event: wake up for it.
    if (!this.frozen(now)) {
      for (const r of this.store.reports()) {
        const staleAt = r.lastSeen + rep.staleAfterMs + 1;
        if (staleAt > now && (next === undefined || staleAt < next)) next = staleAt;
      }
    } else {
      const graceEnd = this.store.disconnectedSince! + rep.outageGraceMs + 1;
      if (next === undefined || graceEnd < next) next = graceEnd;
    }

    let snapshot = this.snapshot;
    // Rebuilding throws away the answer memo: only when something served changed.
    if (cause === 'start' || cause === 'reload' || changed.length > 0) {
      const whole = cause === 'start' || cause === 'reload';
      const keys = whole ? undefined : [...this.unbuilt];
      snapshot = this.builder.build(this.config, this.answers, keys);
      this.unbuilt.clear();
      this.server?.swap(snapshot);
      this.emit('snapshot', this.config, this.answers, keys);
    }
    for (const c of changed) if (c.before?.summary !== c.after.summary) this.onAnswerChange(c.service, c.before, c.after, c.oldTtl, cause, now);
    this.schedule(next, now);
    this.emit('update');
    return snapshot;
  }

  /**
   * A recompute for an event (recomputeSoon): in one turn when it is small,
   * else its answers computed `spreadChunk` services per turn, so that
   * queries are answered between chunks, then committed in one turn, the
   * snapshot swapped at once as before. Until then the previous answers are
   * served and reported, all of them; a recompute that must run at once
   * (reload, start, a timer) drops an unfinished one and computes from the
   * current inputs instead.
   */
  private async recomputeSpread(cause: Cause): Promise<void> {
    const p = this.prepare(cause);
    if (p.todo.length <= this.spreadChunk) {
      for (const service of p.todo) this.computeOne(p, service);
      this.snapshot = this.commit(p);
      return;
    }
    const token = {};
    this.spreading = token;
    let done!: () => void;
    this.spreadDone = new Promise<void>((r) => (done = r));
    try {
      for (let i = 0; i < p.todo.length; i += this.spreadChunk) {
        // prepare() went over every member and override: the first chunk waits for the next turn too.
        await new Promise((r) => setImmediate(r));
        if (this.spreading !== token || this.closed) return;
        const from = p.results.length;
        for (const service of p.todo.slice(i, i + this.spreadChunk)) this.computeOne(p, service);
        // The records of the new answers are made now rather than in the commit's turn.
        for (const r of p.results.slice(from)) this.builder.stage(this.config, r.service, r.answer);
      }
      this.spreading = undefined;
      this.snapshot = this.commit(p);
    } finally {
      if (this.spreading === token) this.spreading = undefined;
      done();
    }
  }

  /** Drops a recompute spread over turns that has not committed (see recomputeSpread). */
  private abortSpread(): void {
    this.spreading = undefined;
  }

  /** Only the first fresh node (by id) writes consensus changes to the audit stream, so each change is logged once. */
  private auditConsensus(before: HealthSnapshot, after: HealthSnapshot): void {
    const self = this.config.operations.node.id;
    const leader = [...this.consensus.fresh].sort()[0];
    for (const [k, h] of after.members) {
      const was = before.members.get(k)?.status;
      if (was === undefined || was === h.status) continue;
      const [member = k, family = ''] = k.split('|');
      this.log.info({ member, family, from: was, to: h.status, reason: h.reason }, 'consensus changed');
      if (leader === self) {
        void this.store.audit('consensus.change', `node:${self}`, h.reason, { member, family, from: was, to: h.status }).catch(() => undefined);
      }
    }
  }

  private onAnswerChange(service: CompiledService, before: ServiceAnswer | undefined, after: ServiceAnswer, oldTtl: number, cause: Cause, at: number): void {
    this.pendingChanges.push({ service, info: this.index().info.get(service)!, before, after, oldTtl, cause, at });
    this.reporting ??= this.reportChanges();
  }

  /**
   * Reports committed answer changes: claims each one's epoch, logs it and
   * emits answerChange (the drain tracker and the metrics listen). A burst
   * commits a thousand changes at once, and reporting them all in the
   * commit's turn held the loop for 20-30 ms while queries waited; they are
   * reported REPORT_SLICE per turn instead, from the turn after the commit,
   * in commit order (so the epochs of one service follow the order of its
   * changes). The snapshot is served already: only the reporting lags.
   */
  private async reportChanges(): Promise<void> {
    try {
      while (this.reportedUpTo < this.pendingChanges.length && !this.closed) {
        await new Promise((r) => setImmediate(r));
        const end = Math.min(this.pendingChanges.length, this.reportedUpTo + REPORT_SLICE);
        const slice = this.pendingChanges.slice(this.reportedUpTo, end);
        this.reportedUpTo = end;
        if (end === this.pendingChanges.length) {
          this.pendingChanges = [];
          this.reportedUpTo = 0;
        }
        const epochs = await Promise.all(slice.map((c) => this.claimEpoch(c)));
        if (this.closed) return;
        // A reload since may have removed the service (and its metrics and drain series): nothing to report then.
        const byKey = this.index().byKey;
        for (let i = 0; i < slice.length; i++) if (byKey.has(slice[i]!.info.key)) this.reportChange(slice[i]!, epochs[i]);
        this.publishServedSoon();
      }
    } finally {
      this.reporting = undefined;
    }
  }

  /** The change's epoch from the store; undefined when the store failed (reportChange then counts on locally). */
  private async claimEpoch(c: PendingChange): Promise<number | undefined> {
    const info = c.info;
    try {
      return await this.store.claimEpoch(info.key, hashSummary(c.after.summary));
    } catch (err) {
      this.log.warn({ err, service: info.name }, 'could not claim an epoch; keeping a local one');
      return undefined;
    }
  }

  private reportChange(c: PendingChange, claimed: number | undefined): void {
    const { service, info, before, after } = c;
    const key = info.key;
    // Reported in order, so a service's epoch here is that of its previous change.
    const epoch = claimed ?? (this.epochs.get(key) ?? 0) + 1;
    this.epochs.set(key, epoch);
    this.touched(key);
    const change: AnswerChange = {
      service: info.name,
      label: info.label,
      key,
      views: service.views,
      from: before?.summary ?? null,
      to: after.summary,
      ttl: after.ttl,
      oldTtl: c.oldTtl,
      epoch,
      at: c.at,
      failedOpen: after.failedOpen,
      degraded: after.degraded,
      cause: c.cause,
    };
    // Failing open hands out members known to be down: an operator must see it.
    // The fields are made only for a level that is logged: a burst makes a thousand of these.
    if (this.log.isLevelEnabled(after.failedOpen ? 'warn' : 'info')) {
      const fields = { ...change, key: undefined, label: undefined, at: undefined };
      if (after.failedOpen) this.log.warn(fields, 'answer changed: no member healthy, failing open');
      else this.log.info(fields, 'answer changed');
    }
    this.emit('answerChange', change);
  }

  /**
   * Publishes the served epochs once for every answer change of this turn: a
   * burst of a thousand changes would otherwise hand the store (which sends
   * the whole map) a thousand copies.
   */
  private publishServedSoon(): void {
    this.servedImmediate ??= setImmediate(() => {
      this.servedImmediate = undefined;
      if (!this.closed) this.store.publishServed(this.epochs);
    });
  }

  private checkDivergence(): void {
    const now = this.now();
    const bound = this.config.operations.replication.divergenceAfterMs;
    const fresh = new Set(this.consensus.fresh);
    const seen = new Set<string>();
    for (const r of this.store.reports()) {
      if (!fresh.has(r.node)) continue;
      for (const [key, mine] of this.epochs) {
        const theirs = r.served.get(key);
        // A node that has not published this service yet (just started, older config) is not diverging.
        if (theirs === undefined || theirs === mine) continue;
        const id = `${r.node}\n${key}`;
        seen.add(id);
        if (!this.mismatchSince.has(id)) this.mismatchSince.set(id, now);
      }
    }
    for (const id of [...this.mismatchSince.keys()]) if (!seen.has(id)) this.mismatchSince.delete(id);
    const services = new Set<string>();
    const nodes = new Set<string>();
    for (const [id, since] of this.mismatchSince) {
      if (now - since < bound) continue;
      const [node = '', key = ''] = id.split('\n');
      services.add(key);
      nodes.add(node);
    }
    for (const key of services) {
      if (!this.divergedServices.has(key)) {
        const nodesFor = [...this.mismatchSince.keys()].filter((id) => id.endsWith(`\n${key}`)).map((id) => id.split('\n')[0]);
        this.log.warn({ service: this.nameOfKey(key), epoch: this.epochs.get(key), nodes: nodesFor, afterMs: bound }, 'nodes diverge: another node serves a different answer epoch');
      }
    }
    for (const key of this.divergedServices) if (!services.has(key)) this.log.info({ service: this.nameOfKey(key), epoch: this.epochs.get(key) }, 'nodes agree again');
    for (const key of services) if (!this.divergedServices.has(key)) this.touched(key);
    for (const key of this.divergedServices) if (!services.has(key)) this.touched(key);
    this.divergedServices.clear();
    for (const k of services) this.divergedServices.add(k);
    this.divergedNodes.clear();
    for (const n of nodes) this.divergedNodes.add(n);
    this.emit('update');
  }

  private schedule(at: number | undefined, now: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (at === undefined || this.closed) return;
    const delay = Math.min(MAX_DELAY_MS, Math.max(MIN_DELAY_MS, at - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // A recompute spread over turns is under way: queue behind it rather than redo its work in one block.
      if (this.spreading !== undefined) void this.recomputeSoon('schedule');
      else this.snapshot = this.recompute('schedule');
    }, delay);
    this.timer.unref();
  }
}
