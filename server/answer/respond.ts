// The answering function the transports call: query bytes + snapshot →
// response bytes (or nothing, for packets that deserve no answer). Pure with
// respect to the snapshot: the only state it touches is the snapshot's own
// memo of encoded answers and a scratch writer reused between calls.

import { CLASS, RCODE } from '../wire/constants.js';
import { parseQuery, type Edns, type Query } from '../wire/query.js';
import { MessageWriter, MAX_MESSAGE, optSize, writeOptAt } from '../wire/writer.js';
import { clientCookieOf, serverCookieOf, serverCookieOption, validServerCookie } from '../wire/cookie.js';
import { classifyAnswer, ERROR_CLASS, type RrlAction, type RrlClass } from '../limits/rrl.js';
import { resolve, SHAPE_NONE, SHAPE_WILDCARD, type Answer, type Entry } from './resolve.js';
import { ANSWER_CACHE_LIMIT, type AnswerTemplate, type MemoEntry, type Snapshot, type ViewSnapshot } from './snapshot.js';
import { keyToBytes } from '../wire/name.js';

export type Transport = 'udp' | 'tcp';

/**
 * What respond() did with one query, for observers (metrics, drain
 * tracking). The caller owns one and passes it to every call, so observing
 * costs no allocation per query; respond overwrites every field each time.
 */
export interface QueryInfo {
  /** error: a parse error answered (FORMERR/NOTIMP); drop: nothing sent. */
  outcome: 'answer' | 'error' | 'drop';
  /** Index into snapshot.views, -1 when none matched or the query never got that far. */
  view: number;
  /** Name key from parseQuery ('' when not parsed). */
  qname: string;
  /** 0 when not parsed. */
  qtype: number;
  /** Full rcode of the response (BADVERS included), 0 when dropped. */
  rcode: number;
  truncated: boolean;
  /** What rate limiting counts the response as (classifyAnswer; ERROR_CLASS for errors, BADVERS and REFUSED by views). */
  rrl: RrlClass;
  /** The query presented a server cookie we made for this client and address (proof it is not spoofed). */
  cookieValid: boolean;
  /**
   * What UDP rate limiting did with the response: set by the UDP transport
   * after respond() (which resets it to 'send'); always 'send' over TCP or
   * with rate limiting off. A dropped response is also outcome 'drop'.
   */
  rrlAction: RrlAction;
}

export function newQueryInfo(): QueryInfo {
  return { outcome: 'drop', view: -1, qname: '', qtype: 0, rcode: 0, truncated: false, rrl: ERROR_CLASS, cookieValid: false, rrlAction: 'send' };
}

/** Records how a response was made; the TC bit is read back from the message so every path reports it the same way. */
function noted(info: QueryInfo | undefined, outcome: 'answer' | 'error', view: number, rcode: number, rrl: RrlClass, out: Buffer): Buffer {
  if (info !== undefined) {
    info.outcome = outcome;
    info.view = view;
    info.rcode = rcode;
    info.truncated = (out[2]! & 0x02) !== 0;
    info.rrl = rrl;
  }
  return out;
}

/** Without EDNS a UDP response may not exceed 512 octets (RFC 1035 4.2.1). */
const CLASSIC_UDP_LIMIT = 512;

const scratch = new MessageWriter(MAX_MESSAGE);

/** Turn for names not (yet) memoised; memoised ones keep their own turn (MemoEntry.turn). */
let sequence = 0;

/** Size limit for this response: the client's advertised size, capped by ours, or 64 KiB over TCP. */
function responseLimit(q: { edns: Edns | undefined }, snap: { udpPayload: number }, transport: Transport): number {
  if (transport === 'tcp') return MAX_MESSAGE;
  if (q.edns === undefined) return CLASSIC_UDP_LIMIT;
  return Math.min(q.edns.payload, snap.udpPayload);
}

function emptyAnswer(rcode: number, cls: number): Answer {
  return { rcode, aa: false, cls, answer: [], authority: [], additional: [], requiredAdditional: 0, cacheable: false, variantCount: 1, shape: SHAPE_NONE, shapeBase: '' };
}

/**
 * `client` is the source address; it selects the view (split horizon) when
 * the snapshot has more than one, and server cookies are bound to it. `info`,
 * when given, is filled with what was done (see QueryInfo); rate limiting is
 * the UDP transport's business, from info.rrl and info.cookieValid.
 */
export function respond(
  msg: Uint8Array,
  length: number,
  snap: Snapshot,
  transport: Transport,
  client = '',
  info?: QueryInfo,
): Buffer | undefined {
  const q = parseQuery(msg, length);
  if (info !== undefined) {
    info.outcome = 'drop';
    info.view = -1;
    info.qname = q.kind === 'query' ? q.qname : '';
    info.qtype = q.kind === 'query' ? q.qtype : 0;
    info.rcode = 0;
    info.truncated = false;
    info.rrl = ERROR_CLASS;
    info.cookieValid = false;
    info.rrlAction = 'send';
  }
  if (q.kind === 'drop') return undefined;
  // RFC 7873 5.2: a client cookie gets a fresh server cookie in every response,
  // errors included. Only queries carrying one pay for the clock and SipHash.
  let cookie: Buffer | undefined;
  const secret = snap.cookies;
  if (secret !== undefined && q.edns?.cookieAt !== undefined) {
    const cc = clientCookieOf(msg, q.edns)!;
    const nowS = Date.now() / 1000;
    if (info !== undefined) {
      const sc = serverCookieOf(msg, q.edns);
      if (sc !== undefined) info.cookieValid = validServerCookie(cc, sc, client, secret, nowS);
    }
    cookie = serverCookieOption(cc, client, secret, nowS);
  }
  if (q.kind === 'error') {
    return noted(info, 'error', -1, q.rcode, ERROR_CLASS, encode(emptyAnswer(q.rcode, CLASS.IN), q, msg, CLASSIC_UDP_LIMIT, snap, cookie));
  }
  const limit = responseLimit(q, snap, transport);
  // RFC 6891 6.1.3: we speak version 0 only; BADVERS tells the client to fall back.
  if (q.edns !== undefined && q.edns.version > 0) {
    return noted(info, 'answer', -1, RCODE.BADVERS, ERROR_CLASS, encode(emptyAnswer(RCODE.BADVERS, q.qclass), q, msg, limit, snap, cookie));
  }
  const viewIndex = snap.views.length === 1 ? 0 : snap.matchView(client);
  // A client no view admits gets nothing from any zone (views without a default are deliberate).
  if (viewIndex < 0) {
    return noted(info, 'answer', -1, RCODE.REFUSED, ERROR_CLASS, encode(emptyAnswer(RCODE.REFUSED, q.qclass), q, msg, limit, snap, cookie));
  }
  const view = snap.views[viewIndex]!;

  const cacheKey = q.qclass === CLASS.IN ? q.key : undefined;
  const entry = cacheKey !== undefined ? view.answerCache.get(cacheKey) : undefined;
  // Consecutive queries for a name take consecutive alternatives (rotation, weighted draws, ramp shares).
  const pick = entry !== undefined ? entry.turn++ & 0x3fffffff : sequence++ & 0x3fffffff;
  if (entry !== undefined) {
    const hit = entry.slots[pick % entry.slots.length];
    if (hit !== undefined) {
      const out = fromCache(hit, q, msg, limit, snap, cookie);
      // Memoised answers never carry an extended rcode, so the header's four bits are all of it.
      if (out !== undefined) return noted(info, 'answer', viewIndex, out[3]! & 0x0f, entry.rrl, out);
    }
  }

  const ans = resolve(view, q.qname, q.qtype, q.qclass, pick);
  if (ans.shape !== SHAPE_NONE && ans.variantCount === 1 && q.qclass === CLASS.IN) {
    const t = templateFor(view, ans, q, snap);
    if (t !== undefined) {
      const out = fromTemplate(t, q, msg, limit, snap, cookie);
      if (out !== undefined) return noted(info, 'answer', viewIndex, ans.rcode, t.rrl, out);
    }
  }
  // Classified once per memo entry; otherwise only when someone reads it (the slow path allocates anyway).
  let rrl: RrlClass | undefined;
  if (ans.cacheable && cacheKey !== undefined) {
    const memo = memoise(view, cacheKey, entry, ans, q, msg, pick, snap);
    if (memo !== undefined) {
      const out = fromCache(memo.full, q, msg, limit, snap, cookie);
      if (out !== undefined) return noted(info, 'answer', viewIndex, ans.rcode, memo.rrl, out);
      rrl = memo.rrl;
    }
  }
  if (info !== undefined) rrl ??= classifyAnswer(ans, q.qname, q.qtype);
  return noted(info, 'answer', viewIndex, ans.rcode, rrl ?? ERROR_CLASS, encode(ans, q, msg, limit, snap, cookie));
}

/**
 * Stores the full answer (no OPT, RD/CD clear) in its slot; fromCache patches
 * those per query. Every alternative of one name and type classifies the same
 * for rate limiting (same owner, same rcode), so the entry holds one class.
 */
function memoise(
  view: ViewSnapshot,
  key: string,
  existing: MemoEntry | undefined,
  ans: Answer,
  q: Query,
  msg: Uint8Array,
  pick: number,
  snap: Snapshot,
): { full: Buffer; rrl: RrlClass } | undefined {
  let entry = existing;
  if (entry === undefined || entry.slots.length !== ans.variantCount) {
    if (view.answerCache.size >= ANSWER_CACHE_LIMIT) return undefined;
    entry = { slots: new Array<Buffer | undefined>(ans.variantCount), turn: pick + 1, rrl: classifyAnswer(ans, q.qname, q.qtype) };
    view.answerCache.set(key, entry);
  }
  const full = encodeInto(scratch, ans, { ...q, rd: false, cd: false, edns: undefined }, msg, MAX_MESSAGE, snap, undefined);
  entry.slots[pick % entry.slots.length] = full;
  return { full, rrl: entry.rrl };
}

/**
 * The fast path: copy the memoised message, then patch the ID, the flag bits
 * the client chose, the question's letter case (RFC 4343; 0x20 resolvers rely
 * on it), and append OPT. Undefined when it would not fit the client's limit,
 * so the slow path builds a truncated answer.
 */
function fromCache(hit: Buffer, q: Query, msg: Uint8Array, limit: number, snap: { udpPayload: number }, cookie: Buffer | undefined): Buffer | undefined {
  const size = hit.length + (q.edns !== undefined ? optSize(cookie) : 0);
  if (size > limit) return undefined;
  const out = Buffer.allocUnsafe(size);
  hit.copy(out, 0);
  out[0] = msg[0]!;
  out[1] = msg[1]!;
  if (q.rd) out[2]! |= 0x01;
  if (q.cd) out[3]! |= 0x10;
  // A question is a few dozen octets: a loop beats creating a subarray for a native copy.
  for (let i = 12; i < q.questionEnd; i++) out[i] = msg[i]!;
  if (q.edns !== undefined) {
    writeOptAt(out, hit.length, snap.udpPayload, 0, q.edns.dnssecOk, cookie);
    out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  }
  return out;
}

/**
 * The template for an answer of this shape (resolve.ts): made on first use by
 * encoding the answer for a stand-in question, the shape's base name, with
 * every compression pointer's offset recorded. Undefined when the shape's
 * answer turns out not to be a function of the base alone.
 */
function templateFor(view: ViewSnapshot, ans: Answer, q: Query, snap: Snapshot): AnswerTemplate | undefined {
  const wildcard = ans.shape === SHAPE_WILDCARD;
  const key = wildcard ? `w${ans.shapeBase}${String.fromCharCode(q.qtype)}` : `s${ans.shapeBase}`;
  const known = view.templates.get(key);
  if (known !== undefined) return known;
  if (view.templates.size >= ANSWER_CACHE_LIMIT) return undefined;
  // A wildcard's answer is the wildcard name's own answer with the query name as owner (RFC 4592 2.1.1).
  const base = wildcard ? resolve(view, ans.shapeBase, q.qtype, q.qclass, 0) : ans;
  if (base.variantCount !== 1) return undefined;
  const name = keyToBytes(ans.shapeBase);
  const stand = Buffer.alloc(12 + name.length + 4);
  name.copy(stand, 12);
  stand.writeUInt16BE(q.qtype, 12 + name.length);
  stand.writeUInt16BE(q.qclass, 14 + name.length);
  const pointers: number[] = [];
  const bytes = encodeInto(scratch, base, { id: 0, opcode: q.opcode, rd: false, cd: false, questionEnd: stand.length, edns: undefined }, stand, MAX_MESSAGE, snap, undefined, pointers);
  if ((bytes[2]! & 0x02) !== 0) return undefined;
  const t: AnswerTemplate = { bytes, questionEnd: stand.length, pointers, wildcard, rrl: classifyAnswer(ans, q.qname, q.qtype) };
  view.templates.set(key, t);
  return t;
}

/**
 * The query's header and question, then the template's records with every
 * compression pointer moved by the difference in question length. Undefined
 * when it does not fit the client's limit (or a pointer would leave the
 * 14-bit range), so the slow path builds the answer.
 */
function fromTemplate(t: AnswerTemplate, q: Query, msg: Uint8Array, limit: number, snap: { udpPayload: number }, cookie: Buffer | undefined): Buffer | undefined {
  const shift = q.questionEnd - t.questionEnd;
  const records = t.bytes.length - t.questionEnd;
  const size = q.questionEnd + records + (q.edns !== undefined ? optSize(cookie) : 0);
  if (size > limit) return undefined;
  const out = Buffer.allocUnsafe(size);
  t.bytes.copy(out, 0, 0, 12);
  out[0] = msg[0]!;
  out[1] = msg[1]!;
  if (q.rd) out[2]! |= 0x01;
  if (q.cd) out[3]! |= 0x10;
  for (let i = 12; i < q.questionEnd; i++) out[i] = msg[i]!;
  t.bytes.copy(out, q.questionEnd, t.questionEnd);
  for (const p of t.pointers) {
    const at = p + shift;
    const target = ((out[at]! & 0x3f) << 8) | out[at + 1]!;
    const moved = t.wildcard && target === 12 ? 12 : target + shift;
    if (moved > 0x3fff) return undefined;
    out[at] = 0xc0 | (moved >> 8);
    out[at + 1] = moved & 0xff;
  }
  if (q.edns !== undefined) {
    writeOptAt(out, q.questionEnd + records, snap.udpPayload, 0, q.edns.dnssecOk, cookie);
    out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  }
  return out;
}

interface Header {
  readonly id: number;
  readonly opcode: number;
  readonly rd: boolean;
  readonly cd: boolean;
  readonly questionEnd: number;
  readonly edns: Edns | undefined;
}

function encode(ans: Answer, q: Header, msg: Uint8Array, limit: number, snap: { udpPayload: number }, cookie: Buffer | undefined): Buffer {
  return encodeInto(scratch, ans, q, msg, limit, snap, cookie);
}

/** Writes as many whole RRsets as fit; returns false at the first that does not. */
function writeSection(w: MessageWriter, entries: readonly Entry[], cls: number, count: { n: number }): boolean {
  for (const e of entries) {
    // RFC 2181 9: a partial RRset is worse than none, so roll back the whole set.
    const mark = w.length;
    const before = count.n;
    for (const rdata of e.rrset.rdatas) {
      if (!w.record(e.owner, e.rrset.type, cls, e.rrset.ttl, rdata)) {
        w.rollback(mark);
        count.n = before;
        return false;
      }
      count.n++;
    }
  }
  return true;
}

/** `cookie`: our COOKIE option (wire form) for the OPT record, when the query carried a client cookie. */
function encodeInto(
  w: MessageWriter,
  ans: Answer,
  q: Header,
  msg: Uint8Array,
  limit: number,
  snap: { udpPayload: number },
  cookie: Buffer | undefined,
  pointers?: number[],
): Buffer {
  const optLen = q.edns !== undefined ? optSize(cookie) : 0;
  w.reset(limit - optLen);
  w.pointers = pointers;
  w.u16(q.id);
  w.u16(0); // flags, patched below
  w.u16(q.questionEnd > 0 ? 1 : 0);
  w.u16(0);
  w.u16(0);
  w.u16(0);
  if (q.questionEnd > 0) {
    w.raw(msg, 12, q.questionEnd);
    const name = Buffer.from(msg.buffer, msg.byteOffset + 12, q.questionEnd - 16).toString('latin1');
    w.rememberName(name, 12);
  }
  const an = { n: 0 };
  const ns = { n: 0 };
  const ar = { n: 0 };
  let tc = false;
  if (!writeSection(w, ans.answer, ans.cls, an)) tc = true;
  else if (!writeSection(w, ans.authority, ans.cls, ns)) tc = true;
  else {
    const required = ans.additional.slice(0, ans.requiredAdditional);
    if (!writeSection(w, required, ans.cls, ar)) tc = true;
    else writeSection(w, ans.additional.slice(ans.requiredAdditional), ans.cls, ar);
  }
  w.limit += optLen;
  const rcode = ans.rcode & 0x0f;
  if (q.edns !== undefined) w.opt(snap.udpPayload, ans.rcode >> 4, q.edns.dnssecOk, cookie);
  const b = w.buf;
  b[2] = 0x80 | (q.opcode << 3) | (ans.aa ? 0x04 : 0) | (tc ? 0x02 : 0) | (q.rd ? 0x01 : 0);
  b[3] = (q.cd ? 0x10 : 0) | rcode;
  b.writeUInt16BE(an.n, 6);
  b.writeUInt16BE(ns.n, 8);
  b.writeUInt16BE(ar.n + (q.edns !== undefined ? 1 : 0), 10);
  return w.toBuffer();
}
