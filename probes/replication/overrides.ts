// Operator overrides (drain, force_up, force_down) laid over the consensus
// health. Pure: time comes in as `now`. Applied after consensus, so an
// operator's word beats every node's probes; see ./README.md.

import { healthKey, type FamilyHealth, type HealthSnapshot, type HealthStatus } from '../health/state.js';
import type { Override, OverrideAction } from './types.js';

export interface OverrideResult {
  readonly health: HealthSnapshot;
  /** The overrides in force at `now` (expired ones dropped), by member id. */
  readonly active: ReadonlyMap<string, Override>;
  /** Earliest expiresAt among active overrides: recompute then. */
  readonly nextExpiry?: number;
}

const FAMILIES = ['v4', 'v6'] as const;
const NONE: ReadonlyMap<string, Override> = new Map();

/**
 * Rank among overrides set at the same ms, so every node picks the same one
 * whatever order the store lists them in. The more cautious action wins.
 */
const ACTION_RANK: Readonly<Record<OverrideAction, number>> = { force_down: 3, drain: 2, force_up: 1 };

export function isActive(o: Override, now: number): boolean {
  return o.expiresAt === undefined || o.expiresAt > now;
}

/** Whether `a` takes precedence over `b` for the same member: newest `at`, then a fixed total order. */
function wins(a: Override, b: Override): boolean {
  if (a.at !== b.at) return a.at > b.at;
  if (a.action !== b.action) return ACTION_RANK[a.action] > ACTION_RANK[b.action];
  if (a.by !== b.by) return a.by < b.by;
  if (a.reason !== b.reason) return a.reason < b.reason;
  return (a.expiresAt ?? Infinity) > (b.expiresAt ?? Infinity);
}

const FORCED_DOWN = { status: 'down', verb: 'forced down' } as const;
const FORCED_UP = { status: 'up', verb: 'forced up' } as const;
const DRAINED = { status: 'down', verb: 'drained' } as const;

function effect(action: OverrideAction): { readonly status: HealthStatus; readonly verb: string } | undefined {
  switch (action) {
    case 'force_down':
      return FORCED_DOWN;
    case 'force_up':
      return FORCED_UP;
    case 'drain':
      return DRAINED;
    default:
      // Overrides arrive from Redis; an action a newer node invented is not
      // ours to guess at.
      return undefined;
  }
}

export function overrideReason(o: Override): string | undefined {
  const e = effect(o.action);
  if (e === undefined) return undefined;
  return o.reason ? `${e.verb} by ${o.by}: ${o.reason}` : `${e.verb} by ${o.by}`;
}

// Every recompute lays every active override over the health again: a PoP
// drained for maintenance is a thousand overrides re-applied on each health
// change elsewhere. An Override is never modified once stored, so what it
// sets is made once per override, and a member's two health keys once per id.
const entries = new WeakMap<Override, FamilyHealth>();
const keysOf = new Map<string, readonly string[]>();
const KEYS_LIMIT = 100_000;

function entryFor(o: Override): FamilyHealth {
  let entry = entries.get(o);
  if (entry === undefined) {
    entry = Object.freeze({
      status: effect(o.action)!.status,
      since: o.at,
      reason: overrideReason(o)!,
      held: false,
      // Answers' TTLs must not outlive an override that lapses by itself.
      ...(o.expiresAt === undefined ? {} : { nextChangeAt: o.expiresAt }),
    });
    entries.set(o, entry);
  }
  return entry;
}

function healthKeys(member: string): readonly string[] {
  let keys = keysOf.get(member);
  if (keys === undefined) {
    // Ids come from the store, which other nodes write: bounded, not trusted to be few.
    if (keysOf.size >= KEYS_LIMIT) keysOf.clear();
    keys = FAMILIES.map((f) => healthKey(member, f));
    keysOf.set(member, keys);
  }
  return keys;
}

export function applyOverrides(health: HealthSnapshot, overrides: readonly Override[], now: number): OverrideResult {
  let active: Map<string, Override> | undefined;
  for (const o of overrides) {
    if (!isActive(o, now) || effect(o.action) === undefined) continue;
    active ??= new Map();
    const current = active.get(o.member);
    if (current === undefined || wins(o, current)) active.set(o.member, o);
  }
  if (active === undefined) return { health, active: NONE };

  const members = new Map(health.members);
  let nextExpiry: number | undefined;
  for (const o of active.values()) {
    if (o.expiresAt !== undefined && (nextExpiry === undefined || o.expiresAt < nextExpiry)) nextExpiry = o.expiresAt;
    const entry = entryFor(o);
    const keys = healthKeys(o.member);
    let present = 0;
    for (const k of keys) {
      if (!health.members.has(k)) continue;
      members.set(k, entry);
      present++;
    }
    // A forced state applies even before the first verdict arrives.
    if (present === 0) for (const k of keys) members.set(k, entry);
  }
  return {
    health: { members, failbackApproved: health.failbackApproved },
    active,
    ...(nextExpiry === undefined ? {} : { nextExpiry }),
  };
}
