// DNS Cookies (RFC 7873) with the interoperable server cookie of RFC 9018:
// Version 1 | Reserved 0 | Timestamp | SipHash-2-4(client cookie | version |
// reserved | timestamp | client IP) under a 16-octet server secret.
//
// Why RFC 9018 and not a private format: every server of an anycast set (or a
// Knot/BIND neighbour behind the same address) that shares the secret accepts
// the others' cookies, so a resolver does not get BADCOOKIE-style churn when
// its queries land on another node. Why SipHash here and not node:crypto: the
// RFC fixes SipHash-2-4, which node:crypto does not offer, and a cookie is
// computed per query, so it works in 32-bit halves without BigInt or any
// allocation beyond the option it returns.

import { randomBytes } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { parseIPv6 } from '../../zones/rdata-text.js';
import { DnsError } from './errors.js';

/** EDNS option code of COOKIE (RFC 7873 section 4). */
export const COOKIE_OPTION = 10;
export const CLIENT_COOKIE_LENGTH = 8;
/** Length of an RFC 9018 server cookie: version, reserved (3), timestamp (4), hash (8). */
export const SERVER_COOKIE_LENGTH = 16;
/** Our COOKIE option on the wire: code, length, client cookie, server cookie. */
export const COOKIE_OPTION_SIZE = 4 + CLIENT_COOKIE_LENGTH + SERVER_COOKIE_LENGTH;

/** RFC 9018 4.3: a cookie older than an hour, or more than five minutes ahead of our clock, is not ours any more. */
export const MAX_COOKIE_AGE_S = 3600;
export const MAX_COOKIE_SKEW_S = 300;

/**
 * The server secret. `previous` keeps cookies made before a rollover valid
 * until they age out (RFC 9018 section 5: keep the old secret for at least
 * the cookie lifetime, an hour).
 */
export interface CookieSecret {
  current: Buffer /* 16 bytes */;
  previous?: Buffer;
}

export class CookieError extends DnsError {
  override name = 'CookieError';
  constructor(
    message: string,
    readonly detail: { readonly what: string; readonly length: number },
  ) {
    super(message);
  }
}

/** A fresh random secret, for a server that is not configured with a shared one. */
export function generateCookieSecret(): CookieSecret {
  return { current: randomBytes(16) };
}

// ---------------------------------------------------------------------------
// SipHash-2-4 (Aumasson and Bernstein), 64-bit lanes as (hi, lo) pairs of
// unsigned 32-bit numbers. Module-level state: the function is synchronous
// and never re-entered, and locals in a closure would cost an allocation.

let v0h = 0, v0l = 0, v1h = 0, v1l = 0, v2h = 0, v2l = 0, v3h = 0, v3l = 0;

function sipRound(): void {
  let h: number;
  let l: number;
  // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
  l = (v0l + v1l) >>> 0;
  v0h = (v0h + v1h + (l < v0l ? 1 : 0)) >>> 0;
  v0l = l;
  h = ((v1h << 13) | (v1l >>> 19)) >>> 0;
  l = ((v1l << 13) | (v1h >>> 19)) >>> 0;
  v1h = (h ^ v0h) >>> 0;
  v1l = (l ^ v0l) >>> 0;
  h = v0h;
  v0h = v0l;
  v0l = h;
  // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
  l = (v2l + v3l) >>> 0;
  v2h = (v2h + v3h + (l < v2l ? 1 : 0)) >>> 0;
  v2l = l;
  h = ((v3h << 16) | (v3l >>> 16)) >>> 0;
  l = ((v3l << 16) | (v3h >>> 16)) >>> 0;
  v3h = (h ^ v2h) >>> 0;
  v3l = (l ^ v2l) >>> 0;
  // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
  l = (v0l + v3l) >>> 0;
  v0h = (v0h + v3h + (l < v0l ? 1 : 0)) >>> 0;
  v0l = l;
  h = ((v3h << 21) | (v3l >>> 11)) >>> 0;
  l = ((v3l << 21) | (v3h >>> 11)) >>> 0;
  v3h = (h ^ v0h) >>> 0;
  v3l = (l ^ v0l) >>> 0;
  // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
  l = (v2l + v1l) >>> 0;
  v2h = (v2h + v1h + (l < v2l ? 1 : 0)) >>> 0;
  v2l = l;
  h = ((v1h << 17) | (v1l >>> 15)) >>> 0;
  l = ((v1l << 17) | (v1h >>> 15)) >>> 0;
  v1h = (h ^ v2h) >>> 0;
  v1l = (l ^ v2l) >>> 0;
  h = v2h;
  v2h = v2l;
  v2l = h;
}

function le32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

function absorb(mh: number, ml: number): void {
  v3h = (v3h ^ mh) >>> 0;
  v3l = (v3l ^ ml) >>> 0;
  sipRound();
  sipRound();
  v0h = (v0h ^ mh) >>> 0;
  v0l = (v0l ^ ml) >>> 0;
}

/**
 * SipHash-2-4 of `data[0, length)` under a 16-octet key; the 64-bit result is
 * written to `out[at, at + 8)` little-endian, as the reference implementation
 * and RFC 9018 lay it out.
 */
export function sipHash24(key: Uint8Array, data: Uint8Array, out: Uint8Array, at = 0, length = data.length): void {
  if (key.length !== 16) throw new CookieError(`SipHash key must be 16 octets, not ${key.length}`, { what: 'key', length: key.length });
  const k0l = le32(key, 0), k0h = le32(key, 4), k1l = le32(key, 8), k1h = le32(key, 12);
  v0h = (k0h ^ 0x736f6d65) >>> 0;
  v0l = (k0l ^ 0x70736575) >>> 0;
  v1h = (k1h ^ 0x646f7261) >>> 0;
  v1l = (k1l ^ 0x6e646f6d) >>> 0;
  v2h = (k0h ^ 0x6c796765) >>> 0;
  v2l = (k0l ^ 0x6e657261) >>> 0;
  v3h = (k1h ^ 0x74656462) >>> 0;
  v3l = (k1l ^ 0x79746573) >>> 0;
  const whole = length - (length & 7);
  for (let i = 0; i < whole; i += 8) absorb(le32(data, i + 4), le32(data, i));
  // Last block: the remaining 0..7 octets, and the length's low octet in the top byte.
  let lastL = 0;
  let lastH = (length & 0xff) << 24;
  for (let i = whole, shift = 0; i < length; i++, shift += 8) {
    if (shift < 32) lastL |= data[i]! << shift;
    else lastH |= data[i]! << (shift - 32);
  }
  absorb(lastH >>> 0, lastL >>> 0);
  v2l = (v2l ^ 0xff) >>> 0;
  sipRound();
  sipRound();
  sipRound();
  sipRound();
  const rh = (v0h ^ v1h ^ v2h ^ v3h) >>> 0;
  const rl = (v0l ^ v1l ^ v2l ^ v3l) >>> 0;
  out[at] = rl & 0xff;
  out[at + 1] = (rl >>> 8) & 0xff;
  out[at + 2] = (rl >>> 16) & 0xff;
  out[at + 3] = rl >>> 24;
  out[at + 4] = rh & 0xff;
  out[at + 5] = (rh >>> 8) & 0xff;
  out[at + 6] = (rh >>> 16) & 0xff;
  out[at + 7] = rh >>> 24;
}

// ---------------------------------------------------------------------------
// Client addresses, as the cookie hash and the rate limiter see them.

function v4Into(text: string, from: number, out: Uint8Array): boolean {
  let part = 0;
  let digits = 0;
  let k = 0;
  for (let i = from; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || part > 255 || k > 3) return false;
      out[k++] = part;
      part = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39 && digits < 3) {
      part = part * 10 + (c - 0x30);
      digits++;
    } else return false;
  }
  return k === 4;
}

/**
 * Writes the address octets of `client` (rinfo.address / socket.remoteAddress
 * text) into `out` (16 octets of room) and returns 4, 16, or 0 when it does
 * not parse. An IPv4 client on a dual-stack socket ("::ffff:192.0.2.1") is 4
 * octets: it is the same client whichever socket it reached, and its cookie
 * must verify on either. A zone index ("fe80::1%eth0") is dropped.
 */
export function addressBytes(client: string, out: Uint8Array): 0 | 4 | 16 {
  if (v4Into(client, 0, out)) return 4;
  if (client.length > 7 && client.slice(0, 7).toLowerCase() === '::ffff:' && isIPv4(client.slice(7))) {
    return v4Into(client, 7, out) ? 4 : 0;
  }
  const zone = client.indexOf('%');
  try {
    out.set(parseIPv6(zone >= 0 ? client.slice(0, zone) : client));
    return 16;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------
// Server cookies.

/** Hash input: client cookie 8 | version 1 | reserved 3 | timestamp 4 | address 4 or 16. */
const input = new Uint8Array(8 + 8 + 16);
const addr = new Uint8Array(16);
const mac = new Uint8Array(8);

/** Fills `input` from the client cookie, the 8 header octets of a server cookie, and the address; returns its length. */
function fillInput(clientCookie: Uint8Array, header: Uint8Array, headerAt: number, clientIp: string): number {
  input.set(clientCookie.subarray(0, CLIENT_COOKIE_LENGTH), 0);
  for (let i = 0; i < 8; i++) input[8 + i] = header[headerAt + i]!;
  const n = addressBytes(clientIp, addr);
  // An address that does not parse (only a caller without a socket, such as a
  // test calling respond() directly) is hashed as no address: still bound to
  // the secret and the client cookie, and never equal to a real client's.
  for (let i = 0; i < n; i++) input[16 + i] = addr[i]!;
  return 16 + n;
}

function checkSecret(s: Buffer | undefined, what: string): void {
  if (s !== undefined && s.length !== 16) throw new CookieError(`cookie ${what} secret must be 16 octets, not ${s.length}`, { what, length: s.length });
}

/**
 * Builds the COOKIE option (code 10) for a response: the query's client
 * cookie and a fresh RFC 9018 server cookie stamped `nowS` (Unix seconds),
 * made with the current secret. 28 octets including the option header.
 */
export function serverCookieOption(clientCookie: Uint8Array, clientIp: string, secret: CookieSecret, nowS: number): Buffer {
  if (clientCookie.length !== CLIENT_COOKIE_LENGTH) {
    throw new CookieError(`a client cookie is 8 octets, not ${clientCookie.length}`, { what: 'client cookie', length: clientCookie.length });
  }
  checkSecret(secret.current, 'current');
  const out = Buffer.allocUnsafe(COOKIE_OPTION_SIZE);
  out.writeUInt16BE(COOKIE_OPTION, 0);
  out.writeUInt16BE(CLIENT_COOKIE_LENGTH + SERVER_COOKIE_LENGTH, 2);
  out.set(clientCookie, 4);
  out[12] = 1; // version
  out[13] = 0;
  out[14] = 0;
  out[15] = 0;
  // RFC 9018 4.3: serial-number arithmetic on the low 32 bits, so 2106 is not a cliff.
  out.writeUInt32BE(Math.floor(nowS) >>> 0, 16);
  const len = fillInput(clientCookie, out, 12, clientIp);
  sipHash24(secret.current, input, out, 20, len);
  return out;
}

/**
 * True when `serverCookie` is one we made for this client cookie and address:
 * a version-1 RFC 9018 cookie whose hash verifies under the current or the
 * previous secret, stamped at most an hour before `nowS` and at most five
 * minutes after it (RFC 9018 4.3). The reserved octets are hashed as
 * received, not required to be zero (RFC 9018 4.2 reserves them for later use).
 */
export function validServerCookie(
  clientCookie: Uint8Array,
  serverCookie: Uint8Array,
  clientIp: string,
  secret: CookieSecret,
  nowS: number,
): boolean {
  if (clientCookie.length !== CLIENT_COOKIE_LENGTH || serverCookie.length !== SERVER_COOKIE_LENGTH) return false;
  if (serverCookie[0] !== 1) return false;
  const stamp = ((serverCookie[4]! << 24) | (serverCookie[5]! << 16) | (serverCookie[6]! << 8) | serverCookie[7]!) >>> 0;
  const age = ((Math.floor(nowS) >>> 0) - stamp) | 0; // signed 32-bit difference: serial arithmetic
  if (age > MAX_COOKIE_AGE_S || age < -MAX_COOKIE_SKEW_S) return false;
  checkSecret(secret.current, 'current');
  checkSecret(secret.previous, 'previous');
  const len = fillInput(clientCookie, serverCookie, 0, clientIp);
  sipHash24(secret.current, input, mac, 0, len);
  if (sameMac(mac, serverCookie)) return true;
  if (secret.previous === undefined) return false;
  sipHash24(secret.previous, input, mac, 0, len);
  return sameMac(mac, serverCookie);
}

/** Compares without an early exit, so response timing says nothing about how many octets matched. */
function sameMac(computed: Uint8Array, serverCookie: Uint8Array): boolean {
  let diff = 0;
  for (let i = 0; i < 8; i++) diff |= computed[i]! ^ serverCookie[8 + i]!;
  return diff === 0;
}

/** Where parseQuery found the COOKIE option's data (query.ts Edns). */
interface CookieFields {
  readonly cookieAt?: number;
  readonly cookieLength?: number;
}

/** The client cookie of a parsed query (a view into `msg`, no copy), or undefined. */
export function clientCookieOf(msg: Uint8Array, edns: CookieFields | undefined): Uint8Array | undefined {
  const at = edns?.cookieAt;
  if (at === undefined) return undefined;
  return msg.subarray(at, at + CLIENT_COOKIE_LENGTH);
}

/** The server cookie a query presented (a view into `msg`), or undefined when it sent a client cookie only. */
export function serverCookieOf(msg: Uint8Array, edns: CookieFields | undefined): Uint8Array | undefined {
  const at = edns?.cookieAt;
  const len = edns?.cookieLength ?? 0;
  if (at === undefined || len <= CLIENT_COOKIE_LENGTH) return undefined;
  return msg.subarray(at + CLIENT_COOKIE_LENGTH, at + len);
}
