// Flap damping, BGP route-flap style: every time a member goes down it earns a
// penalty, the penalty decays exponentially, and a member whose penalty
// crosses `suppress` is held down, even while its checks pass, until the
// penalty has decayed to `reuse`. Pure like confirm.ts: no timers, no clock,
// time comes in as an argument (ms on any clock, the same one throughout).
//
// The penalty is stored as a value at a time and only rewritten when a
// penalty is added or a hold ends, so the release time computed from it is
// the same number every time it is asked for.

import type { Damping } from '../../zones/service.js';

export type DampingOptions = Damping;

export interface DampingState {
  /** Penalty as of `at` (before decay since then). */
  readonly penalty: number;
  readonly at: number;
  /** Held down: the penalty went above suppress and has not decayed to reuse yet. */
  readonly suppressed: boolean;
}

export const NO_PENALTY: DampingState = Object.freeze({ penalty: 0, at: 0, suppressed: false });

export class DampingOptionsError extends Error {
  override name = 'DampingOptionsError';
}

/** Throws DampingOptionsError when an enabled configuration cannot work. */
export function validateDamping(opts: DampingOptions): void {
  if (!opts.enabled) return;
  const finitePositive = (v: number, name: string): void => {
    if (!Number.isFinite(v) || v <= 0) throw new DampingOptionsError(`damping ${name} must be a positive number, got ${v}`);
  };
  finitePositive(opts.penalty, 'penalty');
  finitePositive(opts.suppress, 'suppress');
  finitePositive(opts.reuse, 'reuse');
  finitePositive(opts.halfLifeMs, 'half life');
  if (opts.reuse >= opts.suppress) throw new DampingOptionsError(`damping reuse (${opts.reuse}) must be below suppress (${opts.suppress})`);
}

/** The penalty decayed to `now`: penalty × 2^(−elapsed / half life). Never grows backwards in time. */
export function decayedPenalty(state: DampingState, opts: DampingOptions, now: number): number {
  if (state.penalty === 0) return 0;
  const elapsed = Math.max(0, now - state.at);
  return state.penalty * Math.pow(2, -elapsed / opts.halfLifeMs);
}

/**
 * Time at which a held member is released: when the penalty has decayed to
 * `reuse` (rounded up to the next whole ms). Undefined when not held.
 */
export function releaseAt(state: DampingState, opts: DampingOptions): number | undefined {
  if (!state.suppressed) return undefined;
  if (state.penalty <= opts.reuse) return state.at;
  return state.at + Math.ceil(opts.halfLifeMs * Math.log2(state.penalty / opts.reuse));
}

/** Ends a hold whose release time has come. Returns the same object when nothing changes. */
export function settleDamping(state: DampingState, opts: DampingOptions, now: number): DampingState {
  if (!state.suppressed) return state;
  const at = releaseAt(state, opts);
  if (!opts.enabled || (at !== undefined && now >= at)) {
    return Object.freeze({ penalty: decayedPenalty(state, opts, now), at: now, suppressed: false });
  }
  return state;
}

/**
 * Records a transition to down at `now`: the decayed penalty plus
 * opts.penalty, held when the sum is above suppress (a member already held
 * stays held, its release pushed back). A no-op when damping is disabled.
 */
export function addPenalty(state: DampingState, opts: DampingOptions, now: number): DampingState {
  if (!opts.enabled) return state;
  const settled = settleDamping(state, opts, now);
  const penalty = decayedPenalty(settled, opts, now) + opts.penalty;
  return Object.freeze({ penalty, at: now, suppressed: settled.suppressed || penalty > opts.suppress });
}
