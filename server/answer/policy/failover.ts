// The failover policy for one address family: serve the best priority group
// that has enough healthy members, fail away at once, fail back as the
// service's `failback` says (immediate, ramp, manual). See README.md.

import type { CompiledMember, CompiledService, Family } from '../../../zones/service.js';
import {
  addressesOfAll,
  gcd,
  isServed,
  membersIn,
  NO_ADDRESSES,
  whenAllDown,
  type FamilyOutcome,
  type StatusOf,
} from './members.js';
import { spread } from './variants.js';
import type { FamilyRuntime } from './types.js';

interface PriorityGroup {
  readonly priority: number;
  size: number;
  /** The group's served members, in config order. */
  readonly served: CompiledMember[];
}

/**
 * The members grouped by priority, best (lowest) first, each group's served
 * members read once: the policy asks about the same groups several times. An
 * array rather than a Map: a service has a few groups, and this runs for
 * every service of a churn burst.
 */
function priorityGroups(members: readonly CompiledMember[], family: Family, statusOf: StatusOf): PriorityGroup[] {
  const groups: PriorityGroup[] = [];
  for (const m of members) {
    let g: PriorityGroup | undefined;
    for (const x of groups) if (x.priority === m.priority) g = x;
    if (g === undefined) {
      // Kept in order as groups are made: Array.prototype.sort allocates a work area on every call.
      g = { priority: m.priority, size: 0, served: [] };
      let at = groups.length;
      while (at > 0 && groups[at - 1]!.priority > g.priority) at--;
      groups.splice(at, 0, g);
    }
    g.size++;
    if (isServed(statusOf(m, family))) g.served.push(m);
  }
  return groups;
}

export function failoverFamily(
  service: CompiledService,
  family: Family,
  statusOf: StatusOf,
  approvedAt: number | undefined,
  prior: FamilyRuntime,
  now: number,
): FamilyOutcome {
  const members = membersIn(service, family);
  if (members.length === 0) return NO_ADDRESSES;

  const groups = priorityGroups(members, family, statusOf);
  const priorities = groups.map((g) => g.priority);
  const groupOf = (p: number): PriorityGroup | undefined => groups.find((g) => g.priority === p);
  const servedIn = (p: number): readonly CompiledMember[] => groupOf(p)?.served ?? [];
  // A group smaller than min_healthy qualifies when all its members are served,
  // or a one-member backup group under min_healthy: 2 could never serve.
  const qualifies = (p: number): boolean => {
    const g = groupOf(p);
    return g !== undefined && g.served.length >= Math.min(service.minHealthy, g.size);
  };
  const serve = (p: number): string[] => addressesOfAll(servedIn(p), family);
  const settled = (p: number): FamilyOutcome => ({ variants: [serve(p)], failedOpen: false, holding: false, state: { activePriority: p } });

  const best = priorities.find(qualifies);
  if (best === undefined) {
    // No group has min_healthy members: the healthy members we do have beat
    // failing open onto members known to be down.
    const partial = priorities.find((p) => servedIn(p).length > 0);
    if (partial !== undefined) {
      return { variants: [serve(partial)], failedOpen: false, holding: false, note: `p${partial} below min_healthy`, state: {} };
    }
    return { ...whenAllDown(service, family, members), state: {} };
  }

  const current = prior.activePriority;
  // First computation, the best group is the current one, or the current one
  // no longer qualifies: failing away is always immediate.
  if (current === undefined || current === best || !qualifies(current)) return settled(best);

  // A better group qualifies again while the current one still serves.
  const fb = service.failback;
  switch (fb.mode) {
    case 'immediate':
      return settled(best);
    case 'manual': {
      const since = prior.waitingSince ?? now;
      if (approvedAt !== undefined && approvedAt >= since) return settled(best);
      return {
        variants: [serve(current)],
        failedOpen: false,
        holding: true,
        note: `p${best} awaits failback approval`,
        state: { activePriority: current, waitingSince: since },
      };
    }
    case 'ramp': {
      if (!(fb.stepMs > 0) || fb.percent.length === 0) return settled(best);
      const r = prior.ramp;
      // A ramp towards another group (the target failed again, or an even better
      // one recovered) is dropped; a new one starts at step 0.
      let step = 0;
      let stepStartedAt = now;
      if (r !== undefined && r.toPriority === best && r.fromPriority === current) {
        step = r.step;
        stepStartedAt = r.stepStartedAt;
      }
      // Catch up on every step that has elapsed, on the schedule (not on `now`).
      while (step < fb.percent.length && fb.percent[step]! < 100 && now >= stepStartedAt + fb.stepMs) {
        step++;
        stepStartedAt += fb.stepMs;
      }
      if (step >= fb.percent.length || fb.percent[step]! >= 100) return settled(best);
      const pct = Math.max(0, Math.round(fb.percent[step]!));
      const g = gcd(pct, 100);
      const better = serve(best);
      const still = serve(current);
      return {
        variants: spread(100 / g, pct / g).map((hit) => (hit ? better : still)),
        failedOpen: false,
        holding: true,
        note: `ramp ${pct}% p${best}<-p${current}`,
        state: { activePriority: current, ramp: { toPriority: best, fromPriority: current, step, stepStartedAt } },
        recomputeAt: stepStartedAt + fb.stepMs,
      };
    }
  }
}
