// Presentation-format rdata (RFC 1035 section 5, RFC 3597) to and from the
// uncompressed wire rdata that ZoneRecord stores.
//
// Fields arrive already tokenized by the master-file lexer, with backslash
// escapes still in place: names are handed to parseName as written (it owns
// name escapes), and character-strings are unescaped here. A field remembers
// whether it was quoted because `\#` only introduces generic rdata when bare,
// and names and numbers are never quoted.

import { isIPv4, isIPv6 } from 'node:net';
import { DnsError } from '../server/wire/errors.js';
import { TYPE, TYPE_NAMES } from '../server/wire/constants.js';
import { formatName, parseName, readUncompressedName } from '../server/wire/name.js';

/** One rdata token: raw text (escapes not yet decoded; quotes removed) and whether it was quoted. */
export interface RdataField {
  readonly text: string;
  readonly quoted: boolean;
}

/** A bare string is an unquoted field. */
export type RdataInput = string | RdataField;

/** RFC 2181 section 8: TTLs are 31-bit. */
export const MAX_TTL = 0x7fffffff;
const MAX_U32 = 0xffffffff;
const MAX_RDATA = 0xffff;
const MAX_CHARSTRING = 255;

// Mnemonics Vigil has no presentation parser for but that zone files commonly
// name; knowing them lets "TLSA \# ..." load and gives a better error than
// "unknown type" when their native syntax is used.
const EXTRA_TYPES: Readonly<Record<string, number>> = {
  NULL: 10,
  RP: 17,
  AFSDB: 18,
  SIG: 24,
  KEY: 25,
  LOC: 29,
  NAPTR: 35,
  KX: 36,
  CERT: 37,
  APL: 42,
  SSHFP: 44,
  IPSECKEY: 45,
  DHCID: 49,
  NSEC3PARAM: 51,
  TLSA: 52,
  SMIMEA: 53,
  HIP: 55,
  CDS: 59,
  CDNSKEY: 60,
  OPENPGPKEY: 61,
  CSYNC: 62,
  ZONEMD: 63,
  SVCB: 64,
  HTTPS: 65,
  SPF: 99,
  EUI48: 108,
  EUI64: 109,
  URI: 256,
};

const TYPE_BY_MNEMONIC: ReadonlyMap<string, number> = new Map([...Object.entries(TYPE), ...Object.entries(EXTRA_TYPES)]);
const MNEMONIC_BY_TYPE: ReadonlyMap<number, string> = new Map([
  ...Object.entries(EXTRA_TYPES).map(([k, v]): [number, string] => [v, k]),
  ...TYPE_NAMES,
]);

function mnemonic(type: number): string {
  return MNEMONIC_BY_TYPE.get(type) ?? `TYPE${type}`;
}

/** "A", "aaaa", "TYPE65534" to a type number. Unknown mnemonics are an error, never a guess. */
export function typeFromText(text: string): number {
  const upper = text.toUpperCase();
  const known = TYPE_BY_MNEMONIC.get(upper);
  if (known !== undefined) return known;
  if (upper.startsWith('TYPE')) {
    const digits = upper.slice(4);
    if (isDigits(digits) && digits.length <= 5) {
      const v = Number(digits);
      if (v <= 0xffff) return v;
    }
    throw new DnsError(`bad type "${text}": TYPEnnn needs a number from 0 to 65535`);
  }
  throw new DnsError(`unknown record type "${text}" (write TYPEnnn with RFC 3597 \\# rdata for types without a mnemonic)`);
}

/** TTL in seconds: digits, or BIND units ("1h30m", "2W", "1d12h"); at most 2^31-1. */
export function parseTtl(text: string): number {
  return parseDuration(text, MAX_TTL, 'TTL');
}

// BIND's rules (lib/dns/ttl.c): each component is digits plus a unit; a bare
// number is only allowed alone, so "1h30" is rejected rather than guessed at.
function parseDuration(text: string, max: number, what: string): number {
  const unitSeconds: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  if (text.length === 0) throw new DnsError(`empty ${what}`);
  let total = 0;
  let sawUnit = false;
  let i = 0;
  while (i < text.length) {
    const start = i;
    while (i < text.length && isDigitCode(text.charCodeAt(i))) i++;
    if (i === start) throw new DnsError(`bad ${what} "${text}": expected digits at "${text.slice(start)}"`);
    const n = Number(text.slice(start, i));
    if (i === text.length) {
      if (sawUnit) throw new DnsError(`bad ${what} "${text}": the last number needs a unit (s, m, h, d or w)`);
      total = n;
      break;
    }
    const mult = unitSeconds[text.charAt(i).toLowerCase()];
    if (mult === undefined) throw new DnsError(`bad ${what} "${text}": unknown unit "${text.charAt(i)}" (use s, m, h, d or w)`);
    total += n * mult;
    sawUnit = true;
    i++;
  }
  if (total > max) throw new DnsError(`bad ${what} "${text}": more than ${max} seconds`);
  return total;
}

function isDigitCode(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isDigits(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isDigitCode(s.charCodeAt(i))) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Building rdata

class ByteWriter {
  private buf = new Uint8Array(32);
  private len = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf[this.len++] = v >>> 8;
    this.buf[this.len++] = v & 0xff;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf[this.len++] = v >>> 24;
    this.buf[this.len++] = (v >>> 16) & 0xff;
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  /** A name key is already uncompressed wire form, one byte per char. */
  key(k: string): void {
    this.ensure(k.length);
    for (let i = 0; i < k.length; i++) this.buf[this.len++] = k.charCodeAt(i);
  }

  done(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** A cursor over one record's fields that produces errors naming the type and the field. */
class Fields {
  private i = 0;
  constructor(
    readonly typeName: string,
    private readonly list: readonly RdataField[],
    private readonly origin: string,
  ) {}

  fail(what: string, text: string, why: string): never {
    throw new DnsError(`${this.typeName}: bad ${what} "${text}": ${why}`);
  }

  more(): boolean {
    return this.i < this.list.length;
  }

  next(what: string): RdataField {
    const f = this.list[this.i];
    if (f === undefined) throw new DnsError(`${this.typeName}: missing ${what}`);
    this.i++;
    return f;
  }

  /** Names and numbers are never quoted in presentation format. */
  bare(what: string): string {
    const f = this.next(what);
    if (f.quoted) this.fail(what, f.text, 'must not be quoted');
    return f.text;
  }

  end(): void {
    const f = this.list[this.i];
    if (f !== undefined) throw new DnsError(`${this.typeName}: unexpected extra field "${f.text}"`);
  }

  name(what: string): string {
    const text = this.bare(what);
    try {
      return parseName(text, this.origin);
    } catch (e) {
      if (e instanceof DnsError) this.fail(what, text, e.message);
      throw e;
    }
  }

  uint(what: string, max: number): number {
    const text = this.bare(what);
    if (!isDigits(text)) this.fail(what, text, `must be a number from 0 to ${max}`);
    const v = Number(text);
    if (v > max) this.fail(what, text, `must be a number from 0 to ${max}`);
    return v;
  }

  duration(what: string): number {
    const text = this.bare(what);
    try {
      return parseDuration(text, MAX_U32, what);
    } catch (e) {
      if (e instanceof DnsError) throw new DnsError(`${this.typeName}: ${e.message}`);
      throw e;
    }
  }

  text(what: string, maxLength: number): Uint8Array {
    const f = this.next(what);
    let bytes: Uint8Array;
    try {
      bytes = unescapeText(f.text);
    } catch (e) {
      if (e instanceof DnsError) this.fail(what, f.text, e.message);
      throw e;
    }
    if (bytes.length > maxLength) this.fail(what, f.text, `${bytes.length} octets, the limit is ${maxLength}`);
    return bytes;
  }
}

/**
 * Decodes \X and \DDD. Characters outside ASCII are written as UTF-8, which
 * assumes the caller decoded the file as UTF-8; \DDD always gives the raw octet.
 */
function unescapeText(s: string): Uint8Array {
  if (s.indexOf('\\') < 0) return Buffer.from(s, 'utf8');
  const w = new ByteWriter();
  let run = 0; // start of the pending run of plain characters
  let i = 0;
  while (i < s.length) {
    if (s.charCodeAt(i) !== 0x5c) {
      i++;
      continue;
    }
    if (i > run) w.bytes(Buffer.from(s.slice(run, i), 'utf8'));
    if (i + 1 >= s.length) throw new DnsError('dangling backslash');
    if (isDigitCode(s.charCodeAt(i + 1))) {
      const digits = s.slice(i + 1, i + 4);
      if (digits.length !== 3 || !isDigits(digits)) throw new DnsError('\\DDD escape needs exactly three digits');
      const v = Number(digits);
      if (v > 255) throw new DnsError(`\\${digits} is over 255`);
      w.u8(v);
      i += 4;
    } else {
      // One code point, which may be a surrogate pair.
      const cp = s.codePointAt(i + 1)!;
      const width = cp > 0xffff ? 2 : 1;
      w.bytes(Buffer.from(s.slice(i + 1, i + 1 + width), 'utf8'));
      i += 1 + width;
    }
    run = i;
  }
  if (i > run) w.bytes(Buffer.from(s.slice(run, i), 'utf8'));
  return w.done();
}

/** Octets of an address that isIPv4 has accepted (so: four decimal parts, each 0-255). */
function ipv4Bytes(text: string): number[] {
  const out = [0, 0, 0, 0];
  let part = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) part++;
    else out[part] = out[part]! * 10 + (c - 0x30);
  }
  return out;
}

/** RFC 4291 section 2.2 text forms: full, "::"-compressed, and with a trailing dotted IPv4. */
export function parseIPv6(text: string): Uint8Array {
  // isIPv6 accepts zone ids ("fe80::1%eth0"), which have no meaning in zone data.
  if (!isIPv6(text) || text.includes('%')) throw new DnsError(`"${text}" is not an IPv6 address`);
  const gap = text.indexOf('::');
  const headText = gap < 0 ? text : text.slice(0, gap);
  const tailText = gap < 0 ? '' : text.slice(gap + 2);
  const head = headText === '' ? [] : headText.split(':');
  const tail = tailText === '' ? [] : tailText.split(':');
  const words = (groups: string[]): number[] => {
    const out: number[] = [];
    for (const g of groups) {
      if (g.includes('.')) {
        if (!isIPv4(g)) throw new DnsError(`"${text}" has a bad embedded IPv4 address`);
        const b = ipv4Bytes(g);
        out.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new DnsError(`"${text}" has a bad group "${g}"`);
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const hw = words(head);
  const tw = words(tail);
  const total = hw.length + tw.length;
  if (gap < 0 ? total !== 8 : total > 7) throw new DnsError(`"${text}" does not have 8 groups`);
  const out = new Uint8Array(16);
  hw.forEach((v, i) => {
    out[i * 2] = v >>> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  tw.forEach((v, i) => {
    const at = (8 - tw.length + i) * 2;
    out[at] = v >>> 8;
    out[at + 1] = v & 0xff;
  });
  return out;
}

type RdataParser = (f: Fields, w: ByteWriter) => void;

function oneName(f: Fields, w: ByteWriter): void {
  w.key(f.name('target name'));
}

function charStrings(f: Fields, w: ByteWriter): void {
  if (!f.more()) f.next('character-string');
  for (let n = 1; f.more(); n++) {
    const b = f.text(`string ${n}`, MAX_CHARSTRING);
    w.u8(b.length);
    w.bytes(b);
  }
}

function isAlnum(c: number): boolean {
  return isDigitCode(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

function validCaaTag(tag: Uint8Array): boolean {
  if (tag.length < 1 || tag.length > 15) return false;
  for (const c of tag) if (!isAlnum(c)) return false;
  return true;
}

const PARSERS: ReadonlyMap<number, RdataParser> = new Map<number, RdataParser>([
  [
    TYPE.A,
    (f, w) => {
      const text = f.bare('address');
      if (!isIPv4(text)) f.fail('address', text, 'not a dotted-quad IPv4 address');
      for (const b of ipv4Bytes(text)) w.u8(b);
    },
  ],
  [
    TYPE.AAAA,
    (f, w) => {
      const text = f.bare('address');
      try {
        w.bytes(parseIPv6(text));
      } catch (e) {
        if (e instanceof DnsError) f.fail('address', text, 'not an IPv6 address');
        throw e;
      }
    },
  ],
  [TYPE.NS, oneName],
  [TYPE.CNAME, oneName],
  [TYPE.PTR, oneName],
  [TYPE.DNAME, oneName],
  [
    TYPE.MX,
    (f, w) => {
      w.u16(f.uint('preference', 0xffff));
      w.key(f.name('exchange'));
    },
  ],
  [
    TYPE.SOA,
    (f, w) => {
      w.key(f.name('mname'));
      w.key(f.name('rname'));
      // BIND takes the serial as a plain number and the four timers with units.
      w.u32(f.uint('serial', MAX_U32));
      for (const what of ['refresh', 'retry', 'expire', 'minimum']) w.u32(f.duration(what));
    },
  ],
  [
    TYPE.SRV,
    (f, w) => {
      w.u16(f.uint('priority', 0xffff));
      w.u16(f.uint('weight', 0xffff));
      w.u16(f.uint('port', 0xffff));
      w.key(f.name('target'));
    },
  ],
  [TYPE.TXT, charStrings],
  [
    TYPE.HINFO,
    (f, w) => {
      for (const what of ['cpu', 'os']) {
        const b = f.text(what, MAX_CHARSTRING);
        w.u8(b.length);
        w.bytes(b);
      }
    },
  ],
  [
    TYPE.CAA,
    (f, w) => {
      w.u8(f.uint('flags', 0xff));
      const tag = caaTag(f, f.next('tag'));
      w.u8(tag.length);
      w.bytes(tag);
      // RFC 8659: the value runs to the end of the rdata, so no 255 limit.
      w.bytes(f.text('value', MAX_RDATA));
    },
  ],
]);

function caaTag(f: Fields, field: RdataField): Uint8Array {
  let tag: Uint8Array;
  try {
    tag = unescapeText(field.text);
  } catch {
    tag = new Uint8Array();
  }
  if (!validCaaTag(tag)) f.fail('tag', field.text, 'must be 1 to 15 ASCII letters and digits');
  return tag;
}

/** RFC 3597 section 5: `\# <length> <hex>...`, hex optionally split across fields. */
function parseGeneric(f: Fields): Uint8Array {
  const length = f.uint('generic rdata length', MAX_RDATA);
  const parts: string[] = [];
  while (f.more()) {
    const text = f.bare('generic rdata hex');
    if (!/^[0-9a-fA-F]+$/.test(text)) f.fail('generic rdata hex', text, 'not hexadecimal');
    parts.push(text);
  }
  const hex = parts.join('');
  if (hex.length % 2 !== 0) throw new DnsError(`${f.typeName}: generic rdata hex has an odd number of digits`);
  if (hex.length / 2 !== length) {
    throw new DnsError(`${f.typeName}: generic rdata length is ${length} but the hex gives ${hex.length / 2} octets`);
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** Types that never belong in zone data: RFC 6895 section 3.1 reserved and meta/query ranges, and OPT. */
function isStorableType(type: number): boolean {
  return type !== 0 && type !== TYPE.OPT && !(type >= 128 && type <= 255) && type !== 0xffff;
}

function toField(f: RdataInput): RdataField {
  return typeof f === 'string' ? { text: f, quoted: false } : f;
}

/**
 * Presentation rdata fields to uncompressed wire rdata. `origin` (a name key)
 * completes relative names; embedded names keep the case they were written in.
 * Throws DnsError naming the type and the offending field.
 */
export function parseRdata(type: number, fields: readonly RdataInput[], origin: string): Uint8Array {
  if (!Number.isInteger(type) || type < 0 || type > 0xffff) throw new DnsError(`bad type number ${type}`);
  const name = mnemonic(type);
  if (!isStorableType(type)) throw new DnsError(`${name} is a reserved or meta type and cannot appear in zone data`);
  const list = fields.map(toField);
  const f = new Fields(name, list, origin);
  const first = list[0];
  if (first !== undefined && !first.quoted && first.text === '\\#') {
    f.next('\\#');
    const data = parseGeneric(f);
    checkKnownWire(type, name, data);
    return data;
  }
  const parser = PARSERS.get(type);
  if (parser === undefined) {
    throw new DnsError(`${name}: Vigil has no presentation format for this type; write its rdata in RFC 3597 generic form (\\# <length> <hex>)`);
  }
  const w = new ByteWriter();
  parser(f, w);
  f.end();
  const out = w.done();
  if (out.length > MAX_RDATA) throw new DnsError(`${name}: rdata is ${out.length} octets, the limit is ${MAX_RDATA}`);
  return out;
}

// Generic rdata for a type we understand must still be valid data of that type,
// or the answer code would later trip over it.
function checkKnownWire(type: number, name: string, data: Uint8Array): void {
  const formatter = FORMATTERS.get(type);
  if (formatter === undefined) return;
  try {
    formatWith(formatter, data);
  } catch (e) {
    if (e instanceof DnsError) throw new DnsError(`${name}: generic rdata is not valid ${name} data: ${e.message}`);
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Formatting rdata (logs, tests, dumps)

class Reader {
  pos = 0;
  constructor(readonly data: Uint8Array) {}

  need(n: number): void {
    if (this.pos + n > this.data.length) throw new DnsError('rdata is too short');
  }

  u8(): number {
    this.need(1);
    return this.data[this.pos++]!;
  }

  u16(): number {
    this.need(2);
    const v = (this.data[this.pos]! << 8) | this.data[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const d = this.data;
    const p = this.pos;
    this.pos += 4;
    return d[p]! * 0x1000000 + ((d[p + 1]! << 16) | (d[p + 2]! << 8) | d[p + 3]!);
  }

  bytes(n: number): Uint8Array {
    this.need(n);
    const b = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  name(): string {
    const { key, end } = readUncompressedName(this.data, this.pos);
    this.pos = end;
    return formatName(key);
  }

  charString(): string {
    return quoteText(this.bytes(this.u8()));
  }

  rest(): Uint8Array {
    return this.bytes(this.data.length - this.pos);
  }

  atEnd(): boolean {
    return this.pos === this.data.length;
  }
}

function quoteText(b: Uint8Array): string {
  let out = '"';
  for (const c of b) {
    if (c === 0x22 || c === 0x5c) out += '\\' + String.fromCharCode(c);
    else if (c < 0x20 || c >= 0x7f) out += '\\' + String(c).padStart(3, '0');
    else out += String.fromCharCode(c);
  }
  return out + '"';
}

/** RFC 5952 form: lowercase, no leading zeros, the longest run of two or more zero groups as "::". */
function formatIPv6(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestAt < 0) return hex(groups);
  return hex(groups.slice(0, bestAt)) + '::' + hex(groups.slice(bestAt + bestLen));
}

type RdataFormatter = (r: Reader) => string;

const FORMATTERS: ReadonlyMap<number, RdataFormatter> = new Map<number, RdataFormatter>([
  [TYPE.A, (r) => Array.from(r.bytes(4)).join('.')],
  [TYPE.AAAA, (r) => formatIPv6(r.bytes(16))],
  [TYPE.NS, (r) => r.name()],
  [TYPE.CNAME, (r) => r.name()],
  [TYPE.PTR, (r) => r.name()],
  [TYPE.DNAME, (r) => r.name()],
  [TYPE.MX, (r) => `${r.u16()} ${r.name()}`],
  [TYPE.SOA, (r) => [r.name(), r.name(), r.u32(), r.u32(), r.u32(), r.u32(), r.u32()].join(' ')],
  [TYPE.SRV, (r) => `${r.u16()} ${r.u16()} ${r.u16()} ${r.name()}`],
  [
    TYPE.TXT,
    (r) => {
      const parts = [r.charString()];
      while (!r.atEnd()) parts.push(r.charString());
      return parts.join(' ');
    },
  ],
  [TYPE.HINFO, (r) => `${r.charString()} ${r.charString()}`],
  [
    TYPE.CAA,
    (r) => {
      const flags = r.u8();
      const tag = r.bytes(r.u8());
      if (!validCaaTag(tag)) throw new DnsError('CAA tag must be 1 to 15 ASCII letters and digits');
      return `${flags} ${Buffer.from(tag).toString('latin1')} ${quoteText(r.rest())}`;
    },
  ],
]);

function formatWith(formatter: RdataFormatter, rdata: Uint8Array): string {
  const r = new Reader(rdata);
  const text = formatter(r);
  if (!r.atEnd()) throw new DnsError(`${rdata.length - r.pos} octets left over after the rdata`);
  return text;
}

function formatGeneric(rdata: Uint8Array): string {
  if (rdata.length === 0) return '\\# 0';
  return `\\# ${rdata.length} ${Buffer.from(rdata).toString('hex')}`;
}

/** Presentation form of wire rdata; RFC 3597 generic form for unknown types or data that does not decode. */
export function formatRdata(type: number, rdata: Uint8Array): string {
  const formatter = FORMATTERS.get(type);
  if (formatter === undefined) return formatGeneric(rdata);
  try {
    return formatWith(formatter, rdata);
  } catch (e) {
    if (e instanceof DnsError) return formatGeneric(rdata);
    throw e;
  }
}
