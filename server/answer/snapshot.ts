// A snapshot is everything the answering path reads, built once per config
// and health change and never mutated: the transports hold a reference and
// swap it atomically. The only mutable part is the memo of encoded answers,
// which is a pure function of the rest and so safe to fill lazily.

import { TYPE } from '../wire/constants.js';
import { formatName, parseName } from '../wire/name.js';
import type { CompiledConfig, RRset, Zone } from '../../zones/zone.js';
import type { CompiledService } from '../../zones/service.js';
import type { ServiceAnswer } from './policy/types.js';
import { withServices } from './service-records.js';
import { compileViewMatcher, type ViewMatcher } from './views.js';
import { generateCookieSecret, type CookieSecret } from '../wire/cookie.js';
import type { RrlClass, RrlSettings } from '../limits/rrl.js';
import { transferSources, type TransferSource } from '../xfr/acl.js';

/** What one view answers from. */
export interface ViewSnapshot {
  readonly name: string;
  readonly zones: ReadonlyMap<string, Zone>;
  /** Per zone origin: the SOA RRset with the negative-caching TTL (RFC 2308 section 5). */
  readonly negativeSoa: ReadonlyMap<string, RRset>;
  /** CHAOS-class TXT answers (version.bind and friends), empty when disabled. */
  readonly chaos: ReadonlyMap<string, RRset>;
  /** Memo of encoded answers for names that exist, by qname key + qtype (see respond.ts). */
  readonly answerCache: Map<string, MemoEntry>;
  /** Encoded answers for names that need not exist (NXDOMAIN, wildcards, below a cut), by shape and base name (see respond.ts). */
  readonly templates: Map<string, AnswerTemplate>;
  /** Health-driven names of this view, by name key: what query observers (drain tracking, metrics) need to know about them. */
  readonly services: ReadonlyMap<string, ServiceRef>;
  /** Zones this view may transfer (AXFR, server/xfr), by origin key: their static data and who may ask. */
  readonly transfers: ReadonlyMap<string, TransferSource>;
}

export interface ServiceRef {
  /** serviceKey(service). */
  readonly key: string;
  /** Presentation form, with the trailing dot. */
  readonly name: string;
  /** How metrics, logs and the drain tracker name it: the name, plus "@view,..." for a service limited to views. */
  readonly label: string;
  /** Its answer is every member (or the last resort) because none is healthy. */
  readonly failedOpen: boolean;
}

export interface MemoEntry {
  /** One encoded answer per alternative of the health-driven RRsets met (one slot when there are none). */
  readonly slots: (Buffer | undefined)[];
  /**
   * Whose turn is next, per name and type: a rotation must advance for each
   * name on its own, or a client alternating A and AAAA queries would see the
   * same alternative forever.
   */
  turn: number;
  /** What rate limiting counts this answer as (classifyAnswer), so the memo fast path need not classify per query. */
  readonly rrl: RrlClass;
}

/**
 * An answer encoded for a stand-in question (the shape's base name): the
 * response for any name of that shape is the query's own header and
 * question followed by `bytes` after `questionEnd`, with each compression
 * pointer moved by the difference in question length (respond.ts).
 */
export interface AnswerTemplate {
  readonly bytes: Buffer;
  readonly questionEnd: number;
  /** Offsets in `bytes` of the compression pointers, all after the question. */
  readonly pointers: readonly number[];
  /** A pointer to offset 12 means the query name itself (the wildcard's owner), which does not move. */
  readonly wildcard: boolean;
  readonly rrl: RrlClass;
}

export interface Snapshot {
  readonly views: readonly ViewSnapshot[];
  /** Index into views for a client address, or -1 (REFUSED). */
  readonly matchView: ViewMatcher;
  /** EDNS payload we advertise and the most we send over UDP. */
  readonly udpPayload: number;
  /** Server cookie secret (RFC 9018); undefined when cookies are off. See snapshotCookieSecret. */
  readonly cookies: CookieSecret | undefined;
  /** UDP rate limiting settings, undefined when off; the server keeps the limiter itself and rebuilds it only when these change. */
  readonly rateLimit: Readonly<RrlSettings> | undefined;
}

/** Made on first use and kept for the life of the process; see snapshotCookieSecret. */
let processSecret: CookieSecret | undefined;

/**
 * The cookie secret a snapshot of `config` answers with: the configured one
 * (secret_file, $VIGIL_COOKIE_SECRET), else one random secret per process.
 * Per process, not per snapshot or per server start: the engine builds a new
 * snapshot on every health change and reload, and a secret that changed with
 * them would invalidate every resolver's cookie each time. Keeping it here
 * rather than in the server keeps buildSnapshot a function of its arguments
 * (plus this constant), so snapshots built before a server starts, or by tests
 * calling respond() directly, carry the same secret the server would use.
 */
export function snapshotCookieSecret(config: CompiledConfig): CookieSecret | undefined {
  const c = config.server.cookies;
  if (c?.enabled === false) return undefined;
  if (c?.secret !== undefined) return c.secret;
  processSecret ??= generateCookieSecret();
  return processSecret;
}

/**
 * Makes `secret` this process's cookie secret: the serving workers of a
 * cluster take the primary's, so a cookie one process issued is valid at
 * every other (the kernel spreads a client's queries over all of them).
 */
export function adoptProcessCookieSecret(secret: CookieSecret): void {
  processSecret = secret;
}

/** Cap on memoised answers per view: names × types asked is bounded by the zone, but types are 16 bits. */
export const ANSWER_CACHE_LIMIT = 200_000;

export const DEFAULT_VIEW = 'default';

function txt(owner: string, text: string): RRset {
  const bytes = Buffer.from(text, 'utf8').subarray(0, 255);
  const rdata = Buffer.concat([Buffer.from([bytes.length]), bytes]);
  return { owner, type: TYPE.TXT, ttl: 0, rdatas: [rdata] };
}

function chaosRecords(config: CompiledConfig): Map<string, RRset> {
  const chaos = new Map<string, RRset>();
  const c = config.server.chaos;
  if (c?.version !== undefined) {
    for (const n of ['version.bind.', 'version.server.']) chaos.set(parseName(n), txt(parseName(n), c.version));
  }
  if (c?.identity !== undefined) {
    for (const n of ['id.server.', 'hostname.bind.']) chaos.set(parseName(n), txt(parseName(n), c.identity));
  }
  return chaos;
}

/** The key a service's runtime and answer are kept under: the same name may be two services in disjoint views. */
export function serviceKey(service: CompiledService): string {
  return `${service.name}|${service.views.join(',')}`;
}

/** The service's name for people and metrics: unique like serviceKey, readable unlike it. */
export function serviceLabel(service: CompiledService): string {
  const name = formatName(service.name);
  return service.views.length > 0 ? `${name}@${service.views.join(',')}` : name;
}

/** Does this service answer in this view? */
export function serviceInView(service: CompiledService, view: string): boolean {
  return service.views.length === 0 || service.views.includes(view);
}

/**
 * Builds the snapshot for a config and the current answer of each service
 * (by serviceKey). A service without an answer contributes no records (its
 * name then answers from static data only), which the engine never lets happen.
 */
export function buildSnapshot(config: CompiledConfig, answers: ReadonlyMap<string, ServiceAnswer> = new Map()): Snapshot {
  const chaos = chaosRecords(config);
  const viewNames = config.views.length === 0 ? [DEFAULT_VIEW] : config.views.map((v) => v.name);
  const views = viewNames.map((name): ViewSnapshot => {
    const zones = new Map(config.zones);
    for (const [origin, zone] of config.viewZones.get(name) ?? []) zones.set(origin, zone);
    // Taken before the service overlays below: a transfer hands out static data only.
    const transfers = transferSources(zones);
    const byZone = new Map<string, { service: CompiledService; answer: ServiceAnswer }[]>();
    const services = new Map<string, ServiceRef>();
    for (const service of config.services) {
      const key = serviceKey(service);
      const answer = answers.get(key);
      if (answer === undefined || !serviceInView(service, name)) continue;
      services.set(service.name, { key, name: formatName(service.name), label: serviceLabel(service), failedOpen: answer.failedOpen });
      const list = byZone.get(service.zone) ?? [];
      list.push({ service, answer });
      byZone.set(service.zone, list);
    }
    for (const [origin, list] of byZone) {
      const zone = zones.get(origin);
      if (zone !== undefined) zones.set(origin, withServices(zone, list));
    }
    const negativeSoa = new Map<string, RRset>();
    for (const [origin, zone] of zones) negativeSoa.set(origin, { ...zone.soa, ttl: zone.negativeTtl });
    return { name, zones, negativeSoa, chaos, answerCache: new Map(), templates: new Map(), services, transfers };
  });
  return {
    views,
    matchView: compileViewMatcher(config.views),
    udpPayload: config.server.udpPayload,
    cookies: snapshotCookieSecret(config),
    rateLimit: config.server.rateLimit,
  };
}

