// Compiled health-aware services and split-horizon views: what zones/ produces
// from the `services:` and `views:` config keys. Immutable, like zone.ts.

export type Family = 'v4' | 'v6';

/** A checker and its timing. Checker-specific fields follow probes/checkers/*.ts spec names. */
export interface ProbeSpec {
  readonly type: 'http' | 'https' | 'tcp' | 'dns' | 'none';
  /** Checker fields (port, path, host, servername, headers, expect_status, expect_body, tls_verify, send, expect, name, qtype, expect_rcode, expect_answer, method). */
  readonly params: Readonly<Record<string, unknown>>;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Re-check period while a change is being confirmed (the confirmation window W ≈ fall × recheck). */
  readonly recheckMs: number;
  readonly jitterMs: number;
  readonly rise: number;
  readonly fall: number;
}

export interface CompiledMember {
  /** "<service name>/<member name>": stable across reloads, used for health state and logs. */
  readonly id: string;
  readonly name: string;
  /** Textual addresses by family; either may be empty. Probes target each address. */
  readonly v4: readonly string[];
  readonly v6: readonly string[];
  readonly priority: number;
  readonly weight: number;
  /** SRV services: the target (name key) and port handed out. */
  readonly srv?: { readonly target: string; readonly port: number };
  /** MX services: the exchange (name key); preference is `priority`. */
  readonly mx?: { readonly exchange: string };
  readonly probe: ProbeSpec;
  /**
   * Identity of what is probed (addresses + probe spec). Health state carries
   * over a reload only when id and probeKey are both unchanged.
   */
  readonly probeKey: string;
}

export type WhenAllDown =
  | { readonly mode: 'fail_open' }
  | { readonly mode: 'last_resort'; readonly v4: readonly string[]; readonly v6: readonly string[] };

export type Failback =
  /** Return at once when a better member recovers. */
  | { readonly mode: 'immediate' }
  /** Return in steps: each percentage of answers for stepMs, then the next. */
  | { readonly mode: 'ramp'; readonly percent: readonly number[]; readonly stepMs: number }
  /** Stay on the current members until an operator approves the failback. */
  | { readonly mode: 'manual' };

export interface Damping {
  readonly enabled: boolean;
  /** Penalty added per transition to down. */
  readonly penalty: number;
  /** Above this the member is held down even when its checks pass. */
  readonly suppress: number;
  /** Below this a held member may come back. */
  readonly reuse: number;
  readonly halfLifeMs: number;
}

export interface CompiledService {
  /** Owner name key, lowercased. */
  readonly name: string;
  /** Origin key of the zone the name lives in (in every view the service is in). */
  readonly zone: string;
  /** View names this service answers in; empty = every view. */
  readonly views: readonly string[];
  readonly kind: 'address' | 'srv' | 'mx';
  readonly policy: 'failover' | 'multivalue' | 'weighted';
  /** TTL when every member is up and nothing changed within `settleMs`. */
  readonly ttl: number;
  /** TTL while any member is down, failing over, ramping back, or within settleMs of a change. */
  readonly degradedTtl: number;
  readonly settleMs: number;
  /** failover: a priority group serves only while it has at least this many healthy members. */
  readonly minHealthy: number;
  /** multivalue: at most this many addresses per family in one answer. */
  readonly maxAnswers: number;
  /** weighted: how many members one answer carries. */
  readonly count: number;
  readonly whenAllDown: WhenAllDown;
  readonly failback: Failback;
  readonly damping: Damping;
  /** State of members before their first verdict ('unknown' is served as up). */
  readonly initialState: 'unknown' | 'up' | 'down';
  readonly members: readonly CompiledMember[];
  readonly where: { readonly file: string; readonly line: number };
}

export interface Cidr {
  readonly family: 4 | 6;
  /** Network address bytes (4 or 16), already masked to `prefix`. */
  readonly bytes: Uint8Array;
  readonly prefix: number;
}

export interface CompiledView {
  readonly name: string;
  /** Client prefixes; empty = matches every client (a default view, which must be last). */
  readonly match: readonly Cidr[];
  /** Match the EDNS Client Subnet address instead of the source when the query carries one. */
  readonly useEcs: boolean;
}
