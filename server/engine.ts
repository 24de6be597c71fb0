// Ties the flow together: config → own probes (HealthMonitor) → verdicts of
// every node (HealthStore) → consensus → operator overrides → service answers
// → snapshot → listeners. Any input change (a probe verdict, another node's
// verdict, an override, a scheduled step) recomputes the answers; a new
// snapshot is built only when an answer changed, so the answer memo survives
// the heartbeats of other nodes. Nothing here runs per query.

import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { HealthMonitor, type CheckEvent } from '../probes/monitor.js';
import { healthKey, type HealthSnapshot } from '../probes/health/state.js';
import { computeConsensus, type ConsensusResult, type MemberVotes } from '../probes/replication/consensus.js';
import { applyOverrides } from '../probes/replication/overrides.js';
import { LocalStore } from '../probes/replication/local-store.js';
import { RedisStore } from '../probes/replication/redis-store.js';
import type { AuditEntry, HealthStore, Override, OverrideAction, Verdict } from '../probes/replication/types.js';
import { computeServiceAnswer } from './answer/policy/compute.js';
import type { ServiceAnswer, ServiceRuntime } from './answer/policy/types.js';
import { buildSnapshot, serviceKey, serviceLabel, type Snapshot } from './answer/snapshot.js';
import { startServer, type StartOptions, type VigilServer } from './server.js';
import { formatName } from './wire/name.js';
import type { CompiledConfig } from '../zones/zone.js';
import type { CompiledService } from '../zones/service.js';

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

export interface EngineEvents {
  /** After every recompute and divergence check: gauges may read state(). */
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
   */
  snapshot: [config: CompiledConfig, answers: ReadonlyMap<string, ServiceAnswer>];
}

export interface EngineOptions {
  readonly logger?: Logger;
  readonly now?: () => number;
  /** Replaces the store the config asks for (tests). */
  readonly store?: HealthStore;
  /** Passed to startServer (the query observer). */
  readonly serverOptions?: Omit<StartOptions, 'logger' | 'snapshot'>;
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
  return createHash('sha256').update(summary).digest('hex').slice(0, 16);
}

/**
 * Whether a service's answer would come out the same: every member's health
 * unchanged and settled (a change in progress caps the TTL by the time left,
 * which moves with the clock), and no new failback approval.
 */
function sameInputs(service: CompiledService, before: HealthSnapshot, after: HealthSnapshot): boolean {
  if (before.failbackApproved.get(service.name) !== after.failbackApproved.get(service.name)) return false;
  for (const m of service.members) {
    for (const family of ['v4', 'v6'] as const) {
      const k = healthKey(m.id, family);
      const a = before.members.get(k);
      const b = after.members.get(k);
      if (a === b && a?.nextChangeAt === undefined) continue;
      if (a === undefined || b === undefined) return false;
      if (a.status !== b.status || a.since !== b.since || a.held !== b.held || a.nextChangeAt !== undefined || b.nextChangeAt !== undefined) return false;
    }
  }
  return true;
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
  private readonly epochChains = new Map<string, Promise<void>>();
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

  constructor(config: CompiledConfig, opts: EngineOptions = {}) {
    super();
    this.config = config;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.now = opts.now ?? Date.now;
    this.serverOptions = opts.serverOptions;
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
    this.monitor.update(next.services);
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
   * millisecond later.
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
          this.soon = undefined;
          try {
            if (this.closed) return;
            if (this.localChanged) {
              this.localChanged = false;
              this.publishLocal(this.monitor.snapshot());
            }
            this.snapshot = this.recompute(soon.cause);
          } finally {
            resolve();
          }
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
  private memberIds(): ReadonlySet<string> {
    if (this.memberIdsOf?.config !== this.config) {
      this.memberIdsOf = { config: this.config, ids: new Set(this.config.services.flatMap((s) => s.members.map((m) => m.id))) };
    }
    return this.memberIdsOf.ids;
  }

  private memberIdsOf: { config: CompiledConfig; ids: ReadonlySet<string> } | undefined;

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
    return { ready: reasons.length === 0, reasons };
  }

  state(): EngineState {
    const now = this.now();
    const local = this.monitor.snapshot();
    const self = this.config.operations.node;
    const services = this.config.services.map((s): ServiceState => {
      const key = serviceKey(s);
      const a = this.answers.get(key);
      const members: MemberState[] = [];
      for (const m of s.members) {
        for (const family of ['v4', 'v6'] as const) {
          const address = (family === 'v4' ? m.v4 : m.v6)[0];
          if (address === undefined) continue;
          const hk = healthKey(m.id, family);
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
      }
      return {
        name: formatName(s.name),
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
    });
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
      node: { id: self.id, pop: self.pop },
      replication: {
        redis: rep.redis === undefined ? 'none' : this.store.connected ? 'connected' : 'disconnected',
        disconnectedSince: this.store.disconnectedSince ?? null,
        frozen: this.frozen(now),
        quorum: rep.quorum.mode === 'majority' ? 'majority' : `${rep.quorum.k} of n`,
        nodes,
      },
      services,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.divergenceTimer !== undefined) clearInterval(this.divergenceTimer);
    this.timer = undefined;
    await this.server?.close();
    await this.monitor.close();
    await Promise.allSettled([...this.epochChains.values()]);
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

  private recompute(cause: Cause): Snapshot {
    const now = this.now();
    const rep = this.config.operations.replication;
    const previous = this.consensus.health;
    this.consensus = computeConsensus({
      self: rep.node,
      local: this.monitor.snapshot(),
      remotes: this.store.reports(),
      quorum: rep.quorum,
      staleAfterMs: rep.staleAfterMs,
      now,
      frozen: this.frozen(now),
      previous,
    });
    if (cause !== 'start') this.auditConsensus(previous, this.consensus.health);
    const o = applyOverrides(this.consensus.health, this.store.overrides(), now);
    const previousHealth = this.overridden;
    this.overridden = o.health;
    // A health or replication event usually concerns a few members: services whose
    // inputs are unchanged keep their answer (start, reload and timers recompute all).
    const incremental = cause === 'health' || cause === 'replication';
    this.activeOverrides = o.active;

    let next = o.nextExpiry;
    const changed: { service: CompiledService; before: ServiceAnswer | undefined; after: ServiceAnswer; oldTtl: number }[] = [];
    for (const service of this.config.services) {
      const key = serviceKey(service);
      const before = this.answers.get(key);
      if (incremental && before !== undefined && (before.recomputeAt === undefined || before.recomputeAt > now) && sameInputs(service, previousHealth, o.health)) {
        // Still served: caches that fetched it since may hold it until now + ttl (the oldTtl of its next change).
        this.cachedUntil.set(key, Math.max(this.cachedUntil.get(key) ?? 0, now + before.ttl * 1000));
        if (before.recomputeAt !== undefined && (next === undefined || before.recomputeAt < next)) next = before.recomputeAt;
        continue;
      }
      const answer = computeServiceAnswer(service, o.health, this.runtimes.get(key) ?? {}, now);
      this.runtimes.set(key, answer.runtime);
      this.answers.set(key, answer);
      const heldUntil = before !== undefined ? Math.max(this.cachedUntil.get(key) ?? 0, now + before.ttl * 1000) : 0;
      if (before === undefined || before.summary !== answer.summary || before.ttl !== answer.ttl || before.failedOpen !== answer.failedOpen) {
        changed.push({ service, before, after: answer, oldTtl: Math.max(0, Math.ceil((heldUntil - now) / 1000)) });
      }
      if (before !== undefined && before.summary !== answer.summary) this.cachedUntil.delete(key);
      else if (before !== undefined) this.cachedUntil.set(key, heldUntil);
      if (answer.recomputeAt !== undefined && (next === undefined || answer.recomputeAt < next)) next = answer.recomputeAt;
    }
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
      snapshot = buildSnapshot(this.config, this.answers);
      this.server?.swap(snapshot);
      this.emit('snapshot', this.config, this.answers);
    }
    for (const c of changed) if (c.before?.summary !== c.after.summary) this.onAnswerChange(c.service, c.before, c.after, c.oldTtl, cause, now);
    this.schedule(next, now);
    this.emit('update');
    return snapshot;
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

  private onAnswerChange(service: CompiledService, before: ServiceAnswer | undefined, after: ServiceAnswer, oldTtl: number, cause: string, at: number): void {
    const key = serviceKey(service);
    const name = formatName(service.name);
    const prior = this.epochChains.get(key) ?? Promise.resolve();
    // Claims for one service run in order, so epochs follow the order of the changes.
    const chain = prior.then(async () => {
      let epoch: number;
      try {
        epoch = await this.store.claimEpoch(key, hashSummary(after.summary));
      } catch (err) {
        this.log.warn({ err, service: name }, 'could not claim an epoch; keeping a local one');
        epoch = (this.epochs.get(key) ?? 0) + 1;
      }
      if (this.closed) return;
      this.epochs.set(key, epoch);
      this.store.publishServed(this.epochs);
      const change: AnswerChange = {
        service: name,
        label: serviceLabel(service),
        key,
        views: service.views,
        from: before?.summary ?? null,
        to: after.summary,
        ttl: after.ttl,
        oldTtl,
        epoch,
        at,
        failedOpen: after.failedOpen,
        degraded: after.degraded,
        cause,
      };
      const fields = { ...change, key: undefined, label: undefined, at: undefined };
      // Failing open hands out members known to be down: an operator must see it.
      if (after.failedOpen) this.log.warn(fields, 'answer changed: no member healthy, failing open');
      else this.log.info(fields, 'answer changed');
      this.emit('answerChange', change);
    });
    this.epochChains.set(key, chain);
    void chain.finally(() => {
      if (this.epochChains.get(key) === chain) this.epochChains.delete(key);
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
      this.snapshot = this.recompute('schedule');
    }, delay);
    this.timer.unref();
  }
}
