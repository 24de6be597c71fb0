// Response Rate Limiting for UDP, after BIND's and Knot's RRL: a server that
// answers spoofed queries is an amplifier pointed at whoever owns the forged
// source address, so identical responses to one client network are counted
// and, past a rate, dropped or "slipped" (sent truncated and empty, so a real
// resolver retries over TCP, which a spoofer cannot complete).
//
// Accounts live in a fixed-size table indexed by a seeded hash of (client
// prefix, kind, key): memory is bounded whatever an attacker sends, at the
// price that two flows landing in one slot share an account (see README.md).
// Only UDP is limited: a TCP answer goes to a source that completed a
// handshake, which is exactly what spoofing cannot do.

import { randomBytes } from 'node:crypto';
import type { Cidr } from '../../zones/service.js';
import { addressBytes } from '../wire/cookie.js';
import { skipName } from '../wire/name.js';

export interface RrlSettings {
  /** Identical non-error responses (and NODATA) per second per client prefix; 0 = no limit. */
  responsesPerSecond: number;
  /** NXDOMAIN responses per second per client prefix and zone; default responsesPerSecond, 0 = no limit. */
  nxdomainsPerSecond?: number;
  /** Error responses (REFUSED, FORMERR, ...) per second per client prefix; default responsesPerSecond, 0 = no limit. */
  errorsPerSecond?: number;
  /** Every slip-th limited response is sent truncated, the others are dropped; 0 = drop all, 1 = truncate all. */
  slip: number;
  /** Seconds a flood must stop (or fall below the rate) before responses resume: the account's debt is capped at rate × window. */
  windowS: number;
  ipv4Prefix: number;
  ipv6Prefix: number;
  /** Clients never limited (monitoring, your own resolvers). */
  allow: readonly Cidr[];
  /** Number of accounts; flows hashing to the same slot share one. */
  tableSize: number;
}

export type RrlAction = 'send' | 'drop' | 'slip';
export type RrlKind = 'answer' | 'nxdomain' | 'nodata' | 'error';

/** What makes responses "identical" for the limiter: see classifyAnswer. */
export interface RrlClass {
  readonly kind: RrlKind;
  readonly key: string;
}

/**
 * Defaults an operator gets for keys left out. Prefixes, window and slip are
 * BIND's; the rate and table size are ours (README.md says why).
 */
export const RRL_DEFAULTS = {
  responsesPerSecond: 20,
  slip: 2,
  windowS: 15,
  ipv4Prefix: 24,
  ipv6Prefix: 56,
  tableSize: 65536,
} as const;

/** Largest table accepted: 17 octets a slot, so about 70 MB. */
export const MAX_TABLE_SIZE = 1 << 22;
export const MAX_SLIP = 10;
export const MAX_WINDOW_S = 3600;

export class RrlSettingsError extends Error {
  override name = 'RrlSettingsError';
  constructor(
    message: string,
    readonly setting: keyof RrlSettings,
    readonly value: unknown,
  ) {
    super(message);
  }
}

function checkInt(s: RrlSettings, k: keyof RrlSettings, min: number, max: number): void {
  const v = s[k];
  if (v === undefined && (k === 'nxdomainsPerSecond' || k === 'errorsPerSecond')) return;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new RrlSettingsError(`rate limit ${k} must be an integer from ${min} to ${max}, not ${String(v)}`, k, v);
  }
}

const KIND_CODE: Readonly<Record<RrlKind, number>> = { answer: 1, nxdomain: 2, nodata: 3, error: 4 };

export class ResponseRateLimiter {
  readonly settings: Readonly<RrlSettings>;
  /** Responses dropped and slipped so far (for metrics). */
  dropped = 0;
  slipped = 0;

  private readonly credit: Float64Array;
  /** Time of the last response counted in each slot, ms; NaN = never used. */
  private readonly stamp: Float64Array;
  private readonly slipCount: Uint8Array;
  private readonly seed: number;
  private readonly rates: Readonly<Record<RrlKind, number>>;
  private readonly addr = new Uint8Array(16);

  /** `seed` fixes the slot hash (tests); by default it is random, so nobody can aim a collision at a victim's slot. */
  constructor(s: RrlSettings, seed?: number) {
    checkInt(s, 'responsesPerSecond', 0, 1_000_000);
    checkInt(s, 'nxdomainsPerSecond', 0, 1_000_000);
    checkInt(s, 'errorsPerSecond', 0, 1_000_000);
    checkInt(s, 'slip', 0, MAX_SLIP);
    checkInt(s, 'windowS', 1, MAX_WINDOW_S);
    checkInt(s, 'ipv4Prefix', 0, 32);
    checkInt(s, 'ipv6Prefix', 0, 128);
    checkInt(s, 'tableSize', 1, MAX_TABLE_SIZE);
    this.settings = { ...s, allow: [...s.allow] };
    this.rates = {
      answer: s.responsesPerSecond,
      nodata: s.responsesPerSecond,
      nxdomain: s.nxdomainsPerSecond ?? s.responsesPerSecond,
      error: s.errorsPerSecond ?? s.responsesPerSecond,
    };
    this.credit = new Float64Array(s.tableSize);
    this.stamp = new Float64Array(s.tableSize).fill(NaN);
    this.slipCount = new Uint8Array(s.tableSize);
    this.seed = seed ?? randomBytes(4).readUInt32LE(0);
  }

  /**
   * Counts one UDP response and says what to do with it. `client` is the
   * source address text (rinfo.address); `key` identifies "identical"
   * responses within `kind` (classifyAnswer makes both); `now` is in
   * milliseconds on any clock that does not go backwards (Date.now(),
   * performance.now()). Never call it for TCP.
   */
  check(client: string, kind: RrlKind, key: string, now: number): RrlAction {
    const rate = this.rates[kind];
    if (rate <= 0) return 'send';
    const family = addressBytes(client, this.addr);
    if (family !== 0 && this.isAllowed(family, this.addr)) return 'send';

    const i = this.slot(family, kind, key);
    const last = this.stamp[i]!;
    let c: number;
    if (Number.isNaN(last)) c = rate;
    else {
      const elapsed = now > last ? now - last : 0;
      c = Math.min(rate, this.credit[i]! + (rate * elapsed) / 1000);
    }
    c -= 1;
    // BIND's window: the debt is capped, so a flood that stops is forgiven after windowS seconds.
    const floor = -rate * this.settings.windowS;
    if (c < floor) c = floor;
    this.credit[i] = c;
    this.stamp[i] = Number.isNaN(last) || now > last ? now : last;
    if (c >= 0) return 'send';

    const slip = this.settings.slip;
    if (slip > 0) {
      const n = this.slipCount[i]! + 1;
      if (n >= slip) {
        this.slipCount[i] = 0;
        this.slipped++;
        return 'slip';
      }
      this.slipCount[i] = n;
    }
    this.dropped++;
    return 'drop';
  }

  /** True when `client` is on the allow list (such clients are never limited). */
  allowed(client: string): boolean {
    const family = addressBytes(client, this.addr);
    return family !== 0 && this.isAllowed(family, this.addr);
  }

  private isAllowed(family: 4 | 16, bytes: Uint8Array): boolean {
    const fam = family === 4 ? 4 : 6;
    for (const c of this.settings.allow) {
      if (c.family === fam && prefixMatch(c.bytes, bytes, c.prefix)) return true;
    }
    return false;
  }

  /** Seeded FNV-1a over (family, masked prefix, kind, key), finished with murmur3's mixer. */
  private slot(family: 0 | 4 | 16, kind: RrlKind, key: string): number {
    let h = this.seed ^ 0x811c9dc5;
    h = Math.imul(h ^ family, 0x01000193);
    const prefix = family === 4 ? this.settings.ipv4Prefix : family === 16 ? this.settings.ipv6Prefix : 0;
    const whole = prefix >> 3;
    for (let b = 0; b < whole; b++) h = Math.imul(h ^ this.addr[b]!, 0x01000193);
    const rest = prefix & 7;
    if (rest > 0) h = Math.imul(h ^ (this.addr[whole]! & ((0xff << (8 - rest)) & 0xff)), 0x01000193);
    h = Math.imul(h ^ KIND_CODE[kind], 0x01000193);
    for (let k = 0; k < key.length; k++) h = Math.imul(h ^ key.charCodeAt(k), 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return (h >>> 0) % this.credit.length;
  }
}

function prefixMatch(net: Uint8Array, bytes: Uint8Array, prefix: number): boolean {
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (net[i] !== bytes[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole]! & mask) === (net[whole]! & mask);
}

// ---------------------------------------------------------------------------
// What counts as "identical" (BIND's rules, which Knot's classes follow).

interface EntryLike {
  /** The owner written (the query name for wildcard synthesis). */
  readonly owner: string;
  readonly rrset: { readonly owner: string; readonly type: number };
}

/** The parts of resolve.ts's Answer the classification reads. */
export interface AnswerLike {
  readonly rcode: number;
  readonly aa: boolean;
  /** resolve.ts clears it on the wildcard and negative paths: a NOERROR answer that is not cacheable came from a wildcard. */
  readonly cacheable: boolean;
  readonly answer: readonly EntryLike[];
  readonly authority: readonly EntryLike[];
}

const NS = 2;
const NXDOMAIN = 3;
/** The class of every error response (REFUSED, FORMERR, NOTIMP, BADVERS...): one flow per client prefix. */
export const ERROR_CLASS: RrlClass = Object.freeze({ kind: 'error', key: '' });

/**
 * Kind and key of a response, for check():
 * - an answer: qname and qtype; a wildcard answer counts for the wildcard, so
 *   random names under `*.apps` are one flow, not millions;
 * - a referral: the delegation point, whatever the qtype;
 * - NODATA: the name, whatever the qtype (the zone when it came from a wildcard);
 * - NXDOMAIN: the zone (the SOA owner in authority), so a random-subdomain
 *   flood is one flow;
 * - any other rcode: one flow per client prefix, whatever the question.
 * `qname` is the lowercased name key, `qtype` the query type.
 */
export function classifyAnswer(ans: AnswerLike, qname: string, qtype: number): RrlClass {
  if (ans.rcode === NXDOMAIN) return { kind: 'nxdomain', key: ans.authority[0]?.owner ?? '' };
  if (ans.rcode !== 0) return ERROR_CLASS;
  const first = ans.answer[0];
  if (first !== undefined) {
    const owner = first.owner === first.rrset.owner ? qname : first.rrset.owner;
    return { kind: 'answer', key: owner + String.fromCharCode(qtype) };
  }
  const auth = ans.authority[0];
  if (!ans.aa && auth !== undefined && auth.rrset.type === NS) return { kind: 'answer', key: auth.owner };
  if (!ans.cacheable && auth !== undefined) return { kind: 'nodata', key: auth.owner };
  return { kind: 'nodata', key: qname };
}

// ---------------------------------------------------------------------------
// The slipped response.


/**
 * The slip response made from a full response: the header and question, TC=1,
 * AA and the rcode kept, no answer, authority or additional records except the
 * OPT (RFC 6891 7: a response to a query with OPT carries one; an extended
 * rcode lives there; and a COOKIE in it lets the client prove itself next
 * time). A real resolver retries over TCP; a spoofed victim gets a packet no
 * larger than the query. Bounded: one pass over the records, no pointer followed.
 */
export function slipResponse(response: Buffer): Buffer {
  if (response.length < 12) return Buffer.from(response);
  let qd = response.readUInt16BE(4) > 0 ? 1 : 0;
  let end = 12;
  if (qd === 1) {
    const n = skipName(response, 12);
    if (n < 0 || n + 4 > response.length) {
      qd = 0;
    } else end = n + 4;
  }
  let optStart = -1;
  let optEnd = -1;
  if (qd === 1 || response.readUInt16BE(4) === 0) {
    const total = response.readUInt16BE(6) + response.readUInt16BE(8) + response.readUInt16BE(10);
    let i = end;
    for (let n = 0; n < total; n++) {
      const start = i;
      i = skipName(response, i);
      if (i < 0 || i + 10 > response.length) break;
      const type = response.readUInt16BE(i);
      const next = i + 10 + response.readUInt16BE(i + 8);
      if (next > response.length) break;
      if (type === 41) {
        optStart = start;
        optEnd = next;
        break;
      }
      i = next;
    }
  }
  const optLen = optStart >= 0 ? optEnd - optStart : 0;
  const out = Buffer.allocUnsafe(end + optLen);
  response.copy(out, 0, 0, end);
  if (optLen > 0) response.copy(out, end, optStart, optEnd);
  out[2] = out[2]! | 0x02;
  out.writeUInt16BE(qd, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(optLen > 0 ? 1 : 0, 10);
  return out;
}
