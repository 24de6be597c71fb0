// A snapshot is everything the answering path reads, built once per config
// (and, later, per health change) and never mutated: the transports hold a
// reference and swap it atomically. The only mutable part is the memo of
// encoded answers, which is a pure function of the rest and so safe to fill
// lazily.

import { CLASS, TYPE } from '../wire/constants.js';
import { parseName } from '../wire/name.js';
import type { CompiledConfig, RRset, Zone } from '../../zones/zone.js';

export interface Snapshot {
  readonly zones: ReadonlyMap<string, Zone>;
  /** Per zone origin: the SOA RRset with the negative-caching TTL (RFC 2308 section 5). */
  readonly negativeSoa: ReadonlyMap<string, RRset>;
  /** Longest origin, in octets: bounds the zone search. */
  readonly udpPayload: number;
  /** CHAOS-class TXT answers (version.bind and friends), empty when disabled. */
  readonly chaos: ReadonlyMap<string, RRset>;
  /** Memo of encoded answers for names that exist; see server/answer/respond.ts. */
  readonly answerCache: Map<string, Buffer>;
}

/** Cap on memoised answers: names × types asked is bounded by the zone, but types are 16 bits. */
export const ANSWER_CACHE_LIMIT = 200_000;

function txt(owner: string, text: string): RRset {
  const bytes = Buffer.from(text, 'utf8').subarray(0, 255);
  const rdata = Buffer.concat([Buffer.from([bytes.length]), bytes]);
  return { owner, type: TYPE.TXT, ttl: 0, rdatas: [rdata] };
}

export function buildSnapshot(config: CompiledConfig): Snapshot {
  const negativeSoa = new Map<string, RRset>();
  for (const [origin, zone] of config.zones) {
    negativeSoa.set(origin, { ...zone.soa, ttl: zone.negativeTtl });
  }
  const chaos = new Map<string, RRset>();
  const c = config.server.chaos;
  if (c?.version !== undefined) {
    for (const n of ['version.bind.', 'version.server.']) chaos.set(parseName(n), txt(parseName(n), c.version));
  }
  if (c?.identity !== undefined) {
    for (const n of ['id.server.', 'hostname.bind.']) chaos.set(parseName(n), txt(parseName(n), c.identity));
  }
  return {
    zones: config.zones,
    negativeSoa,
    udpPayload: config.server.udpPayload,
    chaos,
    answerCache: new Map(),
  };
}

export const CHAOS_CLASS = CLASS.CH;
