// Health of one member for one address family: the confirmation window
// (confirm.ts) decides what the checks say, flap damping (damping.ts) may
// hold the result down, and the two together give the FamilyHealth published
// to the answer side. Pure: time comes in as an argument, ms since the epoch.

import type { Damping, ProbeSpec } from '../../zones/service.js';
import { createConfirmState, earliestDownInMs, earliestUpInMs, observe, type ConfirmState } from './confirm.js';
import { NO_PENALTY, addPenalty, releaseAt, settleDamping, validateDamping, type DampingState } from './damping.js';
import type { FamilyHealth, HealthStatus } from './state.js';

export interface MemberOptions {
  readonly probe: Pick<ProbeSpec, 'rise' | 'fall' | 'intervalMs' | 'recheckMs'>;
  readonly damping: Damping;
  /** Status before the first verdict (the service's initialState). */
  readonly initial: HealthStatus;
}

export interface MemberState {
  readonly confirm: ConfirmState;
  readonly damping: DampingState;
  readonly dampingOpts: Damping;
  /** What is published: confirm's status unless damping holds the member down. */
  readonly health: FamilyHealth;
}

export interface MemberUpdate {
  readonly state: MemberState;
  readonly health: FamilyHealth;
  /** status or held differ from the previous health. */
  readonly changed: boolean;
}

export interface MemberObservation extends MemberUpdate {
  /** Delay before the next check, from confirm (start-to-start, before jitter). */
  readonly nextCheckInMs: number;
}

/** Reason given before the first check. */
export const NO_CHECK_YET = 'no check yet';

export function createMemberState(opts: MemberOptions, now: number): MemberState {
  validateDamping(opts.damping);
  const confirm = createConfirmState(
    { rise: opts.probe.rise, fall: opts.probe.fall, intervalMs: opts.probe.intervalMs, recheckMs: opts.probe.recheckMs },
    opts.initial,
  );
  const health: FamilyHealth = Object.freeze({ status: opts.initial, since: now, reason: NO_CHECK_YET, held: false });
  return Object.freeze({ confirm, damping: NO_PENALTY, dampingOpts: opts.damping, health });
}

/**
 * The earliest time the published status could change. A hold that ends
 * dominates; otherwise a streak against confirm's status (failures while up,
 * successes while down, anything while unknown) gives the earliest verdict
 * if every following check went the same way.
 */
function nextChangeAt(confirm: ConfirmState, damping: DampingState, opts: Damping): number | undefined {
  const release = releaseAt(damping, opts);
  const at = confirm.lastAt;
  if (at === undefined) return release;
  switch (confirm.status) {
    case 'up':
      // Held while the checks pass: the release is what changes the status.
      if (release !== undefined) return release;
      return confirm.failures > 0 ? at + earliestDownInMs(confirm) : undefined;
    case 'down':
      if (confirm.successes === 0) return undefined;
      // Coming back while held: both the rise and the release are needed.
      return Math.max(at + earliestUpInMs(confirm), release ?? -Infinity);
    case 'unknown': {
      const soonest = at + Math.min(earliestDownInMs(confirm), earliestUpInMs(confirm));
      return release === undefined ? soonest : release;
    }
  }
}

function publish(prev: FamilyHealth, confirm: ConfirmState, damping: DampingState, opts: Damping, now: number): FamilyHealth {
  const suppressed = damping.suppressed;
  const status: HealthStatus = suppressed ? 'down' : confirm.status;
  const held = suppressed && confirm.status !== 'down';
  const change = nextChangeAt(confirm, damping, opts);
  const health: FamilyHealth = {
    status,
    since: status === prev.status ? prev.since : now,
    reason: confirm.lastReason ?? prev.reason,
    held,
    ...(change === undefined ? {} : { nextChangeAt: change }),
  };
  return Object.freeze(health);
}

function update(state: MemberState, confirm: ConfirmState, damping: DampingState, now: number): MemberUpdate {
  const prev = state.health;
  const health = publish(prev, confirm, damping, state.dampingOpts, now);
  const next: MemberState = Object.freeze({ confirm, damping, dampingOpts: state.dampingOpts, health });
  return { state: next, health, changed: health.status !== prev.status || health.held !== prev.held };
}

/**
 * Applies one check result. `now` is the time the check started (see
 * confirm.ts: it paces checks start-to-start).
 */
export function observeMember(state: MemberState, result: { readonly ok: boolean; readonly reason: string }, now: number): MemberObservation {
  const o = observe(state.confirm, result, now);
  let damping = settleDamping(state.damping, state.dampingOpts, now);
  // A flap is losing a member that was up; the first verdict after a start
  // (unknown → down) is not one.
  if (o.changed && o.state.status === 'down' && state.confirm.status === 'up') damping = addPenalty(damping, state.dampingOpts, now);
  return { ...update(state, o.state, damping, now), nextCheckInMs: o.nextCheckInMs };
}

/** Re-evaluates without a check result: ends a hold whose release time has come. */
export function tickMember(state: MemberState, now: number): MemberUpdate {
  const damping = settleDamping(state.damping, state.dampingOpts, now);
  if (damping === state.damping) return { state, health: state.health, changed: false };
  return update(state, state.confirm, damping, now);
}

/** When tickMember should next run (a hold's release), or undefined. */
export function memberReleaseAt(state: MemberState): number | undefined {
  return releaseAt(state.damping, state.dampingOpts);
}

/** True when the member is checked at the steady interval (no streak being confirmed), where jitter may apply. */
export function isSteady(state: MemberState): boolean {
  const c = state.confirm;
  if (c.status === 'up') return c.failures === 0;
  if (c.status === 'down') return c.successes === 0;
  return false;
}
