// The confirmation window: turns a stream of check results for one member into
// up/down decisions. Pure on purpose: no timers, no clock, time comes in as an
// argument, so every scheduling decision is a unit test and the scheduler that
// drives it can be swapped without touching the rules. See probes/README.md for
// the defaults and why.

export type MemberStatus = 'up' | 'down' | 'unknown';

export interface ConfirmOptions {
  /** Consecutive successes needed to become up. */
  readonly rise: number;
  /** Consecutive failures needed to become down. */
  readonly fall: number;
  /** Check period while settled (no streak against the current status). */
  readonly intervalMs: number;
  /** Check period while a streak against the current status is being confirmed. */
  readonly recheckMs: number;
}

/** fall × recheck = 1 s confirmation window; interval keeps detection + confirmation within W + 0.5 s. */
export const DEFAULT_CONFIRM: ConfirmOptions = Object.freeze({ rise: 3, fall: 5, intervalMs: 500, recheckMs: 200 });

export class ConfirmOptionsError extends Error {
  override name = 'ConfirmOptionsError';
}

export interface ConfirmState {
  readonly opts: ConfirmOptions;
  readonly status: MemberStatus;
  /** Current run of consecutive successes, capped at rise. */
  readonly successes: number;
  /** Current run of consecutive failures, capped at fall. */
  readonly failures: number;
  /** Delay before the next check, as last decided (0 before the first observation: check at once). */
  readonly nextCheckInMs: number;
  /** Time of the last observation; undefined before the first one. */
  readonly lastAt: number | undefined;
  readonly lastReason: string | undefined;
  /** Time status last changed; undefined while it never has. */
  readonly changedAt: number | undefined;
}

export interface Observation {
  readonly state: ConfirmState;
  /** True when status differs from the previous state's (unknown → up counts). */
  readonly changed: boolean;
  readonly nextCheckInMs: number;
}

function positiveInt(v: number, name: string): void {
  if (!Number.isInteger(v) || v < 1) throw new ConfirmOptionsError(`${name} must be an integer >= 1, got ${v}`);
}

function positiveMs(v: number, name: string): void {
  if (!Number.isFinite(v) || v <= 0) throw new ConfirmOptionsError(`${name} must be a positive number of milliseconds, got ${v}`);
}

/** Fills defaults and validates; throws ConfirmOptionsError. */
export function confirmOptions(partial: Partial<ConfirmOptions> = {}): ConfirmOptions {
  const opts = { ...DEFAULT_CONFIRM, ...partial };
  positiveInt(opts.rise, 'rise');
  positiveInt(opts.fall, 'fall');
  positiveMs(opts.intervalMs, 'intervalMs');
  positiveMs(opts.recheckMs, 'recheckMs');
  return Object.freeze(opts);
}

/**
 * A fresh state. `initial` is 'unknown' at startup; 'up' or 'down' when the
 * status is known from elsewhere (a peer, a saved state) and should not be
 * re-earned. The first check is due at once.
 */
export function createConfirmState(opts: Partial<ConfirmOptions>, initial: MemberStatus = 'unknown'): ConfirmState {
  return Object.freeze({
    opts: confirmOptions(opts),
    status: initial,
    successes: 0,
    failures: 0,
    nextCheckInMs: 0,
    lastAt: undefined,
    lastReason: undefined,
    changedAt: undefined,
  });
}

/**
 * Unknown is served as up: at startup, before the first results, withholding
 * every member would turn a restart of Vigil into an outage, while serving
 * them is what a plain DNS server would have done anyway.
 */
export function isServing(state: ConfirmState): boolean {
  return state.status !== 'down';
}

function delayFor(status: MemberStatus, successes: number, failures: number, opts: ConfirmOptions): number {
  // A streak against the current status is a question that needs a quick
  // answer; unknown is always such a question.
  if (status === 'unknown') return opts.recheckMs;
  if (status === 'up') return failures > 0 ? opts.recheckMs : opts.intervalMs;
  return successes > 0 ? opts.recheckMs : opts.intervalMs;
}

/**
 * Applies one check result. `now` is in ms on any monotonic clock; pass the
 * time the check *started* so that nextCheckInMs paces checks start-to-start
 * and a run of timeouts does not stretch the confirmation window (README).
 */
export function observe(state: ConfirmState, result: { readonly ok: boolean; readonly reason: string }, now: number): Observation {
  const { opts } = state;
  const successes = result.ok ? Math.min(state.successes + 1, opts.rise) : 0;
  const failures = result.ok ? 0 : Math.min(state.failures + 1, opts.fall);
  let status = state.status;
  if (result.ok && status !== 'up' && successes >= opts.rise) status = 'up';
  else if (!result.ok && status !== 'down' && failures >= opts.fall) status = 'down';
  const changed = status !== state.status;
  const nextCheckInMs = delayFor(status, successes, failures, opts);
  const next: ConfirmState = Object.freeze({
    opts,
    status,
    successes,
    failures,
    nextCheckInMs,
    lastAt: now,
    lastReason: result.reason,
    changedAt: changed ? now : state.changedAt,
  });
  return { state: next, changed, nextCheckInMs };
}

function firstWait(state: ConfirmState, now: number | undefined): number {
  if (now === undefined || state.lastAt === undefined) return state.nextCheckInMs;
  return Math.max(0, state.nextCheckInMs - (now - state.lastAt));
}

/**
 * Earliest time, in ms, at which this member could be declared down, assuming
 * the scheduler honours nextCheckInMs and every check from the next one on
 * fails instantly (a refused connection). 0 when already down. Measured from
 * the last observation, or from `now` when given. Answers that carry this
 * member must not get a TTL longer than this: no resolver should hold an
 * address past the moment Vigil could stop handing it out.
 */
export function earliestDownInMs(state: ConfirmState, opts: ConfirmOptions = state.opts, now?: number): number {
  if (state.status === 'down') return 0;
  const needed = Math.max(1, opts.fall - state.failures);
  return firstWait(state, now) + (needed - 1) * opts.recheckMs;
}

/** Mirror of earliestDownInMs for failback: earliest time a member could be declared up. 0 when up. */
export function earliestUpInMs(state: ConfirmState, opts: ConfirmOptions = state.opts, now?: number): number {
  if (state.status === 'up') return 0;
  const needed = Math.max(1, opts.rise - state.successes);
  return firstWait(state, now) + (needed - 1) * opts.recheckMs;
}
