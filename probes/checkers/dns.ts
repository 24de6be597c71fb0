// DNS-over-UDP checks. The query is built by hand and the reply is only
// partly parsed (header, then a scan of the answer section for one address):
// a probe needs "did this server answer, with what rcode, and does it hand out
// the address I expect", not a general DNS decoder.

import { createSocket, type Socket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { RCODE } from '../../server/wire/constants.js';
import { CheckerSpecError, classifyError, runCheck, validatePort, validateTimeout, type Checker } from './types.js';

// The IANA registry lives in one place; probes read it, never copy it.
export const RCODES = RCODE;
export type RcodeName = keyof typeof RCODES;

export const QTYPES = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33 } as const;
export type QtypeName = keyof typeof QTYPES;

const CLASS_IN = 1;

export interface DnsCheckSpec {
  /** IP address of the DNS server to probe. */
  readonly address: string;
  /** Default 53. */
  readonly port?: number;
  /** Query name, dotted ("www.example.test" or "www.example.test."). No escapes. */
  readonly name: string;
  /** Default A, or AAAA when expect_answer is an IPv6 address. */
  readonly qtype?: QtypeName | number;
  /** Default NOERROR. */
  readonly expect_rcode?: RcodeName | number;
  /** An IPv4/IPv6 address that must appear as A/AAAA rdata in the answer section. */
  readonly expect_answer?: string;
  /** Default false: Vigil probes authoritative servers, which must answer without recursion. */
  readonly recursion_desired?: boolean;
  readonly timeout_ms: number;
}

/** Thrown inside the reply parser; surfaces as the "malformed reply" reason. */
export class DnsReplyError extends Error {
  override name = 'DnsReplyError';
}

const RCODE_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(RCODES).map(([k, v]) => [v, k]));

function rcodeName(rcode: number): string {
  return RCODE_NAMES.get(rcode) ?? `RCODE${rcode}`;
}

/** Encodes a dotted name to uncompressed wire form; throws CheckerSpecError. */
export function encodeName(name: string): Buffer {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const parts: Buffer[] = [];
  if (trimmed !== '') {
    for (const label of trimmed.split('.')) {
      const bytes = Buffer.from(label, 'ascii');
      if (bytes.length === 0) throw new CheckerSpecError(`dns check: empty label in ${JSON.stringify(name)}`);
      if (bytes.length > 63) throw new CheckerSpecError(`dns check: label longer than 63 bytes in ${JSON.stringify(name)}`);
      if (/[^\x21-\x7e]/.test(label)) throw new CheckerSpecError(`dns check: unsupported character in ${JSON.stringify(name)}`);
      parts.push(Buffer.from([bytes.length]), bytes);
    }
  }
  parts.push(Buffer.from([0]));
  const wire = Buffer.concat(parts);
  if (wire.length > 255) throw new CheckerSpecError(`dns check: name longer than 255 bytes: ${JSON.stringify(name)}`);
  return wire;
}

/** Address text to its 4 or 16 rdata bytes. Expects an address net.isIP accepts. */
export function addressBytes(address: string): Buffer {
  if (isIPv4(address)) return Buffer.from(address.split('.').map(Number));
  if (!isIPv6(address)) throw new CheckerSpecError(`not an IP address: ${JSON.stringify(address)}`);
  let text = address;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  let tail: number[] = [];
  // A trailing dotted quad ("::ffff:192.0.2.1") stands for the last two groups.
  const lastColon = text.lastIndexOf(':');
  const maybeV4 = text.slice(lastColon + 1);
  if (maybeV4.includes('.')) {
    tail = maybeV4.split('.').map(Number);
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = text.split('::');
  const groups = (s: string | undefined): number[] => (s === undefined || s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const head = groups(halves[0]);
  const rest = halves.length > 1 ? groups(halves[1]) : [];
  const fill = halves.length > 1 ? new Array<number>(8 - head.length - rest.length).fill(0) : [];
  const all = [...head, ...fill, ...rest];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  if (tail.length === 4) out.set(tail, 12);
  return out;
}

/** Builds the query message: 12-byte header and one question, no EDNS. */
export function buildQuery(id: number, qname: Buffer, qtype: number, rd: boolean): Buffer {
  const msg = Buffer.alloc(12 + qname.length + 4);
  msg.writeUInt16BE(id, 0);
  msg.writeUInt16BE(rd ? 0x0100 : 0, 2);
  msg.writeUInt16BE(1, 4);
  qname.copy(msg, 12);
  msg.writeUInt16BE(qtype, 12 + qname.length);
  msg.writeUInt16BE(CLASS_IN, 14 + qname.length);
  return msg;
}

/**
 * Returns the offset just past a (possibly compressed) name. Skipping never
 * follows a pointer, so a malicious pointer loop cannot trap it.
 */
export function skipName(msg: Buffer, offset: number): number {
  let off = offset;
  for (;;) {
    const len = msg[off];
    if (len === undefined) throw new DnsReplyError('name runs past the end of the message');
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= msg.length) throw new DnsReplyError('truncated compression pointer');
      return off + 2;
    }
    if ((len & 0xc0) !== 0) throw new DnsReplyError(`unsupported label type 0x${len.toString(16)}`);
    if (len === 0) return off + 1;
    off += 1 + len;
  }
}

export interface ReplySummary {
  readonly id: number;
  readonly rcode: number;
  readonly ancount: number;
  /** True when `expected` was given and found as A/AAAA rdata in the answer section. */
  readonly found: boolean;
}

/** Parses what the checker needs from a reply; throws DnsReplyError when malformed. */
export function summarizeReply(msg: Buffer, expected?: Buffer): ReplySummary {
  if (msg.length < 12) throw new DnsReplyError('shorter than a DNS header');
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if ((flags & 0x8000) === 0) throw new DnsReplyError('QR bit not set');
  const rcode = flags & 0x000f;
  const qdcount = msg.readUInt16BE(4);
  const ancount = msg.readUInt16BE(6);
  let found = false;
  if (expected !== undefined) {
    let off = 12;
    for (let i = 0; i < qdcount; i++) off = skipName(msg, off) + 4;
    const wantType = expected.length === 4 ? QTYPES.A : QTYPES.AAAA;
    for (let i = 0; i < ancount && !found; i++) {
      off = skipName(msg, off);
      if (off + 10 > msg.length) throw new DnsReplyError('truncated resource record');
      const type = msg.readUInt16BE(off);
      const klass = msg.readUInt16BE(off + 2);
      const rdlength = msg.readUInt16BE(off + 8);
      const rdata = off + 10;
      if (rdata + rdlength > msg.length) throw new DnsReplyError('rdata runs past the end of the message');
      if (type === wantType && klass === CLASS_IN && rdlength === expected.length && expected.equals(msg.subarray(rdata, rdata + rdlength))) {
        found = true;
      }
      off = rdata + rdlength;
    }
  }
  return { id, rcode, ancount, found };
}

function resolveCode<T extends Record<string, number>>(table: T, value: keyof T | number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 65535) throw new CheckerSpecError(`${what}: ${value} out of range`);
    return value;
  }
  const code = table[value];
  if (code === undefined) throw new CheckerSpecError(`${what}: unknown ${String(value)}`);
  return code;
}

/** Builds a DNS/UDP checker; throws CheckerSpecError on an invalid spec. */
export function dnsChecker(spec: DnsCheckSpec): Checker {
  const what = `dns check ${spec.address}`;
  const family = isIP(spec.address);
  if (family === 0) throw new CheckerSpecError(`${what}: address must be an IP address`);
  const port = validatePort(spec.port ?? 53, what);
  const timeoutMs = validateTimeout(spec.timeout_ms, what);
  const qname = encodeName(spec.name);
  let expected: Buffer | undefined;
  if (spec.expect_answer !== undefined) {
    if (isIP(spec.expect_answer) === 0) throw new CheckerSpecError(`${what}: expect_answer must be an IP address`);
    expected = addressBytes(spec.expect_answer);
  }
  const defaultType = expected?.length === 16 ? QTYPES.AAAA : QTYPES.A;
  const qtype = resolveCode(QTYPES, spec.qtype, defaultType, `${what}: qtype`);
  if (expected !== undefined && (qtype === QTYPES.A || qtype === QTYPES.AAAA) && qtype !== (expected.length === 4 ? QTYPES.A : QTYPES.AAAA)) {
    throw new CheckerSpecError(`${what}: expect_answer family does not match qtype`);
  }
  const wantRcode = resolveCode(RCODES, spec.expect_rcode, RCODES.NOERROR, `${what}: expect_rcode`);
  if (wantRcode > 15) throw new CheckerSpecError(`${what}: expect_rcode must fit the 4-bit header field (no EDNS)`);
  const rd = spec.recursion_desired ?? false;

  return (signal) =>
    runCheck(signal, timeoutMs, (finish, onCleanup) => {
      // A fresh random ID and socket per query: the connected socket only
      // accepts datagrams from the server's address, and the ID rejects
      // late replies to an earlier, timed-out query.
      const id = randomInt(0, 0x10000);
      const query = buildQuery(id, qname, qtype, rd);
      const socket: Socket = createSocket(family === 6 ? 'udp6' : 'udp4');
      onCleanup(() => socket.close());
      // On Linux a connected UDP socket reports ICMP port unreachable as
      // ECONNREFUSED, so a dead server fails fast instead of timing out.
      socket.on('error', (err) => finish(false, classifyError(err)));
      socket.on('message', (msg: Buffer) => {
        if (msg.length < 2 || msg.readUInt16BE(0) !== id) return;
        let reply: ReplySummary;
        try {
          reply = summarizeReply(msg, expected);
        } catch (err) {
          return finish(false, err instanceof DnsReplyError ? 'malformed reply' : classifyError(err));
        }
        if (reply.rcode !== wantRcode) return finish(false, `dns ${rcodeName(reply.rcode)}`);
        if (expected !== undefined && !reply.found) return finish(false, 'answer mismatch');
        finish(true, `dns ${rcodeName(reply.rcode)}`);
      });
      socket.connect(port, spec.address, () => socket.send(query));
    });
}
