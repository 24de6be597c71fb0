// The lookup algorithm of RFC 1034 section 4.3.2, with wildcards per RFC 4592
// and negative answers per RFC 2308. Pure: (question, snapshot) → sections.
// It never encodes; respond.ts turns the result into bytes.

import { CLASS, RCODE, TYPE } from '../wire/constants.js';
import { isSubdomain, parentKey, readUncompressedName, lowerKey, wildcardOf } from '../wire/name.js';
import type { RRset, Zone, ZoneNode } from '../../zones/zone.js';
import type { ViewSnapshot } from './snapshot.js';

export interface Entry {
  /** The owner to write: the RRset's own, or the query name for wildcard synthesis. */
  readonly owner: string;
  readonly rrset: RRset;
}

export interface Answer {
  rcode: number;
  aa: boolean;
  cls: number;
  readonly answer: Entry[];
  readonly authority: Entry[];
  readonly additional: Entry[];
  /**
   * Additional records that must fit or set TC (RFC 9471: in-domain glue of a
   * referral). The others are dropped silently when they do not fit.
   */
  requiredAdditional: number;
  /** The answer depends only on (qname, qtype, variant) hitting an existing node, so it may be memoised. */
  cacheable: boolean;
  /** Number of alternatives of the health-driven RRsets met (1 when none): the memo keeps one answer per alternative. */
  variantCount: number;
  /**
   * How the answer depends on the query name when it is not cacheable by name
   * (respond.ts turns these into templates, so random names cost no encoding):
   * SHAPE_SUFFIX: not at all (NXDOMAIN, a referral from below the cut): the
   * same bytes for every name under `shapeBase`; SHAPE_WILDCARD: only through
   * the owner, which is the query name: the answer for the wildcard
   * `shapeBase` itself, renamed. SHAPE_NONE otherwise.
   */
  shape: number;
  shapeBase: string;
}

export const SHAPE_NONE = 0;
export const SHAPE_SUFFIX = 1;
export const SHAPE_WILDCARD = 2;

/** CNAME chains longer than this stop: a loop or a misconfiguration, not a real need. */
const MAX_CHAIN = 8;

/**
 * Most specific zone containing `qname`, or undefined: none does, or the
 * most specific is still loading (pendingZone tells which).
 */
export function findZone(snap: ViewSnapshot, qname: string): Zone | undefined {
  const pending = snap.pending;
  for (let k: string | undefined = qname; k !== undefined; k = parentKey(k)) {
    const z = snap.zones.get(k);
    if (z !== undefined) return z;
    if (pending?.has(k) === true) return undefined;
  }
  return undefined;
}

/** Whether the most specific zone of `qname` is one still loading. */
function pendingZone(snap: ViewSnapshot, qname: string): boolean {
  const pending = snap.pending;
  if (pending === undefined) return false;
  for (let k: string | undefined = qname; k !== undefined; k = parentKey(k)) {
    if (snap.zones.has(k)) return false;
    if (pending.has(k)) return true;
  }
  return false;
}

function newAnswer(rcode: number, aa: boolean, cls: number = CLASS.IN): Answer {
  return { rcode, aa, cls, answer: [], authority: [], additional: [], requiredAdditional: 0, cacheable: false, variantCount: 1, shape: SHAPE_NONE, shapeBase: '' };
}

/**
 * `pick` chooses among the alternatives of health-driven RRsets (a per-query
 * sequence number: consecutive queries get consecutive alternatives).
 */
export function resolve(snap: ViewSnapshot, qname: string, qtype: number, qclass: number, pick = 0): Answer {
  if (qclass === CLASS.CH) return resolveChaos(snap, qname, qtype);
  if (qclass !== CLASS.IN && qclass !== CLASS.ANY) return newAnswer(RCODE.REFUSED, false);
  // Zone transfers are served over TCP by server/xfr; one reaching here came over
  // UDP. A NODATA would look like a valid, empty transfer to a secondary. AXFR over
  // UDP is not defined (RFC 5936 4.2): NOTIMP, as Knot answers. IXFR over UDP (RFC
  // 1995 2) would need the transfer ACL, which this path does not see: REFUSED
  // (Knot, BIND and NSD secondaries ask over TCP anyway).
  if (qtype === TYPE.AXFR) return newAnswer(RCODE.NOTIMP, false);
  if (qtype === TYPE.IXFR) return newAnswer(RCODE.REFUSED, false);
  const zone = findZone(snap, qname);
  // A zone still loading is ours, not yet servable: SERVFAIL, as BIND and Knot answer for
  // a zone that has not loaded, so resolvers ask another server (REFUSED would say it is not ours).
  if (zone === undefined) return newAnswer(pendingZone(snap, qname) ? RCODE.SERVFAIL : RCODE.REFUSED, false);
  const ans = newAnswer(RCODE.NOERROR, true);
  ans.cacheable = true;
  lookup(snap, zone, qname, qtype, ans, new Set([qname]), pick);
  return ans;
}

/** The alternative this query gets; recorded so the memo can keep one answer per alternative. */
function choose(rrset: RRset, ans: Answer, pick: number): RRset {
  const v = rrset.variants;
  if (v === undefined || v.length <= 1) return v?.[0] ?? rrset;
  if (v.length > ans.variantCount) ans.variantCount = v.length;
  return v[pick % v.length]!;
}

function resolveChaos(snap: ViewSnapshot, qname: string, qtype: number): Answer {
  const rr = snap.chaos.get(qname);
  if (rr === undefined) return newAnswer(RCODE.REFUSED, false, CLASS.CH);
  const ans = newAnswer(RCODE.NOERROR, true, CLASS.CH);
  if (qtype === TYPE.TXT || qtype === TYPE.ANY) ans.answer.push({ owner: qname, rrset: rr });
  return ans;
}

/** The highest delegation point strictly below the apex on the path to `qname`, if any. */
function findCut(zone: Zone, qname: string): ZoneNode | undefined {
  let cut: ZoneNode | undefined;
  for (let k: string | undefined = qname; k !== undefined && k.length > zone.origin.length; k = parentKey(k)) {
    const n = zone.nodes.get(k);
    if (n?.isCut) cut = n;
  }
  return cut;
}

function lookup(snap: ViewSnapshot, zone: Zone, qname: string, qtype: number, ans: Answer, seen: Set<string>, pick: number): void {
  const cut = findCut(zone, qname);
  // DS lives on the parent side of a cut (RFC 4035 3.1.4.1); everything else at or below is the child's.
  if (cut !== undefined && !(cut.owner === qname && qtype === TYPE.DS)) {
    referral(zone, cut, ans);
    // Names below a cut are unbounded (any label works): memoising each would let
    // random names fill the memo, and the referral is the same for all of them.
    if (cut.owner !== qname && ans.answer.length === 0) {
      ans.cacheable = false;
      ans.shape = SHAPE_SUFFIX;
      ans.shapeBase = cut.owner;
    }
    return;
  }

  let node = zone.nodes.get(qname);
  if (node === undefined) {
    // RFC 4592 4.1: the closest encloser is the longest existing ancestor (empty non-terminals count);
    // only a wildcard directly below it may match.
    let ce = parentKey(qname)!;
    while (!zone.nodes.has(ce)) ce = parentKey(ce)!;
    const wildcard = wildcardOf(ce);
    node = zone.nodes.get(wildcard);
    ans.cacheable = false;
    // Only the first name of a chain shapes the answer; after a CNAME the query name is in it.
    const first = ans.answer.length === 0;
    if (node === undefined) {
      ans.rcode = RCODE.NXDOMAIN;
      ans.authority.push({ owner: zone.origin, rrset: snap.negativeSoa.get(zone.origin)! });
      if (first) {
        ans.shape = SHAPE_SUFFIX;
        ans.shapeBase = zone.origin;
      }
      return;
    }
    if (first) {
      ans.shape = SHAPE_WILDCARD;
      ans.shapeBase = wildcard;
    }
  }

  const rrsets = node.rrsets;
  if (qtype === TYPE.ANY) {
    // RFC 8482 4.1: answer with one RRset of the node, not all of them.
    const first = rrsets.values().next();
    if (first.done === true) nodata(snap, zone, ans);
    else ans.answer.push({ owner: qname, rrset: choose(first.value, ans, pick) });
    return;
  }

  const cname = rrsets.get(TYPE.CNAME);
  if (cname !== undefined && qtype !== TYPE.CNAME) {
    ans.answer.push({ owner: qname, rrset: cname });
    const target = lowerKey(readUncompressedName(cname.rdatas[0]!, 0).key);
    if (seen.has(target) || seen.size >= MAX_CHAIN) return;
    seen.add(target);
    const next = findZone(snap, target);
    // A target outside our zones is the resolver's job: the CNAME goes alone.
    if (next !== undefined) lookup(snap, next, target, qtype, ans, seen, pick);
    return;
  }

  const found = rrsets.get(qtype);
  if (found === undefined) {
    nodata(snap, zone, ans);
    return;
  }
  const rrset = choose(found, ans, pick);
  ans.answer.push({ owner: qname, rrset });
  addTargetAddresses(snap, ans, rrset, pick);
}

function nodata(snap: ViewSnapshot, zone: Zone, ans: Answer): void {
  ans.authority.push({ owner: zone.origin, rrset: snap.negativeSoa.get(zone.origin)! });
}

function referral(zone: Zone, cut: ZoneNode, ans: Answer): void {
  const ns = cut.rrsets.get(TYPE.NS)!;
  // AA describes the first owner in the answer; a referral met after a CNAME keeps it.
  if (ans.answer.length === 0) ans.aa = false;
  ans.authority.push({ owner: cut.owner, rrset: ns });
  for (const rdata of ns.rdatas) {
    const target = lowerKey(readUncompressedName(rdata, 0).key);
    const glueNode = zone.nodes.get(target);
    if (glueNode === undefined) continue;
    for (const t of [TYPE.A, TYPE.AAAA]) {
      const rr = glueNode.rrsets.get(t);
      if (rr !== undefined && !hasEntry(ans.additional, target, t)) {
        ans.additional.push({ owner: target, rrset: rr });
        // Glue under the cut is what makes the delegation usable at all (RFC 9471 section 3).
        if (isSubdomain(target, cut.owner)) ans.requiredAdditional = ans.additional.length;
      }
    }
  }
}

function hasEntry(list: readonly Entry[], owner: string, type: number): boolean {
  for (const e of list) if (e.owner === owner && e.rrset.type === type) return true;
  return false;
}

/** Offset of the name a CNAME, NS, MX or SRV rdata points to, or -1. */
export function targetNameOffset(type: number): number {
  switch (type) {
    case TYPE.CNAME:
    case TYPE.NS:
      return 0;
    case TYPE.MX:
      return 2;
    case TYPE.SRV:
      return 6;
    default:
      return -1;
  }
}

/**
 * RFC 1034 3.6 / RFC 2782: addresses of MX, SRV and NS targets that we are
 * authoritative for, so the resolver need not ask again. Not synthesised from
 * wildcards and not taken from below a cut (that data is not ours to give).
 */
function addTargetAddresses(snap: ViewSnapshot, ans: Answer, rrset: RRset, pick: number): void {
  // Additional-section processing (RFC 1034 3.6.2 leaves CNAME targets to the chase in lookup()).
  const off = rrset.type === TYPE.CNAME ? -1 : targetNameOffset(rrset.type);
  if (off < 0) return;
  for (const rdata of rrset.rdatas) {
    const target = lowerKey(readUncompressedName(rdata, off).key);
    const zone = findZone(snap, target);
    if (zone === undefined || findCut(zone, target) !== undefined) continue;
    const node = zone.nodes.get(target);
    if (node === undefined) continue;
    for (const t of [TYPE.A, TYPE.AAAA]) {
      const rr = node.rrsets.get(t);
      if (rr !== undefined && !hasEntry(ans.additional, target, t)) ans.additional.push({ owner: target, rrset: choose(rr, ans, pick) });
    }
  }
}
