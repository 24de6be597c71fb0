// A snapshot is everything the answering path reads, built once per config
// and health change and never mutated: the transports hold a reference and
// swap it atomically. The only mutable part is the memo of encoded answers,
// which is a pure function of the rest and so safe to fill lazily.

import { CLASS, TYPE } from '../wire/constants.js';
import { formatName, lowerKey, parseName, readUncompressedName } from '../wire/name.js';
import type { CompiledConfig, RRset, Zone, ZoneNode } from '../../zones/zone.js';
import type { CompiledService } from '../../zones/service.js';
import type { ServiceAnswer } from './policy/types.js';
import { overlayZone, serviceNode, serviceNodes } from './service-records.js';
import { compileViewMatcher, type ViewMatcher } from './views.js';
import { resolve, targetNameOffset, type Answer, type Entry } from './resolve.js';
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
  /** Origin keys of zones still loading (CompiledConfig.pendingZones): their names answer SERVFAIL. */
  readonly pending?: ReadonlySet<string>;
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
  return new SnapshotBuilder().build(config, answers);
}

/** How many earlier memos of a view a new one takes answers from (see CarriedMemo). */
export const MEMO_GENERATIONS = 4;
/**
 * How long a memo keeps the earlier ones to take answers from. By then the
 * names asked at all have been asked; after it, a miss (every query for a
 * name that does not exist) costs no look into them, and they are freed.
 */
export const MEMO_CARRY_MS = 30_000;

/** When each name's records last changed in one view: what tells a memo entry of an earlier build whether it still holds. */
interface ViewHistory {
  /** Incremental builds that changed this view so far. */
  generation: number;
  /** Name key → the generation whose build last replaced its records. */
  readonly changedAt: Map<string, number>;
}

/** A memo of an earlier build of the same view: its entries were good as of `generation`. */
interface MemoSource {
  readonly memo: ReadonlyMap<string, MemoEntry>;
  readonly generation: number;
}

/** Map.prototype.get, so a source's own entries are read without a CarriedMemo carrying further back. */
const ownGet = Map.prototype.get as (this: ReadonlyMap<string, MemoEntry>, key: string) => MemoEntry | undefined;

/**
 * The names whose records an encoded answer was made from, by memo entry
 * (see dependencies). A function of the answer, so the same in every view
 * the entry is good for: worked out once per entry.
 */
const dependenciesOf = new WeakMap<MemoEntry, readonly string[]>();

/**
 * The names of every node whose records resolving `key` (a memo key: name
 * key and the type's two octets) in `view` reads: the question's name, the
 * owner of every record in the answer, and every name a CNAME, NS, MX or SRV
 * record of it points to (the chain followed, the glue and target addresses
 * looked up, found or not). Two views of one config differ only in the
 * records of service names; resolving in either reads the same nodes up to
 * the first that differs, and that one is in this list whichever view it is
 * worked out in. So an entry whose names have not changed between two views
 * answers the same in both. Undefined when the answer is not memoised.
 */
function dependencies(view: ViewSnapshot, key: string): string[] | undefined {
  const qname = key.slice(0, -2);
  const qtype = (key.charCodeAt(key.length - 2) << 8) | key.charCodeAt(key.length - 1);
  const names = new Set<string>([qname]);
  let variants = 1;
  // Each alternative of a health-driven RRset may point elsewhere: read them all.
  for (let pick = 0; pick < variants; pick++) {
    const ans: Answer = resolve(view, qname, qtype, CLASS.IN, pick);
    if (!ans.cacheable) return undefined;
    variants = ans.variantCount;
    for (const list of [ans.answer, ans.authority, ans.additional]) {
      for (const e of list as readonly Entry[]) {
        names.add(e.owner);
        const off = targetNameOffset(e.rrset.type);
        if (off >= 0) for (const rdata of e.rrset.rdatas) names.add(lowerKey(readUncompressedName(rdata, off).key));
      }
    }
  }
  return [...names];
}

/**
 * The answer memo of a view. A health change replaces a few services'
 * records, yet a fresh memo would make the next queries encode every answer
 * of the view again (a few µs each, for every name asked, after every
 * change, ten times a second when verdicts trickle in). One built after
 * earlier builds of the view takes their encoded answers on first use, each
 * only when none of the names it was made from (dependencies) had its records
 * replaced since: answers that involve a changed service (its name, a CNAME
 * to it, an MX or SRV target with its addresses) are made again, the rest
 * are kept. Looked up per miss, so its cost follows the names asked, not the
 * size of the memo; the first carry of an entry resolves its question once,
 * later ones are a few map lookups. The earlier memos are kept for
 * MEMO_CARRY_MS, and at most MEMO_GENERATIONS of them.
 */
class CarriedMemo extends Map<string, MemoEntry> {
  /** The view whose memo this is; set once that view is made. */
  view: ViewSnapshot | undefined;
  private readonly carryUntil = Date.now() + MEMO_CARRY_MS;

  constructor(
    /** Newest first. */
    private sources: readonly MemoSource[],
    private readonly history: ViewHistory | undefined,
    /** The view's generation (ViewHistory) this memo's entries are good for. */
    readonly generation: number,
  ) {
    super();
  }

  override get(key: string): MemoEntry | undefined {
    const hit = super.get(key);
    if (hit !== undefined || this.sources.length === 0) return hit;
    return this.carry(key);
  }

  /** The sources of the memo of the view's next build: this one first. */
  sourcesAfter(): MemoSource[] {
    return [{ memo: this, generation: this.generation }, ...this.sources].slice(0, MEMO_GENERATIONS);
  }

  /** This memo's view is served no more: it carries nothing, and holds no earlier memo alive. */
  retire(): void {
    this.sources = [];
  }

  private carry(key: string): MemoEntry | undefined {
    const view = this.view;
    const changedAt = this.history?.changedAt;
    if (view === undefined || changedAt === undefined) return undefined;
    if (Date.now() > this.carryUntil) {
      this.retire();
      return undefined;
    }
    for (const source of this.sources) {
      const entry = ownGet.call(source.memo, key);
      if (entry === undefined) continue;
      // The newest memo holding the key decides: older ones hold older answers.
      if (this.size >= ANSWER_CACHE_LIMIT || (changedAt.get(key.slice(0, -2)) ?? 0) > source.generation) return undefined;
      let names = dependenciesOf.get(entry);
      if (names === undefined) {
        names = dependencies(view, key);
        if (names === undefined) return undefined;
        dependenciesOf.set(entry, names);
      }
      for (const name of names) if ((changedAt.get(name) ?? 0) > source.generation) return undefined;
      super.set(key, entry);
      return entry;
    }
    return undefined;
  }
}

/** A zone of one view with services in it: its static zone and the nodes the services lay over it. */
interface Overlay {
  readonly base: Zone;
  readonly top: ReadonlyMap<string, ZoneNode>;
}

/** What the last build made, kept to build the next one from. */
interface Built {
  readonly config: CompiledConfig;
  readonly snapshot: Snapshot;
  /** Per view (same order as snapshot.views), by zone origin. */
  readonly overlays: readonly ReadonlyMap<string, Overlay>[];
  /** The answer each service's records were made from, by serviceKey (updated in place). */
  readonly used: Map<string, ServiceAnswer>;
  readonly byKey: ReadonlyMap<string, CompiledService>;
  /** Per view (same order as snapshot.views). */
  readonly histories: readonly ViewHistory[];
}

/**
 * Builds snapshots one after another, each from the last where it can: after
 * a health change only the records of the services whose answer changed are
 * made again, only the zones holding them are laid over anew, and a view with
 * no changed service is the last snapshot's own, answer memo included. A
 * burst of changes to a few services of a config with thousands then costs
 * what those few cost, not a pass over every service and zone.
 *
 * The result is the snapshot buildSnapshot(config, answers) would make (the
 * same records, zones, service refs; test/churn-snapshot.test.ts compares
 * them), as long as `changed` names every service whose answer object differs
 * from the one given to the previous build.
 */
export class SnapshotBuilder {
  private last: Built | undefined;
  /**
   * Nodes made by stage() ahead of a build, by the answer they were made
   * from, then by view (as snapshot.views). Keyed by answer object so that a
   * staged answer never built (a recompute dropped unfinished) costs nothing.
   */
  private staged = new WeakMap<ServiceAnswer, readonly (ZoneNode | undefined)[]>();

  /**
   * The snapshot of `config` with `answers`. `changed`: serviceKeys of the
   * services whose answer may have changed since the previous build (a key
   * whose answer is the same object is skipped). Without it, or with another
   * config than the previous build's, everything is built afresh.
   */
  build(config: CompiledConfig, answers: ReadonlyMap<string, ServiceAnswer>, changed?: Iterable<string>): Snapshot {
    const last = this.last;
    if (last === undefined || last.config !== config || changed === undefined) return this.full(config, answers);
    const todo: { service: CompiledService; answer: ServiceAnswer }[] = [];
    for (const key of changed) {
      const answer = answers.get(key);
      const before = last.used.get(key);
      if (answer === before) continue;
      const service = last.byKey.get(key);
      if (service === undefined) continue;
      // A service losing its answer is not a change of records but of which names exist: start over.
      if (answer === undefined || before === undefined) return this.full(config, answers);
      todo.push({ service, answer });
      last.used.set(key, answer);
    }
    if (todo.length === 0) return last.snapshot;

    const overlays: ReadonlyMap<string, Overlay>[] = [];
    const views = last.snapshot.views.map((prev, i): ViewSnapshot => {
      const prevOverlays = last.overlays[i]!;
      const mine = todo.filter((t) => serviceInView(t.service, prev.name));
      if (mine.length === 0) {
        // Nothing of this view changed: its memo stays good.
        overlays.push(prevOverlays);
        return prev;
      }
      const zones = new Map(prev.zones);
      const nextOverlays = new Map(prevOverlays);
      const tops = new Map<string, Map<string, ZoneNode>>();
      let services: Map<string, ServiceRef> | undefined;
      for (const { service, answer } of mine) {
        const ref = prev.services.get(service.name);
        if (ref !== undefined && ref.failedOpen !== answer.failedOpen) {
          services ??= new Map(prev.services);
          services.set(service.name, { ...ref, failedOpen: answer.failedOpen });
        }
        const overlay = prevOverlays.get(service.zone);
        // Not a zone of this view: buildSnapshot places no records either.
        if (overlay === undefined) continue;
        let top = tops.get(service.zone);
        if (top === undefined) {
          top = new Map(overlay.top);
          tops.set(service.zone, top);
        }
        // The empty non-terminals above it are there already: the config, so the names, did not change.
        top.set(service.name, this.staged.get(answer)?.[i] ?? serviceNode(overlay.base, service, answer));
      }
      for (const [origin, top] of tops) {
        const base = prevOverlays.get(origin)!.base;
        nextOverlays.set(origin, { base, top });
        zones.set(origin, overlayZone(base, top));
      }
      overlays.push(nextOverlays);
      const history = last.histories[i]!;
      const generation = ++history.generation;
      for (const { service } of mine) history.changedAt.set(service.name, generation);
      const prevMemo = prev.answerCache instanceof CarriedMemo ? prev.answerCache : undefined;
      const answerCache = new CarriedMemo(prevMemo?.sourcesAfter() ?? [], history, generation);
      prevMemo?.retire();
      const view: ViewSnapshot = {
        name: prev.name,
        zones,
        // The SOA and negative TTL of a zone do not move with its services.
        negativeSoa: prev.negativeSoa,
        chaos: prev.chaos,
        answerCache,
        templates: new Map(),
        services: services ?? prev.services,
        transfers: prev.transfers,
        ...(prev.pending !== undefined ? { pending: prev.pending } : {}),
      };
      answerCache.view = view;
      return view;
    });
    const snapshot: Snapshot = { ...last.snapshot, views, cookies: snapshotCookieSecret(config) };
    this.last = { ...last, snapshot, overlays };
    return snapshot;
  }

  /**
   * Makes the records of a service's new answer now, for the next build() of
   * the same config to take instead of making them (build() gives the same
   * snapshot either way). The engine computes a burst's answers over several
   * turns and swaps the snapshot in one: what is staged as each answer is
   * computed is work taken out of that one turn.
   */
  stage(config: CompiledConfig, service: CompiledService, answer: ServiceAnswer): void {
    const last = this.last;
    if (last === undefined || last.config !== config || this.staged.has(answer)) return;
    this.staged.set(
      answer,
      last.snapshot.views.map((view, i) => {
        const overlay = serviceInView(service, view.name) ? last.overlays[i]!.get(service.zone) : undefined;
        return overlay === undefined ? undefined : serviceNode(overlay.base, service, answer);
      }),
    );
  }

  private full(config: CompiledConfig, answers: ReadonlyMap<string, ServiceAnswer>): Snapshot {
    // Staged nodes are by view index of the config they were staged for.
    this.staged = new WeakMap();
    const chaos = chaosRecords(config);
    const used = new Map<string, ServiceAnswer>();
    const byKey = new Map<string, CompiledService>();
    for (const service of config.services) {
      const key = serviceKey(service);
      byKey.set(key, service);
      const answer = answers.get(key);
      if (answer !== undefined) used.set(key, answer);
    }
    const viewNames = config.views.length === 0 ? [DEFAULT_VIEW] : config.views.map((v) => v.name);
    const overlays: ReadonlyMap<string, Overlay>[] = [];
    const views = viewNames.map((name): ViewSnapshot => {
      const zones = new Map(config.zones);
      for (const [origin, zone] of config.viewZones.get(name) ?? []) zones.set(origin, zone);
      // Taken before the service overlays below: a transfer hands out static data only.
      const transfers = transferSources(zones);
      const byZone = new Map<string, { service: CompiledService; answer: ServiceAnswer }[]>();
      const services = new Map<string, ServiceRef>();
      for (const service of config.services) {
        const key = serviceKey(service);
        const answer = used.get(key);
        if (answer === undefined || !serviceInView(service, name)) continue;
        services.set(service.name, { key, name: formatName(service.name), label: serviceLabel(service), failedOpen: answer.failedOpen });
        const list = byZone.get(service.zone) ?? [];
        list.push({ service, answer });
        byZone.set(service.zone, list);
      }
      const viewOverlays = new Map<string, Overlay>();
      for (const [origin, list] of byZone) {
        const zone = zones.get(origin);
        if (zone === undefined) continue;
        const top = serviceNodes(zone, list);
        viewOverlays.set(origin, { base: zone, top });
        zones.set(origin, overlayZone(zone, top));
      }
      overlays.push(viewOverlays);
      const negativeSoa = new Map<string, RRset>();
      for (const [origin, zone] of zones) negativeSoa.set(origin, { ...zone.soa, ttl: zone.negativeTtl });
      const pending = config.pendingZones !== undefined ? { pending: config.pendingZones } : {};
      return { name, zones, negativeSoa, chaos, answerCache: new CarriedMemo([], undefined, 0), templates: new Map(), services, transfers, ...pending };
    });
    const snapshot: Snapshot = {
      views,
      matchView: compileViewMatcher(config.views),
      udpPayload: config.server.udpPayload,
      cookies: snapshotCookieSecret(config),
      rateLimit: config.server.rateLimit,
    };
    this.last = { config, snapshot, overlays, used, byKey, histories: views.map(() => ({ generation: 0, changedAt: new Map() })) };
    return snapshot;
  }
}
