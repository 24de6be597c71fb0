// Parses what an authoritative server needs from a query and nothing more:
// the header, the single question, and the OPT record. One pass, bounded by
// the packet length (every loop advances the offset), no object per label.
// Anything a client sends either parses, earns FORMERR/NOTIMP, or is dropped.

import { OPCODE, TYPE } from './constants.js';
import { COOKIE_OPTION } from './cookie.js';
import { skipName } from './name.js';

export interface Edns {
  /** Requestor's UDP payload size, raised to 512 when smaller (RFC 6891 6.2.3). */
  readonly payload: number;
  readonly version: number;
  readonly dnssecOk: boolean;
  /**
   * Offset in the message of the first COOKIE option's data (RFC 7873);
   * absent when the query has none (or a malformed one, which is FORMERR).
   * The client cookie is msg[cookieAt, cookieAt + 8); a server cookie, when
   * present, follows up to cookieAt + cookieLength. Offsets rather than
   * copies: most queries never need the bytes.
   */
  readonly cookieAt?: number;
  /** Length of that option's data: 8 (client cookie only) or 16..40. Present exactly when cookieAt is. */
  readonly cookieLength?: number;
}

export interface Query {
  readonly kind: 'query';
  readonly id: number;
  readonly opcode: number;
  /** The query's second flags byte is not needed; these are the bits we copy. */
  readonly rd: boolean;
  readonly cd: boolean;
  /** Lowercased name key of the question. */
  readonly qname: string;
  /** qname followed by the two octets of the type: what the answer memo is keyed by. */
  readonly key: string;
  readonly qtype: number;
  readonly qclass: number;
  /** Offset just after the question (header 12 + name + 4). */
  readonly questionEnd: number;
  readonly edns: Edns | undefined;
}

/** The header parsed but the rest is not acceptable: answer with this rcode. */
export interface QueryError {
  readonly kind: 'error';
  readonly id: number;
  readonly opcode: number;
  readonly rd: boolean;
  readonly cd: boolean;
  readonly rcode: number;
  /** End of the question when it parsed (so it can be echoed), else 0. */
  readonly questionEnd: number;
  readonly edns: Edns | undefined;
  readonly reason: string;
}

/** Not worth an answer: too short to carry an ID, or a response (QR=1), which would invite loops. */
export interface QueryDrop {
  readonly kind: 'drop';
  readonly reason: string;
}

export type ParsedQuery = Query | QueryError | QueryDrop;

const FORMERR = 1;
const NOTIMP = 4;

/** Set by questionNameEnd: whether the name has an ASCII capital (one result slot instead of an object per query). */
let sawUpper = false;

/**
 * Finds the end of the question name at offset 12: labels only, no
 * compression (a pointer in the first name can only point into the header).
 * Returns the offset after the root label, or -1; sets sawUpper.
 */
function questionNameEnd(msg: Uint8Array, end: number): number {
  let i = 12;
  let upper = false;
  for (;;) {
    if (i >= end) return -1;
    const len = msg[i]!;
    if (len === 0) break;
    if (len > 63) return -1; // compression pointer or reserved label type
    if (i + 1 + len > end) return -1;
    for (let j = i + 1, stop = i + 1 + len; j < stop; j++) {
      const c = msg[j]!;
      if (c >= 0x41 && c <= 0x5a) upper = true;
    }
    i += 1 + len;
    if (i - 12 > 254) return -1;
  }
  sawUpper = upper;
  return i + 1;
}

/** Room for the longest name and the type, folded (parsing is synchronous, so one buffer serves every call). */
const folded = Buffer.alloc(255 + 2);

/**
 * msg[12, end) with ASCII capitals folded, as a latin1 string. Only ASCII
 * letters fold (RFC 4343); String.toLowerCase would also fold octets from
 * 0xC0 up.
 */
function foldedKey(msg: Uint8Array, end: number): string {
  const n = end - 12;
  for (let j = 0; j < n; j++) {
    const c = msg[12 + j]!;
    folded[j] = c >= 0x41 && c <= 0x5a ? c + 32 : c;
  }
  return folded.toString('latin1', 0, n);
}


export function parseQuery(msg: Uint8Array, length: number = msg.length): ParsedQuery {
  if (length < 12) return { kind: 'drop', reason: 'shorter than a header' };
  const id = (msg[0]! << 8) | msg[1]!;
  const b2 = msg[2]!;
  if (b2 & 0x80) return { kind: 'drop', reason: 'QR set' };
  const opcode = (b2 >> 3) & 0x0f;
  const rd = (b2 & 0x01) !== 0;
  const cd = (msg[3]! & 0x10) !== 0;
  const qdcount = (msg[4]! << 8) | msg[5]!;
  const ancount = (msg[6]! << 8) | msg[7]!;
  const nscount = (msg[8]! << 8) | msg[9]!;
  const arcount = (msg[10]! << 8) | msg[11]!;

  const fail = (rcode: number, reason: string, questionEnd = 0, edns?: Edns): QueryError => ({
    kind: 'error',
    id,
    opcode,
    rd,
    cd,
    rcode,
    questionEnd,
    edns,
    reason,
  });

  if (qdcount !== 1) {
    return fail(opcode === OPCODE.QUERY ? FORMERR : NOTIMP, `QDCOUNT ${qdcount}`);
  }
  const next = questionNameEnd(msg, length);
  if (next < 0 || next + 4 > length) return fail(FORMERR, 'question does not parse');
  const qtype = (msg[next]! << 8) | msg[next + 1]!;
  const qclass = (msg[next + 2]! << 8) | msg[next + 3]!;
  const questionEnd = next + 4;
  // The key format is the wire format, lowercased: one native slice of the
  // packet (name and type together, the memo's key) instead of a string built
  // a character at a time.
  // Only the name folds: a type octet may well be 0x41-0x5a.
  let key: string;
  if (sawUpper) {
    key = foldedKey(msg, next) + String.fromCharCode(msg[next]!, msg[next + 1]!);
  } else {
    const buf = Buffer.isBuffer(msg) ? msg : Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
    key = buf.toString('latin1', 12, next + 2);
  }
  const qname = key.slice(0, -2);

  // Walk answer and authority only to reach the additional section.
  let i = questionEnd;
  const rrTotal = ancount + nscount + arcount;
  let edns: Edns | undefined;
  let optCount = 0;
  for (let n = 0; n < rrTotal; n++) {
    const nameStart = i;
    i = skipName(msg, i, length);
    if (i < 0 || i + 10 > length) return fail(FORMERR, 'record does not parse', questionEnd, edns);
    const type = (msg[i]! << 8) | msg[i + 1]!;
    const rdlen = (msg[i + 8]! << 8) | msg[i + 9]!;
    const rdStart = i + 10;
    if (rdStart + rdlen > length) return fail(FORMERR, 'rdata runs past the end', questionEnd, edns);
    if (type === TYPE.OPT) {
      if (n < ancount + nscount) return fail(FORMERR, 'OPT outside the additional section', questionEnd, edns);
      optCount++;
      if (optCount > 1) return fail(FORMERR, 'more than one OPT record', questionEnd, undefined);
      if (msg[nameStart] !== 0) return fail(FORMERR, 'OPT owner is not the root', questionEnd, undefined);
      // Options are TLVs; a length that overruns the rdata is malformed (RFC 6891 6.1.2).
      let cookieAt = -1;
      let cookieLength = 0;
      for (let o = rdStart; o < rdStart + rdlen; ) {
        if (o + 4 > rdStart + rdlen) return fail(FORMERR, 'truncated EDNS option', questionEnd, undefined);
        const code = (msg[o]! << 8) | msg[o + 1]!;
        const olen = (msg[o + 2]! << 8) | msg[o + 3]!;
        // Only the first COOKIE counts: RFC 7873 defines no meaning for more, and
        // judging one copy and answering another invites mismatches.
        if (code === COOKIE_OPTION && cookieAt < 0) {
          cookieAt = o + 4;
          cookieLength = olen;
        }
        o += 4 + olen;
        if (o > rdStart + rdlen) return fail(FORMERR, 'EDNS option overruns OPT', questionEnd, undefined);
      }
      const payload = (msg[i + 2]! << 8) | msg[i + 3]!;
      const version = msg[i + 5]!;
      const dnssecOk = (msg[i + 6]! & 0x80) !== 0;
      const floored = payload < 512 ? 512 : payload;
      if (cookieAt < 0) edns = { payload: floored, version, dnssecOk };
      else if (cookieLength < 8 || (cookieLength > 8 && cookieLength < 16) || cookieLength > 40) {
        // RFC 7873 5.2.2: no room for a client cookie, a server cookie shorter than
        // 8 octets, or more than 40 octets in all is malformed: FORMERR. The OPT
        // itself is sound, so the answer still carries ours (without a cookie).
        return fail(FORMERR, `malformed COOKIE option of ${cookieLength} octets`, questionEnd, { payload: floored, version, dnssecOk });
      } else edns = { payload: floored, version, dnssecOk, cookieAt, cookieLength };
    }
    i = rdStart + rdlen;
  }

  if (opcode !== OPCODE.QUERY) return fail(NOTIMP, `opcode ${opcode}`, questionEnd, edns);
  return { kind: 'query', id, opcode, rd, cd, qname, key, qtype, qclass, questionEnd, edns };
}
