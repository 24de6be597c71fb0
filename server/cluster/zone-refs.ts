// A compiled config crosses to the workers with each zone's node map (the
// part that grows with the zone: a million-record zone is most of a
// gigabyte) sent only when that worker does not hold it yet. zones/load.ts
// reuses the compiled zone of an unchanged file across reloads, so after a
// reload only the zones that changed are cloned; a worker then spends no time
// deserialising a large zone it already has, and the primary none
// serialising it.

import type { CompiledConfig, RRset, Zone, ZoneNode } from '../../zones/zone.js';

type Nodes = ReadonlyMap<string, ZoneNode>;

/** A zone on the wire: everything but its nodes, which come along (packed) only when the worker lacks them. */
export interface ZoneRef {
  readonly zone: Omit<Zone, 'nodes'>;
  readonly nodesId: number;
  readonly nodes?: PackedNodes;
}

/**
 * A node map as three flat values. Structured clone of the maps themselves
 * handles every rdata Uint8Array through a JavaScript callback: for a
 * million-record zone that was 5 s to serialise and 17 s to deserialise
 * (119 MB). Packed, it is one string array and two typed arrays.
 */
export interface PackedNodes {
  /** Owner keys, in map order. */
  readonly owners: readonly string[];
  /**
   * Per node: isCut (0/1), number of RRsets; per RRset: type, ttl, number of
   * rdatas; per rdata: its length.
   */
  readonly meta: Uint32Array;
  /** Every rdata's bytes, in the order meta lists them. */
  readonly data: Uint8Array;
}

export class BadPackedNodes extends Error {
  override name = 'BadPackedNodes';
}

// Packed once per node map, however many workers it goes to.
const packed = new WeakMap<Nodes, PackedNodes>();

export function packNodes(nodes: Nodes): PackedNodes {
  const cached = packed.get(nodes);
  if (cached !== undefined) return cached;
  let words = 0;
  let bytes = 0;
  for (const node of nodes.values()) {
    words += 2;
    for (const rrset of node.rrsets.values()) {
      if (rrset.owner !== node.owner || rrset.variants !== undefined) throw new BadPackedNodes(`RRset ${rrset.type} at ${node.owner} is not a plain compiled RRset of its node`);
      words += 3 + rrset.rdatas.length;
      for (const rd of rrset.rdatas) bytes += rd.byteLength;
    }
  }
  const meta = new Uint32Array(words);
  const data = new Uint8Array(bytes);
  const owners: string[] = [];
  let w = 0;
  let b = 0;
  for (const node of nodes.values()) {
    owners.push(node.owner);
    meta[w++] = node.isCut ? 1 : 0;
    meta[w++] = node.rrsets.size;
    for (const rrset of node.rrsets.values()) {
      meta[w++] = rrset.type;
      meta[w++] = rrset.ttl;
      meta[w++] = rrset.rdatas.length;
      for (const rd of rrset.rdatas) {
        meta[w++] = rd.byteLength;
        data.set(rd, b);
        b += rd.byteLength;
      }
    }
  }
  const p = { owners, meta, data };
  packed.set(nodes, p);
  return p;
}

/** The node map back; rdatas are views into `data`, which nothing writes to. */
export function unpackNodes(p: PackedNodes): Map<string, ZoneNode> {
  const nodes = new Map<string, ZoneNode>();
  const { meta, data } = p;
  let w = 0;
  let b = 0;
  for (const owner of p.owners) {
    const isCut = meta[w++] === 1;
    const count = meta[w++]!;
    const rrsets = new Map<number, RRset>();
    for (let i = 0; i < count; i++) {
      const type = meta[w++]!;
      const ttl = meta[w++]!;
      const n = meta[w++]!;
      const rdatas: Uint8Array[] = [];
      for (let j = 0; j < n; j++) {
        const len = meta[w++]!;
        rdatas.push(data.subarray(b, b + len));
        b += len;
      }
      rrsets.set(type, { owner, type, ttl, rdatas });
    }
    nodes.set(owner, { owner, rrsets, isCut });
  }
  if (w !== meta.length || b !== data.length) throw new BadPackedNodes(`packed nodes do not add up: ${w} of ${meta.length} words, ${b} of ${data.length} bytes read`);
  return nodes;
}

export interface ConfigOnWire {
  readonly config: Omit<CompiledConfig, 'zones' | 'viewZones'>;
  readonly zones: readonly (readonly [string, ZoneRef])[];
  readonly viewZones: readonly (readonly [string, readonly (readonly [string, ZoneRef])[]])[];
}

export class MissingZoneNodes extends Error {
  override name = 'MissingZoneNodes';
}

// Ids per node map, for every map this process has sent: a WeakMap so that a
// zone no config serves any more takes its id with it.
const ids = new WeakMap<Nodes, number>();
let nextId = 1;

function idOf(nodes: Nodes): number {
  let id = ids.get(nodes);
  if (id === undefined) ids.set(nodes, (id = nextId++));
  return id;
}

/** The primary's side, one per worker: remembers which node maps that worker holds. */
export class ConfigSender {
  private held = new Set<number>();

  /** The config for this worker, and from now on assumes the worker holds exactly its zones. */
  encode(config: CompiledConfig): ConfigOnWire {
    const next = new Set<number>();
    const ref = (zone: Zone): ZoneRef => {
      const { nodes, ...rest } = zone;
      const nodesId = idOf(nodes);
      const send = !this.held.has(nodesId) && !next.has(nodesId);
      next.add(nodesId);
      return send ? { zone: rest, nodesId, nodes: packNodes(nodes) } : { zone: rest, nodesId };
    };
    const refs = (m: ReadonlyMap<string, Zone>): [string, ZoneRef][] => [...m].map(([origin, zone]) => [origin, ref(zone)]);
    const { zones, viewZones, ...rest } = config;
    const wire: ConfigOnWire = { config: rest, zones: refs(zones), viewZones: [...viewZones].map(([view, m]) => [view, refs(m)]) };
    this.held = next;
    return wire;
  }
}

/** The worker's side: keeps the node maps of the config it serves, for the next one to refer to. */
export class ConfigReceiver {
  private held = new Map<number, Nodes>();

  decode(wire: ConfigOnWire): CompiledConfig {
    const next = new Map<number, Nodes>();
    const zone = (r: ZoneRef): Zone => {
      const nodes = (r.nodes !== undefined ? unpackNodes(r.nodes) : undefined) ?? next.get(r.nodesId) ?? this.held.get(r.nodesId);
      if (nodes === undefined) throw new MissingZoneNodes(`zone ${r.zone.origin}: the primary referred to node map ${r.nodesId}, which this worker does not hold`);
      next.set(r.nodesId, nodes);
      return { ...r.zone, nodes };
    };
    const zones = (list: ConfigOnWire['zones']): Map<string, Zone> => new Map(list.map(([origin, r]) => [origin, zone(r)]));
    const config: CompiledConfig = { ...wire.config, zones: zones(wire.zones), viewZones: new Map(wire.viewZones.map(([view, list]) => [view, zones(list)])) };
    this.held = next;
    return config;
  }
}
