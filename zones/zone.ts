import type { Cidr, CompiledService, CompiledView } from './service.js';
import type { OperationsSettings } from './operations.js';
import type { RrlSettings } from '../server/limits/rrl.js';
import type { CookieSecret } from '../server/wire/cookie.js';

// The compiled, immutable zone database: what zones/ produces and the answer
// engine in server/answer reads. Nothing here is mutated after compilation, so
// a snapshot can be swapped atomically while queries run.

export interface RRset {
  /** Owner name key, lowercased. */
  readonly owner: string;
  readonly type: number;
  readonly ttl: number;
  /** Uncompressed wire rdata, duplicates removed, in zone-file order. */
  readonly rdatas: readonly Uint8Array[];
  /**
   * Health-driven RRsets only (set by the snapshot builder, never by zones/):
   * equally likely alternatives, one per query in turn, for rotation,
   * weighted draws and failback ramps. Each alternative is a complete RRset.
   */
  readonly variants?: readonly RRset[];
}

export interface ZoneNode {
  readonly owner: string;
  /** Empty for an empty non-terminal (a name that exists only because names below it do). */
  readonly rrsets: ReadonlyMap<number, RRset>;
  /** True when this node holds NS records and is not the apex: a delegation point. */
  readonly isCut: boolean;
}

export interface Zone {
  /** Origin name key, lowercased. */
  readonly origin: string;
  /** Every owner name in the zone and every empty non-terminal, including occluded data and glue below cuts. */
  readonly nodes: ReadonlyMap<string, ZoneNode>;
  readonly soa: RRset;
  /** min(SOA TTL, SOA MINIMUM): the TTL of the SOA in negative answers (RFC 2308 section 5). */
  readonly negativeTtl: number;
  /** Where the zone came from, for logs: a file path or "<config>". */
  readonly source: string;
  /** Who may transfer it (AXFR, server/xfr); absent = nobody. Never set on a zone with health-driven services. */
  readonly transfer?: ZoneTransfer;
}

export interface ZoneTransfer {
  /** Client prefixes allowed to transfer the zone (`transfer.allow`); never empty. */
  readonly allow: readonly Cidr[];
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface TcpSettings {
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerClient: number;
  /** Bytes a connection may hold unanswered (read side) or unsent (write side) before it is closed. */
  readonly maxBufferedBytes: number;
  readonly maxQueriesPerConnection: number;
}

export interface ServerSettings {
  readonly listen: readonly ListenAddress[];
  /** EDNS UDP payload size we advertise and the most we send over UDP (RFC 6891; 1232 per DNS Flag Day 2020). */
  readonly udpPayload: number;
  readonly tcp: TcpSettings;
  /** CHAOS TXT answers for version.bind / id.server (and version.server / hostname.bind); absent = REFUSED. */
  readonly chaos?: { readonly version?: string; readonly identity?: string };
  /** Response Rate Limiting for UDP (server/limits/rrl.ts); absent = off. */
  readonly rateLimit?: Readonly<RrlSettings>;
  /** DNS Cookies (RFC 7873/9018); absent = on, with the process's random secret (see buildSnapshot). */
  readonly cookies?: CookieSettings;
  /**
   * `server.user`: the account (name, or uid as decimal text) a root-started
   * process switches to once every listener is bound (server/privileges.ts);
   * absent = keep the starting user. Applied at start only.
   */
  readonly user?: string;
  /** `server.group` (name or gid as text); absent = the user's primary group. */
  readonly group?: string;
}

export interface CookieSettings {
  readonly enabled: boolean;
  /** From cookies.secret_file / previous_secret_file or $VIGIL_COOKIE_SECRET; absent = the process's random secret. */
  readonly secret?: CookieSecret;
}

export interface CompiledConfig {
  readonly file: string;
  /** sha256 of the config file and every zone file it loaded, hex. */
  readonly hash: string;
  readonly server: ServerSettings;
  /** Zones served in every view, by origin key. */
  readonly zones: ReadonlyMap<string, Zone>;
  /** Zones declared with `views:`, per view name, by origin key; in that view they replace a shared zone of the same origin. */
  readonly viewZones: ReadonlyMap<string, ReadonlyMap<string, Zone>>;
  /** Views in match order; empty when the config declares none (one view for every client). */
  readonly views: readonly CompiledView[];
  readonly services: readonly CompiledService[];
  /** Node identity, replication, metrics and admin listeners, logging. */
  readonly operations: OperationsSettings;
  /**
   * Origin keys of zones left out to be loaded after the server started
   * (LoadOptions.deferZonesOver): their names answer SERVFAIL until a config
   * with them is swapped in. Absent in a complete config.
   */
  readonly pendingZones?: ReadonlySet<string>;
}
