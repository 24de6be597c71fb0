// TTL rules (README.md, "TTL"): the configured ttl, degraded_ttl while
// degraded, and never longer than the time until the next possible change of
// this answer (a change in progress or a scheduled step), floored at 1 s.

import type { CompiledService } from '../../../zones/service.js';

/**
 * `base` capped by each instant in `limits`: at most ceil((t − now) / 1000)
 * seconds, and at least 1 s from a cap (a TTL of 0 would defeat caching and
 * is never produced here; a configured 0 stays 0).
 */
export function capTtl(base: number, now: number, limits: readonly number[]): number {
  let ttl = base;
  for (const t of limits) ttl = Math.min(ttl, Math.max(1, Math.ceil((t - now) / 1000)));
  return ttl;
}

export function baseTtl(service: CompiledService, degraded: boolean): number {
  return degraded ? service.degradedTtl : service.ttl;
}

/** Whether an instant `t` could lower a TTL of `ttl` seconds handed out at `now`. */
export function wouldCap(ttl: number, now: number, t: number): boolean {
  return capTtl(ttl, now, [t]) < ttl;
}
