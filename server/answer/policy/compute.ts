// The one entry point of the policies: what a service answers, given the
// health of its members and the state carried from the previous computation.
// Pure: no clock (`now` is a parameter), no randomness, no I/O; the same
// inputs give the same output. See README.md for the rules.

import type { CompiledService, Family } from '../../../zones/service.js';
import { healthKey, type HealthSnapshot, type HealthStatus } from '../../../probes/health/state.js';
import { failoverFamily } from './failover.js';
import { addressesOf, FAMILIES, lcm, statusFromHealth, uniq, type FamilyOutcome, type StatusOf } from './members.js';
import { multivalueFamily } from './multivalue.js';
import { recordsAnswer } from './records.js';
import { baseTtl, capTtl, wouldCap } from './ttl.js';
import type { AnswerSet, FamilyRuntime, ServiceAnswer, ServiceRuntime } from './types.js';
import { combineFamilies, MAX_ROTATIONS, MAX_TABLE } from './variants.js';
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

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** Per-family failover state; a runtime without `families` seeds both from its top-level fields. */
function priorFamilies(runtime: ServiceRuntime): PriorFamilies {
  if (runtime.families !== undefined) return { v4: runtime.families.v4 ?? {}, v6: runtime.families.v6 ?? {} };
  const seed: FamilyRuntime = stripUndefined({ activePriority: runtime.activePriority, ramp: runtime.ramp, waitingSince: runtime.waitingSince });
  return { v4: seed, v6: seed };
}

function familySummary(f: Family, o: FamilyOutcome): string | undefined {
  const addrs = uniq(o.variants.flat()).sort();
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
  const parts = [familySummary('v4', o4), familySummary('v6', o6)].filter((s): s is string => s !== undefined);
  const steps = [o4.recomputeAt, o6.recomputeAt].filter((t): t is number => t !== undefined);
  const families = service.policy === 'failover' ? stripUndefined({ v4: o4.state, v6: o6.state }) : undefined;
  return {
    variants: combineFamilies(o4.variants, o6.variants, cap),
    failedOpen: o4.failedOpen || o6.failedOpen,
    holding: o4.holding || o6.holding,
    summary: parts.length > 0 ? parts.join(' ') : 'no addresses',
    ...(families !== undefined ? { families } : {}),
    ...(steps.length > 0 ? { stepAt: Math.min(...steps) } : {}),
  };
}

/** The top-level fields of the contract mirror the per-family state, v4 first. */
function mirror(families: Decision['families']): Pick<ServiceRuntime, 'activePriority' | 'ramp' | 'waitingSince' | 'families'> {
  if (families === undefined) return {};
  const fs = [families.v4, families.v6].filter((f): f is FamilyRuntime => f !== undefined);
  const waits = fs.map((f) => f.waitingSince).filter((t): t is number => t !== undefined);
  return stripUndefined({
    activePriority: fs.find((f) => f.activePriority !== undefined)?.activePriority,
    ramp: fs.find((f) => f.ramp !== undefined)?.ramp,
    waitingSince: waits.length > 0 ? Math.min(...waits) : undefined,
    families,
  });
}

const variantsKey = (v: readonly AnswerSet[]): string => JSON.stringify(v);

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

  const anyDown = service.members.some((m) => FAMILIES.some((f) => addressesOf(m, f).length > 0 && statusOf(m, f) === 'down'));
  const degraded = anyDown || d.failedOpen || d.holding || settling;

  const scheduled = [d.stepAt, settling ? settleEnd : undefined].filter((t): t is number => t !== undefined);
  const recomputeAt = scheduled.length > 0 ? Math.min(...scheduled) : undefined;

  // The TTL must not outlive the next possible change of this answer's records:
  // the next ramp step, and each change in progress (nextChangeAt) that would
  // alter them, found by recomputing with that status flipped. The end of the
  // settle window is not one: it changes the TTL, not the records, so caches
  // need not come back for it (capping there would hand out 1 s TTLs after
  // every change, which is load and no faster failover).
  const base = baseTtl(service, degraded);
  const limits = d.stepAt !== undefined ? [d.stepAt] : [];
  const key = variantsKey(d.variants);
  for (const m of service.members) {
    for (const f of FAMILIES) {
      if (addressesOf(m, f).length === 0) continue;
      const at = health.members.get(healthKey(m.id, f))?.nextChangeAt;
      if (at === undefined || !wouldCap(capTtl(base, now, limits), now, at)) continue;
      const flipped: HealthStatus = statusOf(m, f) === 'down' ? 'up' : 'down';
      const alt = decide(service, (mm, ff) => (mm === m && ff === f ? flipped : statusOf(mm, ff)), approvedAt, runtime, now);
      if (variantsKey(alt.variants) !== key) limits.push(at);
    }
  }

  const next: ServiceRuntime = {
    ...mirror(d.families),
    ...(changedAt !== undefined ? { changedAt } : {}),
    summary: d.summary,
  };
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
