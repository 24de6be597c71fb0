// Turns policy output (ServiceAnswer) into RRsets and places them in a copy of
// the zone they live in. Runs when a snapshot is built, never per query.

import { TYPE } from '../wire/constants.js';
import { keyToBytes, parentKey } from '../wire/name.js';
import { parseIPv6 } from '../../zones/rdata-text.js';
import type { RRset, Zone, ZoneNode } from '../../zones/zone.js';
import type { CompiledService } from '../../zones/service.js';
import type { AnswerSet, ServiceAnswer } from './policy/types.js';

/**
 * Address rdata by address text. Addresses come from the config, so the set is
 * bounded by it; every rebuild of a service's records after a health change
 * would otherwise parse the same few addresses again. Cleared when it grows
 * past RDATA_CACHE_LIMIT (reloads that keep changing addresses). Rdata is
 * never written to once made, so RRsets can share it.
 */
const rdataCache = new Map<string, Uint8Array>();
const RDATA_CACHE_LIMIT = 100_000;

function cachedRdata(text: string, parse: (text: string) => Uint8Array): Uint8Array {
  let r = rdataCache.get(text);
  if (r === undefined) {
    if (rdataCache.size >= RDATA_CACHE_LIMIT) rdataCache.clear();
    r = parse(text);
    rdataCache.set(text, r);
  }
  return r;
}

function parseV4(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

function v4Rdata(text: string): Uint8Array {
  return cachedRdata(text, parseV4);
}

function v6Rdata(text: string): Uint8Array {
  return cachedRdata(text, parseIPv6);
}

function u16(n: number): Uint8Array {
  return Uint8Array.of(n >> 8, n & 0xff);
}

function rdatasOf(type: number, set: AnswerSet): Uint8Array[] {
  switch (type) {
    case TYPE.A:
      return set.v4.map(v4Rdata);
    case TYPE.AAAA:
      return set.v6.map(v6Rdata);
    case TYPE.SRV:
      return set.srv.map((s) => Buffer.concat([u16(s.priority), u16(s.weight), u16(s.port), keyToBytes(s.target)]));
    default:
      return set.mx.map((m) => Buffer.concat([u16(m.preference), keyToBytes(m.exchange)]));
  }
}

/** One RRset whose variants are the alternatives; undefined when no alternative has any record of this type. */
function rrsetFor(owner: string, type: number, answer: ServiceAnswer): RRset | undefined {
  const variants: RRset[] = answer.variants.map((set) => ({ owner, type, ttl: answer.ttl, rdatas: rdatasOf(type, set) }));
  if (variants.every((v) => v.rdatas.length === 0)) return undefined;
  // Written out rather than `{ ...variants[0], variants }`: V8 gave every RRset made by that spread
  // a hidden class of its own (a thousand per churn burst, each kept alive with its RRset, and the
  // answering path reading them through megamorphic property loads).
  return { owner, type, ttl: answer.ttl, rdatas: variants[0]!.rdatas, variants };
}

function typesOf(service: CompiledService): number[] {
  if (service.kind === 'srv') return [TYPE.SRV];
  if (service.kind === 'mx') return [TYPE.MX];
  return [TYPE.A, TYPE.AAAA];
}

/**
 * The zone's nodes with a few replaced or added: a health change must not copy
 * a million-name zone to change one name, so reads fall through to the base.
 */
class OverlayMap<K, V> implements ReadonlyMap<K, V> {
  constructor(
    private readonly base: ReadonlyMap<K, V>,
    private readonly top: ReadonlyMap<K, V>,
  ) {}
  get(key: K): V | undefined {
    return this.top.get(key) ?? this.base.get(key);
  }
  has(key: K): boolean {
    return this.top.has(key) || this.base.has(key);
  }
  get size(): number {
    let n = this.base.size;
    for (const k of this.top.keys()) if (!this.base.has(k)) n++;
    return n;
  }
  *entries(): MapIterator<[K, V]> {
    for (const e of this.top) yield e;
    for (const e of this.base) if (!this.top.has(e[0])) yield e;
  }
  *keys(): MapIterator<K> {
    for (const [k] of this.entries()) yield k;
  }
  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }
  forEach(fn: (value: V, key: K, map: ReadonlyMap<K, V>) => void): void {
    for (const [k, v] of this.entries()) fn(v, k, this);
  }
}

/**
 * The node a service puts at its name in `zone` (its static zone, without any
 * service): the static records of other types there, and the service's own.
 */
export function serviceNode(zone: Zone, service: CompiledService, answer: ServiceAnswer): ZoneNode {
  const rrsets = new Map(zone.nodes.get(service.name)?.rrsets);
  for (const type of typesOf(service)) {
    const rr = rrsetFor(service.name, type, answer);
    if (rr === undefined) rrsets.delete(type);
    else rrsets.set(type, rr);
  }
  return { owner: service.name, rrsets, isCut: false };
}

/**
 * The nodes the services add to or replace in `zone` (its static zone): each
 * service's node (serviceNode), and an empty non-terminal for every name
 * between a service and the apex that has no node of its own.
 */
export function serviceNodes(zone: Zone, services: readonly { service: CompiledService; answer: ServiceAnswer }[]): Map<string, ZoneNode> {
  const top = new Map<string, ZoneNode>();
  for (const { service, answer } of services) {
    top.set(service.name, serviceNode(zone, service, answer));
    for (let k = parentKey(service.name); k !== undefined && k.length > zone.origin.length; k = parentKey(k)) {
      if (!top.has(k) && !zone.nodes.has(k)) top.set(k, { owner: k, rrsets: new Map(), isCut: false });
    }
  }
  return top;
}

/** `zone` with `top` laid over its nodes (serviceNodes): a health change must not copy a million-name zone to change one name. */
export function overlayZone(zone: Zone, top: ReadonlyMap<string, ZoneNode>): Zone {
  return { ...zone, nodes: new OverlayMap(zone.nodes, top) };
}

/**
 * Returns a copy of `zone` with each service's RRsets at its name (static
 * records of other types at that name stay), adding the node and any empty
 * non-terminals above it when the name had no static data.
 */
export function withServices(zone: Zone, services: readonly { service: CompiledService; answer: ServiceAnswer }[]): Zone {
  if (services.length === 0) return zone;
  return overlayZone(zone, serviceNodes(zone, services));
}
