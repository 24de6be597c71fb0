// Shared pieces of the policies: reading a member's health in one family,
// its addresses, and small integer helpers. Pure.

import type { CompiledMember, CompiledService, Family } from '../../../zones/service.js';
import { healthKey, type HealthSnapshot, type HealthStatus } from '../../../probes/health/state.js';
import type { FamilyRuntime } from './types.js';

export const FAMILIES: readonly Family[] = ['v4', 'v6'];

/** The status a policy sees for one member in one family. */
export type StatusOf = (member: CompiledMember, family: Family) => HealthStatus;

// healthKey builds a new string on every call, and a new string must be hashed
// again by every Map lookup; a computation reads each member's health several
// times and a churn burst computes thousands of services. So the two keys of a
// member are made once and kept with it. A CompiledMember is never modified
// (a reload compiles new ones), so an entry cannot go stale, and the WeakMap
// lets it go with the config that made it.
const healthKeys = new WeakMap<CompiledMember, readonly [v4: string, v6: string]>();

/** healthKey(m.id, f), made once per member. */
export function memberHealthKey(m: CompiledMember, f: Family): string {
  let keys = healthKeys.get(m);
  if (keys === undefined) {
    keys = [healthKey(m.id, 'v4'), healthKey(m.id, 'v6')];
    healthKeys.set(m, keys);
  }
  return f === 'v4' ? keys[0] : keys[1];
}

/** Reads the snapshot; a member without a verdict has the service's initialState. */
export function statusFromHealth(service: CompiledService, health: HealthSnapshot): StatusOf {
  return (m, f) => health.members.get(memberHealthKey(m, f))?.status ?? service.initialState;
}

/** Served = not down: 'unknown' is served, so a restart does not empty the answers. */
export function isServed(status: HealthStatus): boolean {
  return status !== 'down';
}

export function addressesOf(m: CompiledMember, f: Family): readonly string[] {
  return f === 'v4' ? m.v4 : m.v6;
}

/** The members that take part in family `f`: those with an address in it, in config order. */
export function membersIn(service: CompiledService, f: Family): CompiledMember[] {
  return service.members.filter((m) => addressesOf(m, f).length > 0);
}

/** Up to this many entries a linear scan beats building a Set. */
const SCAN_LIMIT = 16;

/**
 * A list without repeats, first occurrence wins, order kept. An answer holds a
 * handful of addresses, for which a scan of the list is cheaper than a Set
 * (and allocates nothing); a Set takes over past SCAN_LIMIT entries so long
 * lists stay linear.
 */
export class DistinctList {
  readonly items: string[] = [];
  private seen: Set<string> | undefined;

  add(x: string): void {
    if (this.seen !== undefined) {
      if (this.seen.has(x)) return;
      this.seen.add(x);
    } else {
      if (this.items.includes(x)) return;
      if (this.items.length >= SCAN_LIMIT) this.seen = new Set(this.items).add(x);
    }
    this.items.push(x);
  }

  addAll(xs: Iterable<string>): void {
    for (const x of xs) this.add(x);
  }
}

/** First occurrence wins; order kept. */
export function uniq(xs: Iterable<string>): string[] {
  const d = new DistinctList();
  d.addAll(xs);
  return d.items;
}

/** The members' addresses in family `f`, in member order, without repeats. */
export function addressesOfAll(members: readonly CompiledMember[], f: Family): string[] {
  const d = new DistinctList();
  for (const m of members) d.addAll(addressesOf(m, f));
  return d.items;
}

export function gcd(a: number, b: number): number {
  a = Math.abs(a);
  b = Math.abs(b);
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

export function lcm(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : (a / gcd(a, b)) * b;
}

/** What one family of an address service hands out, before the families are combined. */
export interface FamilyOutcome {
  /** The family's alternatives (each a list of addresses); at least one, `[[]]` when the service has no address in it. */
  readonly variants: readonly (readonly string[])[];
  readonly failedOpen: boolean;
  /** A ramp or a manual wait is in progress (the answer is degraded). */
  readonly holding: boolean;
  /** Appended to the family's part of the summary, in parentheses. */
  readonly note?: string;
  /** failover only: the family's state for the next computation. */
  readonly state?: FamilyRuntime;
  /** Next scheduled change of this family's answer (a ramp step). */
  readonly recomputeAt?: number;
}

export const NO_ADDRESSES: FamilyOutcome = { variants: [[]], failedOpen: false, holding: false };

/**
 * No member of the family is served. fail_open: every member's addresses in
 * that family. last_resort: the configured addresses of that family, or fail
 * open when the list has none of that family (an empty answer would be a
 * surprise). Either way failedOpen.
 */
export function whenAllDown(service: CompiledService, f: Family, members: readonly CompiledMember[]): FamilyOutcome {
  const wad = service.whenAllDown;
  if (wad.mode === 'last_resort') {
    const list = uniq(f === 'v4' ? wad.v4 : wad.v6);
    if (list.length > 0) return { variants: [list], failedOpen: true, holding: false, note: 'last resort' };
  }
  return { variants: [addressesOfAll(members, f)], failedOpen: true, holding: false, note: 'failed open' };
}
