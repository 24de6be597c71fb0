// The AXFR response encoder (RFC 5936): a zone and the query's header in,
// DNS messages out. Pure: it reads the immutable Zone and never touches a
// socket, so the TCP transport decides when each message is written (as the
// socket drains) and a reload mid-transfer cannot change what is sent.
//
// Layout (RFC 5936 2.2): the zone's SOA first, every other record once, the
// SOA again last; as many messages as it takes, each filled to about
// AXFR_MESSAGE_SIZE octets with names compressed within the message (3.1
// allows it; the writer only points below 0x4000, which a 16 KiB message
// never passes, so nothing is left uncompressed). Every message carries the
// query's ID, QR and AA set, TC clear (a transfer is never truncated, it
// continues in the next message); the question is echoed in the first
// message only (2.2.1: later ones MAY omit it). With EDNS in the query each
// message carries our OPT, as Knot does.

import { CLASS, TYPE, typeName } from '../wire/constants.js';
import { formatName, readUncompressedName } from '../wire/name.js';
import { MAX_MESSAGE, MessageWriter, optSize } from '../wire/writer.js';
import type { RRset, Zone } from '../../zones/zone.js';

/** Target size of one transfer message: what Knot and NSD use, and where name compression still reaches everything. */
export const AXFR_MESSAGE_SIZE = 16384;

/** What the response messages copy from the query. */
export interface XfrHeader {
  readonly id: number;
  readonly opcode: number;
  readonly rd: boolean;
  readonly cd: boolean;
  /** The query's question section as sent (name in the client's letter case, type, class). */
  readonly question: Uint8Array;
  /** Present when the query had an OPT record: our OPT goes into every message. */
  readonly edns?: { readonly udpPayload: number; readonly dnssecOk: boolean } | undefined;
}

/** Counters a transfer fills as its messages are produced, for the log line. */
export interface XfrStats {
  records: number;
  messages: number;
  bytes: number;
}

export function newXfrStats(): XfrStats {
  return { records: 0, messages: 0, bytes: 0 };
}

/** A record that fits in no message (rdata near 64 KiB): the zone cannot be transferred at all. */
export class XfrEncodeError extends Error {
  override name = 'XfrEncodeError';
  constructor(
    message: string,
    readonly zone: string,
    readonly owner: string,
    readonly type: number,
  ) {
    super(message);
  }
}

/** The zone's SOA serial (RFC 1035 3.3.13: after MNAME and RNAME). */
export function soaSerial(zone: Zone): number {
  const rd = zone.soa.rdatas[0]!;
  const mname = readUncompressedName(rd, 0);
  const rname = readUncompressedName(rd, mname.end);
  return new DataView(rd.buffer, rd.byteOffset, rd.byteLength).getUint32(rname.end);
}

/** The question's name as a key, to seed compression with the copy at offset 12. */
function questionKey(question: Uint8Array): string {
  return Buffer.from(question.buffer, question.byteOffset, Math.max(0, question.byteLength - 4)).toString('latin1');
}

/**
 * One message at a time, in the order of a full transfer. Lazy, so a
 * million-record zone is never held encoded in memory: the caller pulls the
 * next message when the socket has room for it.
 */
export function* axfrMessages(zone: Zone, h: XfrHeader, stats: XfrStats = newXfrStats(), messageSize: number = AXFR_MESSAGE_SIZE): Generator<Buffer, void, void> {
  const w = new MessageWriter(MAX_MESSAGE);
  const optLen = h.edns !== undefined ? optSize() : 0;
  let count = 0;
  let first = true;

  const start = (): void => {
    w.reset(Math.min(messageSize, MAX_MESSAGE) - optLen);
    // ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT; flags and counts are patched in finish().
    for (let i = 0; i < 6; i++) w.u16(0);
    if (first) {
      w.raw(h.question);
      w.rememberName(questionKey(h.question), 12);
    }
    count = 0;
  };
  const finish = (): Buffer => {
    w.limit = MAX_MESSAGE;
    if (h.edns !== undefined) w.opt(h.edns.udpPayload, 0, h.edns.dnssecOk);
    writeHeader(w.buf, h, 0, true, first ? 1 : 0, count, h.edns !== undefined ? 1 : 0);
    const out = w.toBuffer();
    stats.messages++;
    stats.bytes += out.length;
    first = false;
    return out;
  };
  /** Writes one record; false when this message is full and has records (send it and retry in the next). */
  const put = (owner: string, set: RRset, rdata: Uint8Array): boolean => {
    if (w.record(owner, set.type, CLASS.IN, set.ttl, rdata)) return true;
    if (count > 0) return false;
    // Alone in its message and still too big for the target size: a message may grow to 64 KiB.
    w.limit = MAX_MESSAGE - optLen;
    if (w.record(owner, set.type, CLASS.IN, set.ttl, rdata)) {
      // Nothing more joins it: the next record starts a message of the usual size.
      w.limit = w.length;
      return true;
    }
    throw new XfrEncodeError(
      `${formatName(owner)} ${typeName(set.type)} (${rdata.length} octets of rdata) does not fit in one DNS message; zone ${formatName(zone.origin)} cannot be transferred`,
      zone.origin,
      owner,
      set.type,
    );
  };

  start();
  for (const [owner, set, rdata] of records(zone)) {
    if (!put(owner, set, rdata)) {
      yield finish();
      start();
      put(owner, set, rdata);
    }
    count++;
    stats.records++;
  }
  yield finish();
}

/** The zone's records in transfer order: SOA, everything else (zone.nodes order, occluded data and glue included), SOA. */
function* records(zone: Zone): Generator<[string, RRset, Uint8Array], void, void> {
  const soa = zone.soa;
  yield [zone.origin, soa, soa.rdatas[0]!];
  for (const node of zone.nodes.values()) {
    for (const set of node.rrsets.values()) {
      if (set.type === TYPE.SOA && node.owner === zone.origin) continue;
      for (const rdata of set.rdatas) yield [node.owner, set, rdata];
    }
  }
  yield [zone.origin, soa, soa.rdatas[0]!];
}

/** Every message of a full transfer at once; for tests and small zones (the transport uses axfrMessages). */
export function encodeAxfr(zone: Zone, h: XfrHeader, stats?: XfrStats, messageSize?: number): Buffer[] {
  return [...axfrMessages(zone, h, stats, messageSize)];
}

/**
 * The one-message answer to an IXFR from a client whose serial is not older
 * than ours (RFC 1995 4): just our SOA, which tells it it is up to date.
 */
export function encodeSoaOnly(zone: Zone, h: XfrHeader): Buffer {
  const w = new MessageWriter(MAX_MESSAGE);
  for (let i = 0; i < 6; i++) w.u16(0);
  w.raw(h.question);
  w.rememberName(questionKey(h.question), 12);
  w.record(zone.origin, TYPE.SOA, CLASS.IN, zone.soa.ttl, zone.soa.rdatas[0]!);
  if (h.edns !== undefined) w.opt(h.edns.udpPayload, 0, h.edns.dnssecOk);
  writeHeader(w.buf, h, 0, true, 1, 1, h.edns !== undefined ? 1 : 0);
  return w.toBuffer();
}

/** An error answer (REFUSED, NOTAUTH, FORMERR): the question echoed (RFC 5936 2.2.2 requires it), no records, AA clear. */
export function encodeXfrError(h: XfrHeader, rcode: number): Buffer {
  const w = new MessageWriter(12 + h.question.length + optSize());
  for (let i = 0; i < 6; i++) w.u16(0);
  w.raw(h.question);
  if (h.edns !== undefined) w.opt(h.edns.udpPayload, rcode >> 4, h.edns.dnssecOk);
  writeHeader(w.buf, h, rcode & 0x0f, false, 1, 0, h.edns !== undefined ? 1 : 0);
  return w.toBuffer();
}

function writeHeader(b: Buffer, h: XfrHeader, rcode: number, aa: boolean, qd: number, an: number, ar: number): void {
  b.writeUInt16BE(h.id, 0);
  b[2] = 0x80 | ((h.opcode & 0x0f) << 3) | (aa ? 0x04 : 0) | (h.rd ? 0x01 : 0);
  b[3] = (h.cd ? 0x10 : 0) | rcode;
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(0, 8);
  b.writeUInt16BE(ar, 10);
}
