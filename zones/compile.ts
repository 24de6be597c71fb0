// Records to the immutable zone model of zones/zone.ts, and RawConfig to
// CompiledConfig. Every check collects instead of throwing: an operator fixing a
// zone wants the whole list at once, each entry pointing at a file and line.

import { createHash } from 'node:crypto';
import type { CompiledConfig, CookieSettings, ListenAddress, RRset, ServerSettings, Zone, ZoneNode, ZoneTransfer } from './zone.js';
import type { Cidr, CompiledService } from './service.js';
import type { SourceLocation, ZoneRecord } from './record.js';
import { ConfigError, absolute, compileServerAccount, formatPath, splitHostPort, type ConfigPath, type Position, type RawConfig } from './config.js';
import { CLASS, TYPE, typeName } from '../server/wire/constants.js';
import { formatName, isSubdomain, lowerKey, parentKey, parseName, readUncompressedName } from '../server/wire/name.js';
import { analyzeServices, parseCidr, placeServices, type PlacedZone } from './services.js';
import { MAX_WINDOW_S, RRL_DEFAULTS, type RrlSettings } from '../server/limits/rrl.js';
import { compileOperations, type OperationsInputs } from './operations.js';
import { runNow, STEP, type Steps } from './steps.js';

export const DEFAULTS = {
  listen: ['127.0.0.1:5353'],
  udpPayload: 1232,
  tcp: {
    idleTimeoutMs: 10_000,
    maxConnections: 1000,
    maxConnectionsPerClient: 64,
    maxBufferedBytes: 131_072,
    maxQueriesPerConnection: 1000,
  },
} as const;

/** Where a zone is declared, for problems that belong to the zone rather than to one record. */
export interface ZoneDeclaration {
  file: string;
  line: number;
  column?: number;
  path?: string;
}

export interface ZoneInput {
  /** Origin name key. */
  origin: string;
  records: readonly ZoneRecord[];
  /** File path or "<config>", kept in Zone.source. */
  source: string;
  declaredAt: ZoneDeclaration;
}

export interface CompileResult<T> {
  /** Undefined when there are errors. */
  value: T | undefined;
  errors: ConfigError[];
  /** Accepted but suspicious data (occluded records, TTL mismatches). */
  warnings: ConfigError[];
}

// Types that RFC 2181 10.1 / RFC 4035 allow beside a CNAME and that a cut may carry besides NS and DS.
const DNSSEC_COMPANIONS: ReadonlySet<number> = new Set([TYPE.RRSIG, TYPE.NSEC]);

interface RRsetBuilder {
  owner: string;
  type: number;
  ttl: number;
  rdatas: Uint8Array[];
  /** Source of each kept rdata, parallel to rdatas. */
  wheres: SourceLocation[];
  /** The rdatas as latin1 keys, made only once the RRset is large (see holds). */
  seen: Set<string> | undefined;
}

// Most RRsets hold one to four records: comparing bytes against each is cheaper
// than a Set, and a million-record zone then makes no key string, Set or Buffer
// per record, which is garbage the collector would pause answers to clear.
const SEEN_SET_AT = 16;

/** Adds rdata to the set's duplicate check; false if it is already there (RFC 2181 5: an RRset holds each record once). */
function holds(set: RRsetBuilder, rdata: Uint8Array): boolean {
  if (set.seen !== undefined) {
    const id = Buffer.from(rdata.buffer, rdata.byteOffset, rdata.byteLength).toString('latin1');
    if (set.seen.has(id)) return true;
    set.seen.add(id);
    return false;
  }
  for (const r of set.rdatas) if (r.byteLength === rdata.byteLength && Buffer.compare(r, rdata) === 0) return true;
  if (set.rdatas.length + 1 >= SEEN_SET_AT) {
    set.seen = new Set([...set.rdatas, rdata].map((r) => Buffer.from(r.buffer, r.byteOffset, r.byteLength).toString('latin1')));
  }
  return false;
}

/** Bytes per shared slab of rdata (RdataSlabs); an rdata above a quarter of it keeps its own buffer. */
const SLAB_BYTES = 64 * 1024;

/**
 * The rdatas a zone keeps, copied into shared slabs. The parser makes each
 * rdata with an ArrayBuffer of its own, about 80 bytes of heap per record
 * on top of the typed array, for 10-50 bytes of data; views into one 64 KiB
 * slab share that. Rdata is never written once compiled, and every reader
 * goes through byteOffset and byteLength.
 */
class RdataSlabs {
  private slab = new Uint8Array(0);
  private used = 0;

  /** `bytes`: how much all the rdatas to keep hold, so that a small zone's slab is no bigger than the zone. */
  constructor(private bytes: number) {}

  keep(rdata: Uint8Array): Uint8Array {
    const n = rdata.byteLength;
    if (n > SLAB_BYTES / 4) return rdata;
    if (this.used + n > this.slab.byteLength) {
      // A config of thousands of small zones must not cost 64 KiB each.
      this.slab = new Uint8Array(Math.max(n, Math.min(SLAB_BYTES, this.bytes)));
      this.used = 0;
    }
    this.bytes -= n;
    const out = this.slab.subarray(this.used, this.used + n);
    out.set(rdata);
    this.used += n;
    return out;
  }

  /** An array of exactly these rdatas: one grown by push holds room for 17 (150 bytes) however few it has. */
  keepAll(rdatas: readonly Uint8Array[]): Uint8Array[] {
    const out = new Array<Uint8Array>(rdatas.length);
    for (let i = 0; i < rdatas.length; i++) out[i] = this.keep(rdatas[i]!);
    return out;
  }
}

const at = (where: SourceLocation): { file: string; line: number } => ({ file: where.file, line: where.line });
const rrName = (owner: string, type: number): string => `${formatName(owner)} ${typeName(type)}`;

export function compileZone(input: ZoneInput): CompileResult<Zone> {
  return runNow(compileZoneSteps(input));
}

/** compileZone as steps (zones/steps.ts): it yields every STEP records or names, so a large zone can compile between queries. */
export function* compileZoneSteps(input: ZoneInput): Steps<CompileResult<Zone>> {
  let n = 0;
  const errors: ConfigError[] = [];
  const warnings: ConfigError[] = [];
  const origin = lowerKey(input.origin);
  const zoneName = formatName(origin);
  const decl = input.declaredAt;
  const zoneError = (detail: string): void => {
    errors.push(new ConfigError(detail, decl));
  };

  // owner -> type -> RRset under construction, in first-seen order.
  const owners = new Map<string, Map<number, RRsetBuilder>>();
  /** Bytes of the rdatas kept: what their slabs must hold (RdataSlabs). */
  let rdataBytes = 0;
  for (const rec of input.records) {
    if (++n % STEP === 0) yield;
    const owner = lowerKey(rec.owner);
    if (rec.class !== CLASS.IN) {
      errors.push(new ConfigError(`${rrName(owner, rec.type)}: only class IN is supported`, at(rec.where)));
      continue;
    }
    if (!isSubdomain(owner, origin)) {
      errors.push(new ConfigError(`${rrName(owner, rec.type)} is outside the zone ${zoneName}`, at(rec.where)));
      continue;
    }
    if (rec.type === TYPE.DNAME) {
      errors.push(new ConfigError(`${rrName(owner, rec.type)}: DNAME is not supported`, at(rec.where)));
      continue;
    }
    let types = owners.get(owner);
    if (!types) owners.set(owner, (types = new Map()));
    let set = types.get(rec.type);
    if (!set) {
      types.set(rec.type, (set = { owner, type: rec.type, ttl: rec.ttl, rdatas: [], wheres: [], seen: undefined }));
    } else if (rec.ttl !== set.ttl) {
      // RFC 2181 5.2 deprecates differing TTLs in one RRset. Knot DNS 3.2.6 (measured
      // here with `knotc zone-check` and by querying knotd) loads such a zone with a
      // notice "TTL mismatch ... TTL set to N" per differing record, so the LAST
      // record's TTL wins, for duplicates too. We do the same so that answers match
      // Knot in the differential tests; BIND keeps the first TTL instead.
      warnings.push(
        new ConfigError(
          `${rrName(owner, rec.type)}: TTL ${rec.ttl} differs from ${set.ttl} earlier in the RRset; the whole RRset now uses ${rec.ttl} (RFC 2181 5.2)`,
          at(rec.where),
        ),
      );
      set.ttl = rec.ttl;
    }
    if (holds(set, rec.rdata)) continue;
    set.rdatas.push(rec.rdata);
    set.wheres.push(rec.where);
    if (rec.rdata.byteLength <= SLAB_BYTES / 4) rdataBytes += rec.rdata.byteLength;
  }

  // SOA: exactly one, at the apex.
    if (++n % STEP === 0) yield;
  for (const [owner, types] of owners) {
    const soa = types.get(TYPE.SOA);
    if (soa && owner !== origin) {
      for (const w of soa.wheres) errors.push(new ConfigError(`SOA at ${formatName(owner)}: the SOA record belongs at the zone apex ${zoneName}`, at(w)));
    }
  }
  const apex = owners.get(origin);
  const soaSet = apex?.get(TYPE.SOA);
  if (!soaSet) zoneError(`zone ${zoneName} (${input.source}) has no SOA record at its apex`);
  else if (soaSet.rdatas.length > 1) {
    for (const w of soaSet.wheres.slice(1)) errors.push(new ConfigError(`second SOA record for ${zoneName}: a zone has exactly one`, at(w)));
  }
  if (!apex?.get(TYPE.NS)) {
    const where = soaSet?.wheres[0];
    if (where) errors.push(new ConfigError(`zone ${zoneName} has no NS records at its apex`, at(where)));
    else zoneError(`zone ${zoneName} (${input.source}) has no NS records at its apex`);
  }

  // CNAME: alone at its name (RFC 1034 3.6.2), single (RFC 2181 10.1), never at the apex.
  for (const [owner, types] of owners) {
    if (++n % STEP === 0) yield;
    const cname = types.get(TYPE.CNAME);
    if (!cname) continue;
    const first = cname.wheres[0]!;
    if (owner === origin) {
      errors.push(new ConfigError(`CNAME at the zone apex ${zoneName}: the apex must hold SOA and NS records, which a CNAME cannot stand beside`, at(first)));
      continue;
    }
    for (const w of cname.wheres.slice(1)) {
      errors.push(new ConfigError(`second CNAME at ${formatName(owner)}: a name has at most one CNAME (RFC 2181 10.1)`, at(w)));
    }
    const others = [...types.values()].filter((s) => s.type !== TYPE.CNAME && !DNSSEC_COMPANIONS.has(s.type));
    if (others.length) {
      const list = others.map((s) => `${typeName(s.type)} at ${s.wheres[0]!.file}:${s.wheres[0]!.line}`).join(', ');
      errors.push(new ConfigError(`CNAME at ${formatName(owner)} beside other data (${list}); a CNAME must be the only record at its name (RFC 1034 3.6.2)`, at(first)));
    }
  }

  // Delegations. Every NS target anywhere in the zone may need addresses here:
  // glue for its own cut, sibling glue for another, or the apex's in-zone servers.
  const cuts = new Set<string>();
  const nsTargets = new Set<string>();
  for (const [owner, types] of owners) {
    if (++n % STEP === 0) yield;
    const ns = types.get(TYPE.NS);
    if (!ns) continue;
    if (owner !== origin) cuts.add(owner);
    for (const rd of ns.rdatas) nsTargets.add(lowerKey(readUncompressedName(rd, 0).key));
  }
  const hasAddress = (name: string): boolean => {
    const t = owners.get(name);
    return !!t && (t.has(TYPE.A) || t.has(TYPE.AAAA));
  };
  for (const cut of cuts) {
    const ns = owners.get(cut)!.get(TYPE.NS)!;
    ns.rdatas.forEach((rd, i) => {
      const target = lowerKey(readUncompressedName(rd, 0).key);
      if (isSubdomain(target, cut) && !hasAddress(target)) {
        errors.push(
          new ConfigError(
            `missing glue: NS target ${formatName(target)} of the delegation ${formatName(cut)} lies inside it but has no A or AAAA record in the zone`,
            at(ns.wheres[i]!),
          ),
        );
      }
    });
  }
  if (apex?.get(TYPE.NS)) {
    const ns = apex.get(TYPE.NS)!;
    ns.rdatas.forEach((rd, i) => {
      const target = lowerKey(readUncompressedName(rd, 0).key);
      if (isSubdomain(target, origin) && !topCut(target, origin, cuts) && !hasAddress(target)) {
        warnings.push(new ConfigError(`name server ${formatName(target)} is in the zone but has no A or AAAA record`, at(ns.wheres[i]!)));
      }
    });
  }

  // At and below a cut only the delegation (NS, DS) and glue are served; the rest is occluded.
  for (const [owner, types] of owners) {
    if (++n % STEP === 0) yield;
    const cut = topCut(owner, origin, cuts);
    if (cut === undefined) continue;
    for (const set of types.values()) {
      if (owner === cut && (set.type === TYPE.NS || set.type === TYPE.DS || DNSSEC_COMPANIONS.has(set.type))) continue;
      if ((set.type === TYPE.A || set.type === TYPE.AAAA) && nsTargets.has(owner)) continue;
      warnings.push(
        new ConfigError(
          `${rrName(owner, set.type)} is occluded by the delegation at ${formatName(cut)}: it is kept but not served as authoritative data`,
          at(set.wheres[0]!),
        ),
      );
    }
  }

  if (errors.length || !soaSet) return { value: undefined, errors, warnings };

  const nodes = new Map<string, ZoneNode>();
  const slabs = new RdataSlabs(rdataBytes);
  for (const [owner, types] of owners) {
    if (++n % STEP === 0) yield;
    // The builders' Map becomes the node's: one Map fewer per name to allocate
    // (and to collect) in a zone of a million names.
    const rrsets = types as Map<number, RRsetBuilder | RRset>;
    for (const [type, b] of types) rrsets.set(type, { owner, type, ttl: b.ttl, rdatas: slabs.keepAll(b.rdatas) });
    nodes.set(owner, { owner, rrsets: rrsets as Map<number, RRset>, isCut: cuts.has(owner) });
  }
  // Empty non-terminals: names that exist only because something lives below them
  // (RFC 4592 2.2.2); they answer NODATA, never NXDOMAIN.
  for (const owner of owners.keys()) {
    if (++n % STEP === 0) yield;
    for (let p = parentKey(owner); p !== undefined && p.length >= origin.length && !nodes.has(p); p = parentKey(p)) {
      nodes.set(p, { owner: p, rrsets: new Map(), isCut: false });
    }
  }

  const soa: RRset = nodes.get(origin)!.rrsets.get(TYPE.SOA)!;
  const rd = soa.rdatas[0]!;
  const minimum = new DataView(rd.buffer, rd.byteOffset, rd.byteLength).getUint32(rd.byteLength - 4);
  const zone: Zone = { origin, nodes, soa, negativeTtl: Math.min(soa.ttl, minimum), source: input.source };
  return { value: zone, errors, warnings };
}

/** The highest delegation point at or above `name` (not the apex), if any. */
function topCut(name: string, origin: string, cuts: ReadonlySet<string>): string | undefined {
  let found: string | undefined;
  for (let k: string | undefined = name; k !== undefined && k !== origin && k.length > origin.length; k = parentKey(k)) {
    if (cuts.has(k)) found = k;
  }
  return found;
}

/** "500ms", "10s", "2m", "1h", or a number of seconds, to milliseconds. */
export function parseDuration(value: number | string): number {
  if (typeof value === 'number') return Math.round(value * 1000);
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/.exec(value);
  if (!m) throw new RangeError(`bad duration "${value}"`);
  const n = Number(m[1]);
  const scale = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(n * scale);
}

type Fail = (path: ConfigPath, detail: string) => void;

/** For callers without a report list (unit tests): the first problem throws. */
const throwFail: Fail = (path, detail) => {
  throw new RangeError(`${formatPath(path)}: ${detail}`);
};

/**
 * Server settings with defaults filled in; the raw config is assumed
 * schema-valid. `inputs` supplies the environment and the secret-file reader
 * (without it cookie secrets are not read, and a random one is used); `fail`
 * collects what the schema cannot check (compileConfig passes its report).
 */
export function compileServerSettings(raw: RawConfig, inputs: OperationsInputs = {}, fail: Fail = throwFail): ServerSettings {
  const listen: ListenAddress[] = (raw.listen ?? DEFAULTS.listen).map((entry) => {
    const hp = splitHostPort(entry);
    if (!hp) throw new RangeError(`bad listen address "${entry}"`);
    return hp;
  });
  const t = raw.tcp ?? {};
  const settings: ServerSettings = {
    listen,
    udpPayload: raw.edns?.udp_payload ?? DEFAULTS.udpPayload,
    tcp: {
      idleTimeoutMs: t.idle_timeout === undefined ? DEFAULTS.tcp.idleTimeoutMs : parseDuration(t.idle_timeout),
      maxConnections: t.max_connections ?? DEFAULTS.tcp.maxConnections,
      maxConnectionsPerClient: t.max_connections_per_client ?? DEFAULTS.tcp.maxConnectionsPerClient,
      maxBufferedBytes: t.max_buffered_bytes ?? DEFAULTS.tcp.maxBufferedBytes,
      maxQueriesPerConnection: t.max_queries_per_connection ?? DEFAULTS.tcp.maxQueriesPerConnection,
    },
  };
  let out = settings;
  if (raw.chaos) {
    const chaos: { version?: string; identity?: string } = {};
    if (raw.chaos.version !== undefined) chaos.version = raw.chaos.version;
    if (raw.chaos.identity !== undefined) chaos.identity = raw.chaos.identity;
    out = { ...out, chaos };
  }
  if (raw.rate_limit !== undefined) {
    const rateLimit = compileRateLimit(raw.rate_limit, fail);
    if (rateLimit !== undefined) out = { ...out, rateLimit };
  }
  if (raw.cookies !== undefined || inputs.env?.['VIGIL_COOKIE_SECRET']) out = { ...out, cookies: compileCookies(raw.cookies ?? {}, inputs, fail) };
  const account = compileServerAccount(raw);
  if (account.user !== undefined || account.group !== undefined) out = { ...out, ...account };
  return out;
}

function compileRateLimit(r: NonNullable<RawConfig['rate_limit']>, fail: Fail): RrlSettings | undefined {
  const P = ['rate_limit'];
  let ok = true;
  let windowS: number = RRL_DEFAULTS.windowS;
  if (r.window !== undefined) {
    const ms = parseDuration(r.window);
    // The limiter counts debt in whole seconds of the rate (RrlSettings.windowS).
    if (ms % 1000 !== 0 || ms < 1000 || ms > MAX_WINDOW_S * 1000) {
      fail([...P, 'window'], `window must be a whole number of seconds from 1s to 1h, not ${ms} ms`);
      ok = false;
    } else windowS = ms / 1000;
  }
  const allow: Cidr[] = [];
  (r.exempt_clients ?? []).forEach((text, i) => {
    try {
      allow.push(parseCidr(text.trim()));
    } catch (e) {
      fail([...P, 'exempt_clients', i], (e as Error).message);
      ok = false;
    }
  });
  if (!ok) return undefined;
  const rps = r.responses_per_second ?? RRL_DEFAULTS.responsesPerSecond;
  return {
    responsesPerSecond: rps,
    nxdomainsPerSecond: r.nxdomains_per_second ?? rps,
    errorsPerSecond: r.errors_per_second ?? rps,
    slip: r.slip ?? RRL_DEFAULTS.slip,
    windowS,
    ipv4Prefix: r.ipv4_prefix_length ?? RRL_DEFAULTS.ipv4Prefix,
    ipv6Prefix: r.ipv6_prefix_length ?? RRL_DEFAULTS.ipv6Prefix,
    allow,
    tableSize: r.table_size ?? RRL_DEFAULTS.tableSize,
  };
}

const SECRET_HEX = /^[0-9A-Fa-f]{32}$/;

/** A cookie secret file's first line as 16 octets; never quotes the content in an error (it is a secret). */
function readCookieSecret(file: string, path: ConfigPath, inputs: OperationsInputs, fail: Fail): Buffer | undefined {
  if (inputs.readFile === undefined) return undefined;
  let text: string;
  try {
    text = inputs.readFile(file);
  } catch (e) {
    fail(path, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return undefined;
  }
  const first = text.split(/\r?\n/, 1)[0]!.trim();
  if (!SECRET_HEX.test(first)) {
    fail(path, `${file} must hold the cookie secret as 32 hex digits (16 octets) on its first line`);
    return undefined;
  }
  return Buffer.from(first, 'hex');
}

/**
 * $VIGIL_COOKIE_SECRET wins over secret_file, like the other secrets, so a
 * fleet can share one config file; previous_secret_file is read either way.
 */
function compileCookies(c: NonNullable<RawConfig['cookies']>, inputs: OperationsInputs, fail: Fail): CookieSettings {
  if (c.enabled === false) return { enabled: false };
  const P = ['cookies'];
  const env = inputs.env?.['VIGIL_COOKIE_SECRET']?.trim();
  let current: Buffer | undefined;
  if (env) {
    if (SECRET_HEX.test(env)) current = Buffer.from(env, 'hex');
    else fail(P, '$VIGIL_COOKIE_SECRET must be 32 hex digits (16 octets)');
  } else if (c.secret_file !== undefined) current = readCookieSecret(c.secret_file, [...P, 'secret_file'], inputs, fail);
  const previous = c.previous_secret_file !== undefined ? readCookieSecret(c.previous_secret_file, [...P, 'previous_secret_file'], inputs, fail) : undefined;
  if (previous !== undefined && current === undefined && inputs.readFile !== undefined) {
    // A random current secret would be new at every start: the rollover the previous secret is for cannot be meant.
    fail([...P, 'previous_secret_file'], 'previous_secret_file needs secret_file (or $VIGIL_COOKIE_SECRET): it is the secret before the current one');
  }
  if (current === undefined) return { enabled: true };
  return { enabled: true, secret: previous !== undefined ? { current, previous } : { current } };
}

/** `transfer.allow` as prefixes; undefined (each bad one reported) when any does not parse. */
function compileTransfer(allow: readonly string[], path: ConfigPath, fail: Fail): ZoneTransfer | undefined {
  const out: Cidr[] = [];
  let ok = true;
  allow.forEach((text, i) => {
    try {
      out.push(parseCidr(text.trim()));
    } catch (e) {
      fail([...path, i], (e as Error).message);
      ok = false;
    }
  });
  return ok ? { allow: out } : undefined;
}

/**
 * A transfer hands out the zone file's data as the truth about the zone; a
 * secondary would then serve a service's static stand-in (or nothing) while
 * we serve health-driven answers. So a zone holding any service in any view
 * where that zone is the one served may not have `transfer` at all.
 */
function refuseTransfersOfServices(
  transferable: ReadonlyMap<Zone, number>,
  services: readonly CompiledService[],
  viewNames: readonly string[],
  zonesIn: (view: string | undefined) => ReadonlyMap<string, PlacedZone>,
  fail: Fail,
): void {
  if (transferable.size === 0) return;
  const found = new Map<Zone, string[]>();
  for (const s of services) {
    const inViews: readonly (string | undefined)[] = s.views.length ? s.views : viewNames.length ? viewNames : [undefined];
    for (const view of inViews) {
      const zone = zonesIn(view).get(s.zone)?.zone;
      if (zone === undefined || !transferable.has(zone)) continue;
      const names = found.get(zone) ?? [];
      if (!names.includes(formatName(s.name))) names.push(formatName(s.name));
      found.set(zone, names);
    }
  }
  for (const [zone, names] of found) {
    fail(
      ['zones', transferable.get(zone)!, 'transfer'],
      `zone ${formatName(zone.origin)} has health-driven services (${names.join(', ')}); its answers depend on health and cannot be transferred as static data`,
    );
  }
}

/** A zone's records as loaded by zones/load.ts (or a test). */
export interface LoadedZone {
  records: readonly ZoneRecord[];
  /** Zone file path, or "<config>" for records written in the config. */
  source: string;
  /** The zone file's bytes, hashed into CompiledConfig.hash. */
  bytes?: Uint8Array;
  /**
   * The zone already compiled from these records (zones/load.ts compiles in
   * slices, or reuses an unchanged zone); absent = compileConfig compiles it.
   */
  compiled?: CompileResult<Zone>;
  /** sha256 of `bytes`, hex, when the loader has it; otherwise compileConfig hashes the bytes. */
  digest?: string;
}

export interface ConfigInputs {
  configBytes: Uint8Array;
  /** Parallel to raw.zones. Undefined marks a zone that failed to load; its errors are reported elsewhere. */
  zones: readonly (LoadedZone | undefined)[];
  /** Environment and secret-file reader for the operational keys; absent = neither (see operations.ts). */
  operations?: OperationsInputs;
  /** Positions in the config file, for zone-wide errors; without it they point at line 0 (the whole file). */
  locate?: (path: ConfigPath) => Position;
  /**
   * Indexes in raw.zones of zones left out for now (loaded after the server
   * started): compiled as pendingZones, with the services inside them left out too.
   */
  deferred?: ReadonlySet<number>;
}

export function compileConfig(raw: RawConfig, configFile: string, inputs: ConfigInputs): CompileResult<CompiledConfig> {
  const errors: ConfigError[] = [];
  const warnings: ConfigError[] = [];
  const declared = (path: ConfigPath): ZoneDeclaration => {
    const pos = inputs.locate?.(path);
    return { file: configFile, line: pos?.line ?? 0, column: pos?.column, path: formatPath(path) };
  };

  const report = (path: ConfigPath, detail: string): void => {
    errors.push(new ConfigError(detail, declared(path)));
  };
  // Views and services first: their errors need no zone, and zones need the view names.
  const analysis = analyzeServices(raw, configFile, (path) => inputs.locate?.(path).line ?? 0, report);
  const operations = compileOperations(raw, inputs.operations ?? {}, report);
  const server = compileServerSettings(raw, inputs.operations ?? {}, report);
  const viewNames = analysis.views.map((v) => v.name);

  const zones = new Map<string, PlacedZone>();
  const viewZones = new Map<string, Map<string, PlacedZone>>(viewNames.map((v) => [v, new Map()]));
  // Per origin, the zones declared so far and their views (undefined: shared by every view).
  const claims = new Map<string, { index: number; views: readonly string[] | undefined }[]>();
  // Zones with `transfer`, and their index in raw.zones: checked against the services once those are placed.
  const transferable = new Map<Zone, number>();
  const pending = new Set<string>();
  const hash = createHash('sha256').update(inputs.configBytes);
  raw.zones.forEach((rz, i) => {
    const origin = lowerKey(parseName(absolute(rz.origin)));
    const views = rz.views;
    const prior = (claims.get(origin) ?? []).find((c) =>
      views === undefined ? c.views === undefined : c.views !== undefined && c.views.some((v) => views.includes(v)),
    );
    if (prior !== undefined) {
      const priorLine = inputs.locate?.(['zones', prior.index, 'origin']).line;
      const shared = views?.filter((v) => prior.views?.includes(v)) ?? [];
      const inViews = shared.length ? ` for view${shared.length > 1 ? 's' : ''} ${shared.map((v) => `"${v}"`).join(', ')}` : '';
      errors.push(
        new ConfigError(
          `zone ${formatName(origin)} is already defined${inViews} by zones[${prior.index}]${priorLine ? ` (line ${priorLine})` : ''}`,
          declared(['zones', i, 'origin']),
        ),
      );
      return;
    }
    claims.set(origin, [...(claims.get(origin) ?? []), { index: i, views }]);
    if (inputs.deferred?.has(i) === true) {
      // Not the hash of the complete config: /metrics and the logs tell the two apart.
      hash.update(`\ndeferred ${origin}`);
      pending.add(origin);
      return;
    }
    const transfer = rz.transfer === undefined ? undefined : compileTransfer(rz.transfer.allow, ['zones', i, 'transfer', 'allow'], report);
    const loaded = inputs.zones[i];
    if (!loaded) return;
    // A digest per file, so that moving bytes between files changes the hash; paths
    // are left out so the same files reached by another path hash the same.
    if (loaded.bytes) hash.update(`\n${loaded.digest ?? createHash('sha256').update(loaded.bytes).digest('hex')}`);
    const r = loaded.compiled ?? compileZone({ origin, records: loaded.records, source: loaded.source, declaredAt: declared(['zones', i]) });
    errors.push(...r.errors);
    warnings.push(...r.warnings);
    if (!r.value) return;
    const zone: Zone = transfer === undefined ? r.value : { ...r.value, transfer };
    if (transfer !== undefined) transferable.set(zone, i);
    const placed: PlacedZone = { zone, records: () => loaded.records };
    if (views === undefined) zones.set(origin, placed);
    else for (const v of views) viewZones.get(v)?.set(origin, placed);
  });

  // Whether a service's name is in a zone can only be judged when every zone compiled.
  if (errors.length) return { value: undefined, errors, warnings };
  const served = new Map<string | undefined, ReadonlyMap<string, PlacedZone>>();
  const zonesIn = (view: string | undefined): ReadonlyMap<string, PlacedZone> => {
    let m = served.get(view);
    if (m === undefined) {
      const own = view === undefined ? undefined : viewZones.get(view);
      served.set(view, (m = own?.size ? new Map([...zones, ...own]) : zones));
    }
    return m;
  };
  // A service in a zone not loaded yet comes with that zone.
  const inPending = (name: string): boolean => {
    for (let k: string | undefined = name; k !== undefined; k = parentKey(k)) {
      if (zones.has(k)) return false;
      for (const m of viewZones.values()) if (m.has(k)) return false;
      if (pending.has(k)) return true;
    }
    return false;
  };
  const drafts = pending.size === 0 ? analysis.services : analysis.services.filter((d) => !inPending(d.service.name));
  const services = placeServices(drafts, viewNames, zonesIn, report);
  refuseTransfersOfServices(transferable, services, viewNames, zonesIn, report);
  if (errors.length) return { value: undefined, errors, warnings };

  const onlyZones = (m: ReadonlyMap<string, PlacedZone>): Map<string, Zone> => new Map([...m].map(([k, p]) => [k, p.zone]));
  const config: CompiledConfig = {
    file: configFile,
    hash: hash.digest('hex'),
    server,
    zones: onlyZones(zones),
    viewZones: new Map([...viewZones].map(([v, m]) => [v, onlyZones(m)])),
    views: analysis.views,
    services,
    operations,
    ...(pending.size > 0 ? { pendingZones: pending } : {}),
  };
  return { value: config, errors, warnings };
}
