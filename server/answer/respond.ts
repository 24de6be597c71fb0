// The answering function the transports call: query bytes + snapshot →
// response bytes (or nothing, for packets that deserve no answer). Pure with
// respect to the snapshot: the only state it touches is the snapshot's own
// memo of encoded answers and a scratch writer reused between calls.

import { CLASS, RCODE } from '../wire/constants.js';
import { parseQuery, type Edns, type Query } from '../wire/query.js';
import { MessageWriter, OPT_SIZE, MAX_MESSAGE, writeOptAt } from '../wire/writer.js';
import { resolve, type Answer, type Entry } from './resolve.js';
import { ANSWER_CACHE_LIMIT, type MemoEntry, type Snapshot, type ViewSnapshot } from './snapshot.js';

export type Transport = 'udp' | 'tcp';

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
  return { rcode, aa: false, cls, answer: [], authority: [], additional: [], requiredAdditional: 0, cacheable: false, variantCount: 1 };
}

/**
 * `client` is the source address; it selects the view (split horizon) when
 * the snapshot has more than one.
 */
export function respond(msg: Uint8Array, length: number, snap: Snapshot, transport: Transport, client = ''): Buffer | undefined {
  const q = parseQuery(msg, length);
  if (q.kind === 'drop') return undefined;
  if (q.kind === 'error') return encode(emptyAnswer(q.rcode, CLASS.IN), q, msg, CLASSIC_UDP_LIMIT, snap);
  const limit = responseLimit(q, snap, transport);
  // RFC 6891 6.1.3: we speak version 0 only; BADVERS tells the client to fall back.
  if (q.edns !== undefined && q.edns.version > 0) return encode(emptyAnswer(RCODE.BADVERS, q.qclass), q, msg, limit, snap);
  const viewIndex = snap.views.length === 1 ? 0 : snap.matchView(client);
  // A client no view admits gets nothing from any zone (views without a default are deliberate).
  if (viewIndex < 0) return encode(emptyAnswer(RCODE.REFUSED, q.qclass), q, msg, limit, snap);
  const view = snap.views[viewIndex]!;

  const cacheKey = q.qclass === CLASS.IN ? q.qname + String.fromCharCode(q.qtype) : undefined;
  const entry = cacheKey !== undefined ? view.answerCache.get(cacheKey) : undefined;
  // Consecutive queries for a name take consecutive alternatives (rotation, weighted draws, ramp shares).
  const pick = entry !== undefined ? entry.turn++ & 0x3fffffff : sequence++ & 0x3fffffff;
  if (entry !== undefined) {
    const hit = entry.slots[pick % entry.slots.length];
    if (hit !== undefined) {
      const out = fromCache(hit, q, msg, limit, snap);
      if (out !== undefined) return out;
    }
  }

  const ans = resolve(view, q.qname, q.qtype, q.qclass, pick);
  if (ans.cacheable && cacheKey !== undefined) {
    const full = memoise(view, cacheKey, entry, ans, q, msg, pick, snap);
    if (full !== undefined) {
      const out = fromCache(full, q, msg, limit, snap);
      if (out !== undefined) return out;
    }
  }
  return encode(ans, q, msg, limit, snap);
}

/** Stores the full answer (no OPT, RD/CD clear) in its slot; fromCache patches those per query. */
function memoise(
  view: ViewSnapshot,
  key: string,
  existing: MemoEntry | undefined,
  ans: Answer,
  q: Query,
  msg: Uint8Array,
  pick: number,
  snap: Snapshot,
): Buffer | undefined {
  let entry = existing;
  if (entry === undefined || entry.slots.length !== ans.variantCount) {
    if (view.answerCache.size >= ANSWER_CACHE_LIMIT) return undefined;
    entry = { slots: new Array<Buffer | undefined>(ans.variantCount), turn: pick + 1 };
    view.answerCache.set(key, entry);
  }
  const full = encodeInto(scratch, ans, { ...q, rd: false, cd: false, edns: undefined }, msg, MAX_MESSAGE, snap);
  entry.slots[pick % entry.slots.length] = full;
  return full;
}

/**
 * The fast path: copy the memoised message, then patch the ID, the flag bits
 * the client chose, the question's letter case (RFC 4343; 0x20 resolvers rely
 * on it), and append OPT. Undefined when it would not fit the client's limit,
 * so the slow path builds a truncated answer.
 */
function fromCache(hit: Buffer, q: Query, msg: Uint8Array, limit: number, snap: { udpPayload: number }): Buffer | undefined {
  const size = hit.length + (q.edns !== undefined ? OPT_SIZE : 0);
  if (size > limit) return undefined;
  const out = Buffer.allocUnsafe(size);
  hit.copy(out, 0);
  out[0] = msg[0]!;
  out[1] = msg[1]!;
  if (q.rd) out[2]! |= 0x01;
  if (q.cd) out[3]! |= 0x10;
  out.set(msg.subarray(12, q.questionEnd), 12);
  if (q.edns !== undefined) {
    writeOptAt(out, hit.length, snap.udpPayload, 0, q.edns.dnssecOk);
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

function encode(ans: Answer, q: Header, msg: Uint8Array, limit: number, snap: { udpPayload: number }): Buffer {
  return encodeInto(scratch, ans, q, msg, limit, snap);
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

function encodeInto(w: MessageWriter, ans: Answer, q: Header, msg: Uint8Array, limit: number, snap: { udpPayload: number }): Buffer {
  const optSize = q.edns !== undefined ? OPT_SIZE : 0;
  w.reset(limit - optSize);
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
  w.limit += optSize;
  const rcode = ans.rcode & 0x0f;
  if (q.edns !== undefined) w.opt(snap.udpPayload, ans.rcode >> 4, q.edns.dnssecOk);
  const b = w.buf;
  b[2] = 0x80 | (q.opcode << 3) | (ans.aa ? 0x04 : 0) | (tc ? 0x02 : 0) | (q.rd ? 0x01 : 0);
  b[3] = (q.cd ? 0x10 : 0) | rcode;
  b.writeUInt16BE(an.n, 6);
  b.writeUInt16BE(ns.n, 8);
  b.writeUInt16BE(ar.n + (q.edns !== undefined ? 1 : 0), 10);
  return w.toBuffer();
}
