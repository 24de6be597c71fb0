// The replication contract: what nodes publish to each other through Redis,
// and what the pure consensus and override functions consume. Plain values;
// everything with a time is a ms epoch on the *receiving* node's clock unless
// said otherwise, so clock skew between PoPs never ages a node out.

import type { HealthStatus } from '../health/state.js';

export interface NodeIdentity {
  /** Unique per node ("ams-1"). */
  readonly id: string;
  /** PoP name ("ams"); several nodes may share one. */
  readonly pop: string;
}

/** One node's verdict on one member and family (key = healthKey(memberId, family)). */
export interface Verdict {
  readonly status: HealthStatus;
  /** When this status began, on the publishing node's clock (for display only). */
  readonly since: number;
  /** The last check's reason ("http 503", "timeout", ...). */
  readonly reason: string;
}

/** Everything known about one node, as the store holds it. */
export interface NodeReport {
  readonly node: string;
  readonly pop: string;
  /** Local time at which the last heartbeat or verdict from this node was received. */
  readonly lastSeen: number;
  /** By healthKey. */
  readonly verdicts: ReadonlyMap<string, Verdict>;
  /** The health epoch this node serves per service key (see snapshot.ts serviceKey). */
  readonly served: ReadonlyMap<string, number>;
}

export type Quorum =
  /** Down when more than half of the fresh nodes that hold a verdict say down; a tie is not down. */
  | { readonly mode: 'majority' }
  /** Down when at least k fresh nodes say down; with fewer than k fresh voters, all of them must. */
  | { readonly mode: 'k_of_n'; readonly k: number };

export type OverrideAction = 'drain' | 'force_up' | 'force_down';

export interface Override {
  /** CompiledMember.id ("www.example.test./primary"); applies to both families. */
  readonly member: string;
  readonly action: OverrideAction;
  readonly reason: string;
  /** Who set it (operator name, or "node:<id>" for a re-publication). */
  readonly by: string;
  /** ms epoch when set. */
  readonly at: number;
  /** ms epoch when it lapses by itself; absent = until cleared. */
  readonly expiresAt?: number;
}

/** One entry of the audit stream. */
export interface AuditEntry {
  /** Redis stream id ("1700000000000-0"), or a local sequence when Redis is absent. */
  readonly id: string;
  readonly at: number;
  /** "override.set", "override.clear", "override.expired", "consensus.change", "answer.change". */
  readonly event: string;
  readonly node: string;
  readonly by: string;
  readonly reason: string;
  /** Event details (member, action, from, to, service, epoch...), flat string values. */
  readonly fields: Readonly<Record<string, string>>;
}

export interface ReplicationSettings {
  readonly node: NodeIdentity;
  /** Absent: no Redis, one node, state in-process. */
  readonly redis?: RedisSettings;
  readonly quorum: Quorum;
  /** A node not heard from for this long stops counting. */
  readonly staleAfterMs: number;
  /** Heartbeat period; every heartbeat also carries a full resync at `resyncMs`. */
  readonly heartbeatMs: number;
  /** Full resync (read every node's state, rewrite our own) period. */
  readonly resyncMs: number;
  /** While Redis is unreachable, remote verdicts keep counting at their last value for this long; then the node decides alone. */
  readonly outageGraceMs: number;
  /** A node serving a different epoch for a service for longer than this is reported as diverged. */
  readonly divergenceAfterMs: number;
}

export interface RedisSettings {
  /** redis://[:password@]host:port/db or rediss:// for TLS. Absent with sentinels or cluster. */
  readonly url?: string;
  /** Sentinel: [{host, port}] and the master group name. */
  readonly sentinels?: readonly { readonly host: string; readonly port: number }[];
  readonly sentinelName?: string;
  /** Cluster seed nodes. */
  readonly cluster?: readonly { readonly host: string; readonly port: number }[];
  /** Password read from a file (never logged); overrides one in the URL. */
  readonly password?: string;
  readonly username?: string;
  /** TLS: CA bundle contents (PEM), and whether to verify the server name. */
  readonly tls?: { readonly ca?: string; readonly servername?: string; readonly rejectUnauthorized: boolean };
  /** Key prefix; every key lives under `<prefix>:`. Cluster mode wraps it in a hash tag. */
  readonly prefix: string;
}

export interface StoreEvents {
  /** Remote reports or overrides changed (coalesced; read reports()/overrides()). */
  change: [];
  /** Connection to Redis gained or lost. */
  connection: [connected: boolean];
  /** An audit entry was appended (by any node). */
  audit: [entry: AuditEntry];
}

/**
 * Where a node's verdicts go and where the other nodes' come from. Two
 * implementations: RedisStore (redis-store.ts) and LocalStore (local-store.ts,
 * one node, in-process). Never throws for a Redis outage: writes made while
 * disconnected are kept and replayed by the next resync.
 */
export interface HealthStore {
  readonly node: NodeIdentity;
  /** Connects (RedisStore: resolves after the first successful resync, or after a bounded wait when Redis is down). */
  start(): Promise<void>;
  /** Our verdicts for every member we probe (the full set, not a delta); only changed fields are written. */
  publishVerdicts(verdicts: ReadonlyMap<string, Verdict>): void;
  /** The epoch we serve per service key (full set). */
  publishServed(served: ReadonlyMap<string, number>): void;
  /** Every other node known (not this one), stale ones included; consensus decides what counts. */
  reports(): readonly NodeReport[];
  readonly connected: boolean;
  /** Local time Redis became unreachable, or undefined while connected. */
  readonly disconnectedSince: number | undefined;
  /**
   * The cluster-wide epoch for a service whose answer summary hash is `hash`:
   * the same hash always gets the same epoch, a new hash gets the next one.
   * Local counter while Redis is unreachable (reconciled at the next change after reconnecting).
   */
  claimEpoch(service: string, hash: string): Promise<number>;
  /** Current overrides, expired ones removed. */
  overrides(): readonly Override[];
  setOverride(o: Override): Promise<void>;
  /** Clears the override of `member`; false when there was none. */
  clearOverride(member: string, by: string, reason: string): Promise<boolean>;
  /** Appends to the audit stream (bounded length). */
  audit(event: string, by: string, reason: string, fields: Record<string, string>): Promise<void>;
  /** The newest `count` audit entries, newest first. */
  auditLog(count: number): Promise<readonly AuditEntry[]>;
  on<K extends keyof StoreEvents>(event: K, listener: (...args: StoreEvents[K]) => void): this;
  off<K extends keyof StoreEvents>(event: K, listener: (...args: StoreEvents[K]) => void): this;
  close(): Promise<void>;
}
