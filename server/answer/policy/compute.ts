// The one entry point of the policies: what a service answers, given the
// health of its members and the state carried from the previous computation.
// Pure: no clock (`now` is a parameter), no randomness, no I/O; the same
// inputs give the same output. See README.md for the rules.

import type { CompiledService, Family } from '../../../zones/service.js';
import type { HealthSnapshot, HealthStatus } from '../../../probes/health/state.js';
import { failoverFamily } from './failover.js';
import { addressesOf, DistinctList, FAMILIES, lcm, memberHealthKey, statusFromHealth, type FamilyOutcome, type StatusOf } from './members.js';
import { multivalueFamily } from './multivalue.js';
import { recordsAnswer } from './records.js';
import { baseTtl, capTtl, wouldCap } from './ttl.js';
import type { AnswerSet, FamilyRuntime, ServiceAnswer, ServiceRuntime } from './types.js';
import { combineFamilies, MAX_ROTATIONS, MAX_TABLE, sameVariants } from './variants.js';
import { weightedFamily } from './weighted.js';

/** The answer before TTL, degraded and the settle window: what health and failback decide. */
interface Decision {
  readonly variants: readonly AnswerSet[];
  readonly failedOpen: boolean;
  /** A ramp or a manual wait in progress. */
  readonly holding: boolean;
  readonly summary: string;
  readonly families?: { readonly v4?: FamilyRuntime; readonly v6?: FamilyRuntime };
  /** The next ramp step. */
  readonly stepAt?: number;
}

type PriorFamilies = Record<Family, FamilyRuntime>;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

// The runtime objects below are built field by field, leaving out the fields
// that are undefined (callers compare runtimes deep-equal, where a present
// `undefined` would differ from an absent field). This runs for every service
// of a churn burst, where a generic strip (entries, filter, fromEntries) was a
// visible share of the time and the garbage.

/** A FamilyRuntime with only the defined fields, in the contract's order. */
function familyRuntime(activePriority: number | undefined, ramp: FamilyRuntime['ramp'], waitingSince: number | undefined): FamilyRuntime {
  const r: Mutable<FamilyRuntime> = {};
  if (activePriority !== undefined) r.activePriority = activePriority;
  if (ramp !== undefined) r.ramp = ramp;
  if (waitingSince !== undefined) r.waitingSince = waitingSince;
  return r;
}

/** Per-family failover state; a runtime without `families` seeds both from its top-level fields. */
function priorFamilies(runtime: ServiceRuntime): PriorFamilies {
  if (runtime.families !== undefined) return { v4: runtime.families.v4 ?? {}, v6: runtime.families.v6 ?? {} };
  const seed = familyRuntime(runtime.activePriority, runtime.ramp, runtime.waitingSince);
  return { v4: seed, v6: seed };
}

/** The earlier of two optional instants. */
function earliest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}

function familySummary(f: Family, o: FamilyOutcome): string | undefined {
  const distinct = new DistinctList();
  for (const v of o.variants) distinct.addAll(v);
  const addrs = distinct.items;
  // Most answers hold one address; sort() would allocate a work area for it all the same.
  if (addrs.length > 1) addrs.sort();
  if (addrs.length === 0 && o.note === undefined) return undefined; // the service has no address in this family
  return `${f}=${addrs.join(',')}${o.note !== undefined ? ` (${o.note})` : ''}`;
}

function decide(service: CompiledService, statusOf: StatusOf, approvedAt: number | undefined, runtime: ServiceRuntime, now: number): Decision {
  if (service.kind !== 'address') {
    const r = recordsAnswer(service, statusOf);
    return { variants: [r.set], failedOpen: r.failedOpen, holding: false, summary: r.summary };
  }
  let o4: FamilyOutcome;
  let o6: FamilyOutcome;
  let cap = MAX_TABLE;
  switch (service.policy) {
    case 'failover': {
      const prior = priorFamilies(runtime);
      o4 = failoverFamily(service, 'v4', statusOf, approvedAt, prior.v4, now);
      o6 = failoverFamily(service, 'v6', statusOf, approvedAt, prior.v6, now);
      break;
    }
    case 'multivalue':
      o4 = multivalueFamily(service, 'v4', statusOf);
      o6 = multivalueFamily(service, 'v6', statusOf);
      cap = MAX_ROTATIONS;
      break;
    case 'weighted':
      o4 = weightedFamily(service, 'v4', statusOf);
      o6 = weightedFamily(service, 'v6', statusOf);
      // Tables of different natural lengths (the families' served members
      // differ) whose combination would be long: both at exactly 100 variants.
      if (lcm(o4.variants.length, o6.variants.length) > MAX_TABLE) {
        o4 = weightedFamily(service, 'v4', statusOf, MAX_TABLE);
        o6 = weightedFamily(service, 'v6', statusOf, MAX_TABLE);
      }
      break;
  }
  const s4 = familySummary('v4', o4);
  const s6 = familySummary('v6', o6);
  const d: Mutable<Decision> = {
    variants: combineFamilies(o4.variants, o6.variants, cap),
    failedOpen: o4.failedOpen || o6.failedOpen,
    holding: o4.holding || o6.holding,
    summary: s4 !== undefined && s6 !== undefined ? `${s4} ${s6}` : (s4 ?? s6 ?? 'no addresses'),
  };
  if (service.policy === 'failover') {
    const families: Mutable<NonNullable<Decision['families']>> = {};
    if (o4.state !== undefined) families.v4 = o4.state;
    if (o6.state !== undefined) families.v6 = o6.state;
    d.families = families;
  }
  const stepAt = earliest(o4.recomputeAt, o6.recomputeAt);
  if (stepAt !== undefined) d.stepAt = stepAt;
  return d;
}

/**
 * The runtime to carry to the next computation. Its top-level failover fields
 * mirror the per-family state, v4 first (waitingSince the earlier of the two).
 */
function nextRuntime(families: Decision['families'], changedAt: number | undefined, summary: string): ServiceRuntime {
  const r: Mutable<ServiceRuntime> = {};
  if (families !== undefined) {
    const { v4, v6 } = families;
    const activePriority = v4?.activePriority ?? v6?.activePriority;
    const ramp = v4?.ramp ?? v6?.ramp;
    const waitingSince = earliest(v4?.waitingSince, v6?.waitingSince);
    if (activePriority !== undefined) r.activePriority = activePriority;
    if (ramp !== undefined) r.ramp = ramp;
    if (waitingSince !== undefined) r.waitingSince = waitingSince;
    r.families = families;
  }
  if (changedAt !== undefined) r.changedAt = changedAt;
  r.summary = summary;
  return r;
}

/**
 * The answer of `service` at `now`. `runtime` is what the previous call
 * returned for this service (`{}` the first time); the caller keeps the
 * returned `runtime` and calls again on every health change and at
 * `recomputeAt`.
 */
export function computeServiceAnswer(service: CompiledService, health: HealthSnapshot, runtime: ServiceRuntime, now: number): ServiceAnswer {
  const statusOf = statusFromHealth(service, health);
  const approvedAt = health.failbackApproved.get(service.name);
  const d = decide(service, statusOf, approvedAt, runtime, now);

  // Settle window: a changed summary (the first computation included) starts it.
  const changedAt = d.summary !== runtime.summary ? now : runtime.changedAt;
  const settleEnd = changedAt !== undefined ? changedAt + service.settleMs : undefined;
  const settling = settleEnd !== undefined && now < settleEnd;

  let anyDown = false;
  for (const m of service.members) {
    for (const f of FAMILIES) if (addressesOf(m, f).length > 0 && statusOf(m, f) === 'down') anyDown = true;
  }
  const degraded = anyDown || d.failedOpen || d.holding || settling;

  const recomputeAt = earliest(d.stepAt, settling ? settleEnd : undefined);

  // The TTL must not outlive the next possible change of this answer's records:
  // the next ramp step, and each change in progress (nextChangeAt) that would
  // alter them, found by recomputing with that status flipped. The end of the
  // settle window is not one: it changes the TTL, not the records, so caches
  // need not come back for it (capping there would hand out 1 s TTLs after
  // every change, which is load and no faster failover).
  const base = baseTtl(service, degraded);
  const limits = d.stepAt !== undefined ? [d.stepAt] : [];
  for (const m of service.members) {
    for (const f of FAMILIES) {
      if (addressesOf(m, f).length === 0) continue;
      const at = health.members.get(memberHealthKey(m, f))?.nextChangeAt;
      if (at === undefined || !wouldCap(capTtl(base, now, limits), now, at)) continue;
      const flipped: HealthStatus = statusOf(m, f) === 'down' ? 'up' : 'down';
      const alt = decide(service, (mm, ff) => (mm === m && ff === f ? flipped : statusOf(mm, ff)), approvedAt, runtime, now);
      if (!sameVariants(alt.variants, d.variants)) limits.push(at);
    }
  }

  const next = nextRuntime(d.families, changedAt, d.summary);
  return {
    variants: d.variants,
    ttl: capTtl(base, now, limits),
    failedOpen: d.failedOpen,
    degraded,
    ...(recomputeAt !== undefined ? { recomputeAt } : {}),
    summary: d.summary,
    runtime: next,
  };
}
