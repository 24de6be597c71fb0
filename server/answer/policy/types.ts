// What a policy computes for one service: the answer sets to hand out and
// their TTL. Pure data; the snapshot builder encodes it.

export interface SrvTarget {
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  /** Name key. */
  readonly target: string;
}

export interface MxExchange {
  readonly preference: number;
  /** Name key. */
  readonly exchange: string;
}

export interface AnswerSet {
  readonly v4: readonly string[];
  readonly v6: readonly string[];
  readonly srv: readonly SrvTarget[];
  readonly mx: readonly MxExchange[];
}

/**
 * Carried from one computation of a service's answer to the next, so that
 * failback can be gradual or held for an operator. Owned by the snapshot
 * builder, produced only by policies.
 */
export interface ServiceRuntime {
  /** Priority of the group currently served (failover), or undefined before the first computation. */
  readonly activePriority?: number;
  /** A ramp back to a recovered better group. */
  readonly ramp?: {
    readonly toPriority: number;
    readonly fromPriority: number;
    /** Index into the service's failback percent list. */
    readonly step: number;
    readonly stepStartedAt: number;
  };
  /** Manual failback: a better group recovered at this time and waits for approval. */
  readonly waitingSince?: number;
  /** ms epoch of the last change of the answer (its summary), for the settle window. */
  readonly changedAt?: number;
  readonly summary?: string;
  /**
   * Addition: failover state per address family. The A answer follows the v4
   * health of the members and the AAAA answer their v6 health, so each family
   * has its own active group, ramp and manual wait. The top-level
   * activePriority/ramp/waitingSince mirror these for logs (v4 first) and seed
   * both families when `families` is absent. Unset for multivalue, weighted,
   * srv and mx services.
   */
  readonly families?: { readonly v4?: FamilyRuntime; readonly v6?: FamilyRuntime };
}

/** The failover state of one address family (see ServiceRuntime.families). */
export interface FamilyRuntime {
  readonly activePriority?: number;
  readonly ramp?: ServiceRuntime['ramp'];
  readonly waitingSince?: number;
}

export interface ServiceAnswer {
  /** Equally likely answer sets; each query takes the next one (rotation, weighted draws, ramp split). At least one. */
  readonly variants: readonly AnswerSet[];
  readonly ttl: number;
  /** No member was healthy and the answer is every member (fail open) or the last-resort set. */
  readonly failedOpen: boolean;
  /** Any member down, a failover or ramp in progress, or within the settle window. */
  readonly degraded: boolean;
  /** Recompute at this ms epoch even without a health change (next ramp step, end of settle); undefined = only on change. */
  readonly recomputeAt?: number;
  /** A stable one-line description of the answer for logs and change detection. */
  readonly summary: string;
  readonly runtime: ServiceRuntime;
}
