// The drain tracker: for each answer change of a service, which of the
// resolvers that were recently asking have come back since, and when.
// A failover is finished when the last cache holding the old answer has let
// it go; only the authoritative server sees that happen, one query at a time.
//
// No I/O and no clock: every time is a parameter (milliseconds, one clock for
// observe, change and report). See README.md for the definitions.

export interface DrainTrackerOptions {
  /** A resolver counts as recently active for a change when it asked within this window before it. Default 10 min. */
  readonly activeWindowMs?: number;
  /** Extra time after the old TTL before a resolver that has not re-fetched is listed as lagging. Default 5 s. */
  readonly graceMs?: number;
  /** Most resolvers remembered per service (least recently seen evicted first). Default 10_000. */
  readonly maxResolversPerService?: number;
  /** Most services tracked (least recently queried evicted). Default 10_000. */
  readonly maxServices?: number;
  /** Changes kept per service (oldest dropped). Default 8. */
  readonly maxChangesPerService?: number;
  /** How many lagging resolvers a report lists per change. Default 20. */
  readonly topLagging?: number;
  /** Called once per change when a share threshold (0.5, 0.9, 0.99) is first reached. */
  readonly onThreshold?: (service: string, share: number, afterMs: number) => void;
}

export interface ChangeInfo {
  readonly at: number;
  readonly epoch: number;
  readonly from: string;
  readonly to: string;
  /** Seconds: the TTL the old answer was served with, so the longest a cache may keep it. */
  readonly oldTtl: number;
}

export interface DrainReport {
  readonly services: readonly ServiceDrain[];
}

export interface ServiceDrain {
  readonly service: string;
  readonly resolversTracked: number;
  /** Newest first. */
  readonly changes: readonly ChangeDrain[];
}

export interface LaggingResolver {
  readonly client: string;
  /** How long before the change its last query (before the change) was. */
  readonly lastSeenBeforeMs: number;
  /** Its queries for the service up to the change, as far as the tracker remembers it. */
  readonly queries: number;
}

export interface ChangeDrain {
  readonly at: number;
  readonly epoch: number;
  readonly from: string;
  readonly to: string;
  /** Seconds. */
  readonly oldTtl: number;
  /** Resolvers active in the window before the change. */
  readonly population: number;
  /** Of those, how many queried again after `at`. */
  readonly refetched: number;
  /** refetched / population (1 when population is 0). */
  readonly ratio: number;
  /** Time after `at` when that share of the population had re-fetched; absent until reached. */
  readonly p50Ms?: number;
  readonly p90Ms?: number;
  readonly p99Ms?: number;
  /** at + oldTtl*1000 + graceMs. */
  readonly expectedDoneAt: number;
  /** now > expectedDoneAt and ratio < 1. */
  readonly overdue: boolean;
  /** Not re-fetched, most active first; empty until now > expectedDoneAt. */
  readonly lagging: readonly LaggingResolver[];
  /** Resolvers that queried after the change and were not in its population. */
  readonly newResolvers: number;
}

export class DrainOptionsError extends Error {
  override name = 'DrainOptionsError';
}

/** A change that cannot be measured: `at` not a finite time, or oldTtl not a number of seconds >= 0. */
export class DrainChangeError extends Error {
  override name = 'DrainChangeError';
  constructor(
    message: string,
    readonly service: string,
    readonly info: ChangeInfo,
  ) {
    super(message);
  }
}

export const DRAIN_DEFAULTS = Object.freeze({
  activeWindowMs: 10 * 60_000,
  graceMs: 5_000,
  maxResolversPerService: 10_000,
  maxServices: 10_000,
  maxChangesPerService: 8,
  topLagging: 20,
});

/** The shares reported, as integer percentages so that ceil(share × population) is exact. */
const SHARE_PERCENT = [50, 90, 99] as const;

/** What the tracker remembers of one resolver for one service. Mutated in place by observe(). */
class Resolver {
  constructor(
    /** The first string seen for this address, kept so every map shares one copy of it. */
    readonly client: string,
    public lastSeen: number,
    public queries: number,
    /** seq of the newest change this resolver has already been counted for (re-fetch or new). */
    public doneSeq: number,
  ) {}
}

/** A population member of one change; small integers only, so V8 stores them in the object. */
class Member {
  /** Milliseconds after the change of the first query after it; -1 while none. */
  refetchMs = -1;
  constructor(
    readonly beforeMs: number,
    readonly queries: number,
  ) {}
}

class Change {
  refetched = 0;
  newResolvers = 0;
  /** Re-fetch counts at which each share is reached: ceil(share × population). */
  readonly k50: number;
  readonly k90: number;
  readonly k99: number;
  p50 = -1;
  p90 = -1;
  p99 = -1;
  constructor(
    readonly seq: number,
    readonly info: ChangeInfo,
    readonly population: ReadonlyMap<string, Member>,
  ) {
    const n = population.size;
    // A share of an empty population is reached by nobody: no thresholds fire (ratio is 1 by definition).
    this.k50 = n === 0 ? -1 : Math.ceil((n * SHARE_PERCENT[0]) / 100);
    this.k90 = n === 0 ? -1 : Math.ceil((n * SHARE_PERCENT[1]) / 100);
    this.k99 = n === 0 ? -1 : Math.ceil((n * SHARE_PERCENT[2]) / 100);
  }
}

class Service {
  /** Least recently seen first (Map insertion order, refreshed by delete + set). */
  readonly resolvers = new Map<string, Resolver>();
  /** Oldest first; `at` never decreases along the array. */
  readonly changes: Change[] = [];
  /** seq of the newest change (0 before any). */
  lastSeq = 0;
  constructor(readonly name: string) {}
}

type ResolvedOptions = {
  readonly activeWindowMs: number;
  readonly graceMs: number;
  readonly maxResolversPerService: number;
  readonly maxServices: number;
  readonly maxChangesPerService: number;
  readonly topLagging: number;
};

function resolveOptions(opts: DrainTrackerOptions): ResolvedOptions {
  const o = {
    activeWindowMs: opts.activeWindowMs ?? DRAIN_DEFAULTS.activeWindowMs,
    graceMs: opts.graceMs ?? DRAIN_DEFAULTS.graceMs,
    maxResolversPerService: opts.maxResolversPerService ?? DRAIN_DEFAULTS.maxResolversPerService,
    maxServices: opts.maxServices ?? DRAIN_DEFAULTS.maxServices,
    maxChangesPerService: opts.maxChangesPerService ?? DRAIN_DEFAULTS.maxChangesPerService,
    topLagging: opts.topLagging ?? DRAIN_DEFAULTS.topLagging,
  };
  for (const k of ['activeWindowMs', 'graceMs'] as const) {
    if (!Number.isFinite(o[k]) || o[k] < 0) throw new DrainOptionsError(`${k} must be a finite number of milliseconds >= 0, got ${o[k]}`);
  }
  for (const k of ['maxResolversPerService', 'maxServices', 'maxChangesPerService'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new DrainOptionsError(`${k} must be an integer >= 1, got ${o[k]}`);
  }
  if (!Number.isInteger(o.topLagging) || o.topLagging < 0) throw new DrainOptionsError(`topLagging must be an integer >= 0, got ${o.topLagging}`);
  return o;
}

export class DrainTracker {
  private readonly opts: ResolvedOptions;
  private readonly onThreshold: ((service: string, share: number, afterMs: number) => void) | undefined;
  /** Least recently queried (or changed) first. */
  private readonly services = new Map<string, Service>();
  /** The service touched last: already at the end of the LRU order, so a run of queries for it skips the re-insert. */
  private lastService: Service | undefined;

  constructor(opts: DrainTrackerOptions = {}) {
    this.opts = resolveOptions(opts);
    this.onThreshold = opts.onThreshold;
  }

  /** Hot path: one query for a service name from `client` (an address string) at `now`. O(1), no allocation for a known client. */
  observe(service: string, client: string, now: number): void {
    const svc = this.touchService(service);
    const resolvers = svc.resolvers;
    let r = resolvers.get(client);
    if (r === undefined) {
      // doneSeq 0: a resolver unknown here may still be in a retained population (evicted from the LRU since).
      r = new Resolver(client, now, 1, 0);
      resolvers.set(client, r);
      if (resolvers.size > this.opts.maxResolversPerService) {
        const oldest = resolvers.keys().next().value as string;
        resolvers.delete(oldest);
      }
    } else {
      r.lastSeen = now;
      r.queries++;
      resolvers.delete(client);
      resolvers.set(r.client, r);
    }
    if (r.doneSeq < svc.lastSeq) this.countAfterChanges(svc, r, now);
  }

  /** The service's answer changed. Snapshots the resolvers active within activeWindowMs before `at`. */
  change(service: string, info: ChangeInfo): void {
    if (!Number.isFinite(info.at)) throw new DrainChangeError(`change of ${service}: at must be a finite time, got ${info.at}`, service, info);
    if (!Number.isFinite(info.oldTtl) || info.oldTtl < 0) {
      throw new DrainChangeError(`change of ${service}: oldTtl must be a number of seconds >= 0, got ${info.oldTtl}`, service, info);
    }
    const svc = this.touchService(service);
    const newest = svc.changes[svc.changes.length - 1];
    // observe() walks changes oldest first and stops at the first one not yet in the past, so `at` must not go
    // back. Only a stepped wall clock makes it do so; raising `at` to the previous change's keeps the measurement
    // going (off by at most the step) where throwing would break the caller's answer-change path.
    const at = newest !== undefined && info.at < newest.info.at ? newest.info.at : info.at;
    const windowStart = at - this.opts.activeWindowMs;
    const population = new Map<string, Member>();
    for (const r of svc.resolvers.values()) {
      // A query later than `at` (change() called late) says nothing about whether the resolver held the old answer.
      if (r.lastSeen >= windowStart && r.lastSeen <= at) population.set(r.client, new Member(at - r.lastSeen, r.queries));
    }
    svc.lastSeq++;
    svc.changes.push(new Change(svc.lastSeq, { at, epoch: info.epoch, from: info.from, to: info.to, oldTtl: info.oldTtl }, population));
    if (svc.changes.length > this.opts.maxChangesPerService) svc.changes.shift();
  }

  /** Drop a service removed by a reload. */
  forget(service: string): void {
    const svc = this.services.get(service);
    if (svc === undefined) return;
    this.services.delete(service);
    if (this.lastService === svc) this.lastService = undefined;
  }

  report(now: number, service?: string): DrainReport {
    const out: ServiceDrain[] = [];
    if (service !== undefined) {
      const svc = this.services.get(service);
      if (svc !== undefined) out.push(this.serviceDrain(svc, now));
    } else {
      const names = [...this.services.keys()].sort();
      for (const name of names) out.push(this.serviceDrain(this.services.get(name)!, now));
    }
    return { services: out };
  }

  /**
   * The ratio of each tracked service's newest change, by service: what
   * report(now).services[i].changes[0].ratio gives, without building the
   * report (its every change, lagging lists and sorting) for a gauge that is
   * refreshed every second.
   */
  latestRatios(): Map<string, number> {
    const out = new Map<string, number>();
    for (const svc of this.services.values()) {
      const c = svc.changes[svc.changes.length - 1];
      if (c !== undefined) out.set(svc.name, c.population.size === 0 ? 1 : c.refetched / c.population.size);
    }
    return out;
  }

  private touchService(name: string): Service {
    const last = this.lastService;
    if (last !== undefined && last.name === name) return last;
    let svc = this.services.get(name);
    if (svc === undefined) {
      svc = new Service(name);
      this.services.set(name, svc);
      if (this.services.size > this.opts.maxServices) {
        const oldest = this.services.keys().next().value as string;
        this.services.delete(oldest);
      }
    } else {
      this.services.delete(name);
      this.services.set(svc.name, svc);
    }
    this.lastService = svc;
    return svc;
  }

  /** The resolver's first query after one or more changes: a re-fetch for each population it is in, new for the others. */
  private countAfterChanges(svc: Service, r: Resolver, now: number): void {
    const changes = svc.changes;
    for (let i = 0; i < changes.length; i++) {
      const c = changes[i]!;
      if (c.seq <= r.doneSeq) continue;
      // Same millisecond as the change: the query may have been answered from the old snapshot, so it does not count.
      if (now <= c.info.at) break;
      r.doneSeq = c.seq;
      const m = c.population.get(r.client);
      if (m === undefined) {
        c.newResolvers++;
        continue;
      }
      // Set already when the resolver was evicted from the LRU and came back: its re-fetch was counted then.
      if (m.refetchMs >= 0) continue;
      const after = now - c.info.at;
      m.refetchMs = after;
      const n = ++c.refetched;
      const at50 = n === c.k50;
      const at90 = n === c.k90;
      const at99 = n === c.k99;
      // Every counter is settled before the callback runs, so a callback that throws leaves this change consistent.
      if (at50) c.p50 = after;
      if (at90) c.p90 = after;
      if (at99) c.p99 = after;
      const cb = this.onThreshold;
      if (cb !== undefined && (at50 || at90 || at99)) {
        if (at50) cb(svc.name, SHARE_PERCENT[0] / 100, after);
        if (at90) cb(svc.name, SHARE_PERCENT[1] / 100, after);
        if (at99) cb(svc.name, SHARE_PERCENT[2] / 100, after);
      }
    }
  }

  private serviceDrain(svc: Service, now: number): ServiceDrain {
    const changes: ChangeDrain[] = [];
    for (let i = svc.changes.length - 1; i >= 0; i--) changes.push(this.changeDrain(svc.changes[i]!, now));
    return { service: svc.name, resolversTracked: svc.resolvers.size, changes };
  }

  private changeDrain(c: Change, now: number): ChangeDrain {
    const { at, epoch, from, to, oldTtl } = c.info;
    const population = c.population.size;
    const ratio = population === 0 ? 1 : c.refetched / population;
    const expectedDoneAt = at + oldTtl * 1000 + this.opts.graceMs;
    const late = now > expectedDoneAt;
    const lagging: LaggingResolver[] = [];
    if (late && ratio < 1 && this.opts.topLagging > 0) {
      for (const [client, m] of c.population) {
        if (m.refetchMs < 0) lagging.push({ client, lastSeenBeforeMs: m.beforeMs, queries: m.queries });
      }
      lagging.sort(byActivity);
      lagging.length = Math.min(lagging.length, this.opts.topLagging);
    }
    return {
      at,
      epoch,
      from,
      to,
      oldTtl,
      population,
      refetched: c.refetched,
      ratio,
      ...(c.p50 >= 0 ? { p50Ms: c.p50 } : {}),
      ...(c.p90 >= 0 ? { p90Ms: c.p90 } : {}),
      ...(c.p99 >= 0 ? { p99Ms: c.p99 } : {}),
      expectedDoneAt,
      overdue: late && ratio < 1,
      lagging,
      newResolvers: c.newResolvers,
    };
  }
}

/** Most queries first; then the most recently seen; then by address, so equal resolvers list in a stable order. */
function byActivity(a: LaggingResolver, b: LaggingResolver): number {
  if (a.queries !== b.queries) return b.queries - a.queries;
  if (a.lastSeenBeforeMs !== b.lastSeenBeforeMs) return a.lastSeenBeforeMs - b.lastSeenBeforeMs;
  return a.client < b.client ? -1 : a.client > b.client ? 1 : 0;
}
