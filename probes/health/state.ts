// The health contract between probes/ (producers) and server/answer (the
// snapshot builder, the only consumer). Immutable values; a new HealthSnapshot
// is published on every change.

import type { Family } from '../../zones/service.js';

export type HealthStatus = 'up' | 'down' | 'unknown';

export interface FamilyHealth {
  /** After damping: a member held down by its flap penalty reads 'down'. */
  readonly status: HealthStatus;
  /** ms since the epoch of the last status change (or of the start). */
  readonly since: number;
  /** Last check's reason ("http 503", "refused", "timeout", ...). */
  readonly reason: string;
  /** Held down by flap damping although its checks pass. */
  readonly held: boolean;
  /**
   * When a change is in progress (a streak of results against the current
   * status, or a hold-down that will end): the earliest ms epoch at which the
   * status could change. Undefined when settled. Answers must not carry a TTL
   * that outlives it.
   */
  readonly nextChangeAt?: number;
}

export function healthKey(memberId: string, family: Family): string {
  return `${memberId}|${family}`;
}

export interface HealthSnapshot {
  /** By healthKey(member id, family). A missing entry means no verdict yet: the service's initialState applies. */
  readonly members: ReadonlyMap<string, FamilyHealth>;
  /** Service names (keys) whose held-back failback an operator approved, with the time of approval. */
  readonly failbackApproved: ReadonlyMap<string, number>;
}

export const EMPTY_HEALTH: HealthSnapshot = { members: new Map(), failbackApproved: new Map() };
