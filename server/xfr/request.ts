// Deciding what a zone-transfer query gets: which zone, whether this client
// may have it, and for IXFR whether the client is already up to date. The
// result carries the messages to send (lazily, for a full transfer); the TCP
// transport writes them and logs the outcome.
//
// The rule for views: a client transfers what it would get by querying. Its
// view (matchView) decides which zone of that origin it sees, and that zone's
// own `transfer.allow` decides whether it may have it.

import { CLASS, RCODE, TYPE } from '../wire/constants.js';
import { parseQuery } from '../wire/query.js';
import { skipName } from '../wire/name.js';
import type { Snapshot } from '../answer/snapshot.js';
import type { Zone } from '../../zones/zone.js';
import { axfrMessages, encodeSoaOnly, encodeXfrError, newXfrStats, soaSerial, type XfrHeader, type XfrStats } from './axfr.js';

/**
 * - transfer: the whole zone follows (AXFR, or IXFR answered AXFR-style);
 * - current: IXFR from a client whose serial is not older than ours, answered with our SOA alone (RFC 1995 4);
 * - refused: policy (no `transfer`, client not allowed, no view admits it, class other than IN);
 * - notauth: the name is not the apex of a zone served in the client's view (RFC 5936 2.2.1);
 * - formerr: an IXFR without the client's SOA in the authority section (RFC 1995 3).
 */
export type TransferOutcome = 'transfer' | 'current' | 'refused' | 'notauth' | 'formerr';

export interface TransferPlan {
  readonly outcome: TransferOutcome;
  readonly rcode: number;
  /** Question name key (lowercased) and type, AXFR or IXFR. */
  readonly qname: string;
  readonly qtype: number;
  /** Index of the client's view in the snapshot, -1 when none admits it. */
  readonly view: number;
  /** The zone sent (transfer, current). */
  readonly zone?: Zone;
  /** Its SOA serial (transfer, current). */
  readonly serial?: number;
  /** Why it was refused or failed, for the log. */
  readonly reason?: string;
  /** The response messages, produced on demand; exactly one unless the outcome is `transfer`. */
  readonly messages: Iterator<Buffer, void, void>;
  /** Filled in as `messages` is consumed. */
  readonly stats: XfrStats;
}

/**
 * Cheap look at a TCP query: QR clear, opcode QUERY, one question whose type
 * is AXFR or IXFR. Walks the question name once and allocates nothing, so
 * every other query pays only this.
 */
export function isTransferQuery(msg: Uint8Array, length: number = msg.length): boolean {
  if (length < 17 || (msg[2]! & 0xf8) !== 0 || msg[4] !== 0 || msg[5] !== 1) return false;
  let i = 12;
  for (;;) {
    if (i >= length) return false;
    const len = msg[i]!;
    if (len === 0) break;
    if (len > 63) return false;
    i += len + 1;
  }
  if (i + 5 > length) return false;
  const qtype = (msg[i + 1]! << 8) | msg[i + 2]!;
  return qtype === TYPE.AXFR || qtype === TYPE.IXFR;
}

/** Serial of the first SOA in the authority section (where an IXFR query carries the client's version), if any. */
export function ixfrClientSerial(msg: Uint8Array, length: number, questionEnd: number): number | undefined {
  if (length < 12) return undefined;
  const ancount = (msg[6]! << 8) | msg[7]!;
  const nscount = (msg[8]! << 8) | msg[9]!;
  let i = questionEnd;
  for (let n = 0; n < ancount + nscount; n++) {
    i = skipName(msg, i, length);
    if (i < 0 || i + 10 > length) return undefined;
    const type = (msg[i]! << 8) | msg[i + 1]!;
    const rdlen = (msg[i + 8]! << 8) | msg[i + 9]!;
    const rdEnd = i + 10 + rdlen;
    if (rdEnd > length) return undefined;
    // MNAME and RNAME (possibly compressed, at least 1 octet each) then five 32-bit fields; the serial is the first.
    if (n >= ancount && type === TYPE.SOA && rdlen >= 22) {
      return ((msg[rdEnd - 20]! << 24) | (msg[rdEnd - 19]! << 16) | (msg[rdEnd - 18]! << 8) | msg[rdEnd - 17]!) >>> 0;
    }
    i = rdEnd;
  }
  return undefined;
}


/** RFC 1982 serial arithmetic: is `theirs` equal to or newer than `ours`? (Undefined comparisons count as older.) */
export function serialNotOlder(theirs: number, ours: number): boolean {
  const d = (theirs - ours) >>> 0;
  return d < 0x80000000;
}

function one(msg: Buffer): Iterator<Buffer, void, void> {
  return [msg][Symbol.iterator]() as Iterator<Buffer, void, void>;
}

/**
 * What to answer a transfer query from `client` (the socket's remote
 * address). Undefined when it is not a well-formed AXFR/IXFR query that this
 * module answers (malformed, EDNS version above 0, another type): respond()
 * gives those their FORMERR, BADVERS or answer as for any query.
 */
export function planTransfer(msg: Uint8Array, length: number, snap: Snapshot, client: string): TransferPlan | undefined {
  const q = parseQuery(msg, length);
  if (q.kind !== 'query' || (q.qtype !== TYPE.AXFR && q.qtype !== TYPE.IXFR)) return undefined;
  if (q.edns !== undefined && q.edns.version > 0) return undefined;
  const h: XfrHeader = {
    id: q.id,
    opcode: q.opcode,
    rd: q.rd,
    cd: q.cd,
    // Copied: the full transfer is encoded lazily, long after the read buffer moved on.
    question: Buffer.from(msg.subarray(12, q.questionEnd)),
    edns: q.edns !== undefined ? { udpPayload: snap.udpPayload, dnssecOk: q.edns.dnssecOk } : undefined,
  };
  const base = { qname: q.qname, qtype: q.qtype, stats: newXfrStats() };
  const fail = (outcome: 'refused' | 'notauth' | 'formerr', view: number, reason: string): TransferPlan => {
    const rcode = outcome === 'refused' ? RCODE.REFUSED : outcome === 'notauth' ? RCODE.NOTAUTH : RCODE.FORMERR;
    const out = encodeXfrError(h, rcode);
    base.stats.messages = 1;
    base.stats.bytes = out.length;
    return { ...base, outcome, rcode, view, reason, messages: one(out) };
  };

  if (q.qclass !== CLASS.IN) return fail('refused', -1, `class ${q.qclass}: only IN zones are served`);
  const viewIndex = snap.views.length === 1 ? 0 : snap.matchView(client);
  if (viewIndex < 0) return fail('refused', -1, 'no view admits the client');
  const view = snap.views[viewIndex]!;
  const source = view.transfers.get(q.qname);
  if (source === undefined) {
    if (view.zones.has(q.qname)) return fail('refused', viewIndex, 'the zone has no transfer.allow');
    const where = snap.views.length > 1 ? ` in view "${view.name}"` : '';
    return fail('notauth', viewIndex, `not the apex of a zone served${where}`);
  }
  if (!source.allowed(client)) return fail('refused', viewIndex, 'client not in the zone\'s transfer.allow');

  const zone = source.zone;
  const serial = soaSerial(zone);
  if (q.qtype === TYPE.IXFR) {
    const theirs = ixfrClientSerial(msg, length, q.questionEnd);
    if (theirs === undefined) return fail('formerr', viewIndex, 'IXFR without the client\'s SOA in the authority section');
    if (serialNotOlder(theirs, serial)) {
      const out = encodeSoaOnly(zone, h);
      base.stats.records = 1;
      base.stats.messages = 1;
      base.stats.bytes = out.length;
      return { ...base, outcome: 'current', rcode: RCODE.NOERROR, view: viewIndex, zone, serial, messages: one(out) };
    }
    // Without a history of changes the only correct IXFR answer is the whole zone, AXFR-style (RFC 1995 4), as Knot gives.
  }
  return { ...base, outcome: 'transfer', rcode: RCODE.NOERROR, view: viewIndex, zone, serial, messages: axfrMessages(zone, h, base.stats) };
}
