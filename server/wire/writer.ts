// Builds response messages. Used off the hot path (answer caches are filled
// once per snapshot) and on the slow paths (negative answers, wildcards,
// truncation), so it favours correctness and compactness over raw speed.

import { COMPRESSIBLE_RDATA, TYPE } from './constants.js';
import { lowerKey, readUncompressedName } from './name.js';

/** The largest message we ever build: TCP's 2-byte length limit. */
export const MAX_MESSAGE = 65535;
/** Size of an OPT record with no options. */
export const OPT_SIZE = 11;

export class MessageWriter {
  readonly buf: Buffer;
  length = 0;
  /** Lowercased name-key suffix → offset of its first occurrence. */
  private readonly names = new Map<string, number>();
  /**
   * When set, the offset of every compression pointer written is appended:
   * templates (respond.ts) move the pointers when the question they point into
   * changes length. Undefined (the default) costs nothing.
   */
  pointers: number[] | undefined;

  constructor(capacity: number = MAX_MESSAGE) {
    this.buf = Buffer.allocUnsafe(capacity);
    this.limit = capacity;
  }

  /** Bytes the message may grow to: the client's UDP limit, or 65535 over TCP. */
  limit: number;

  /** Reuse: one writer per thread serves every slow-path response without allocating 64 KiB each time. */
  reset(limit: number = this.buf.length): void {
    this.length = 0;
    this.limit = Math.min(limit, this.buf.length);
    this.names.clear();
    this.pointers = undefined;
  }

  /** Copies raw bytes (a header or the client's question). */
  raw(bytes: Uint8Array, start = 0, end = bytes.length): boolean {
    const n = end - start;
    if (this.length + n > this.limit) return false;
    this.buf.set(bytes.subarray(start, end), this.length);
    this.length += n;
    return true;
  }

  u16(v: number): boolean {
    if (this.length + 2 > this.limit) return false;
    this.buf.writeUInt16BE(v, this.length);
    this.length += 2;
    return true;
  }

  u32(v: number): boolean {
    if (this.length + 4 > this.limit) return false;
    this.buf.writeUInt32BE(v >>> 0, this.length);
    this.length += 4;
    return true;
  }

  /** Makes `key`'s suffixes available as compression targets at `offset` (used for the copied question). */
  rememberName(key: string, offset: number): void {
    let k = lowerKey(key);
    let at = offset;
    while (k.length > 1 && at < 0x4000) {
      if (!this.names.has(k)) this.names.set(k, at);
      const len = k.charCodeAt(0);
      at += len + 1;
      k = k.slice(len + 1);
    }
  }

  /** Writes a name key, compressing against earlier names when allowed. */
  name(key: string, compress: boolean): boolean {
    let k = key;
    let lower = compress ? lowerKey(key) : key;
    while (k.length > 1) {
      if (compress) {
        const ptr = this.names.get(lower);
        if (ptr !== undefined) {
          const at = this.length;
          if (!this.u16(0xc000 | ptr)) return false;
          this.pointers?.push(at);
          return true;
        }
        if (this.length < 0x4000) this.names.set(lower, this.length);
      }
      const len = k.charCodeAt(0);
      if (this.length + len + 1 > this.limit) return false;
      this.buf.write(k.slice(0, len + 1), this.length, 'latin1');
      this.length += len + 1;
      k = k.slice(len + 1);
      if (compress) lower = lower.slice(len + 1);
    }
    if (this.length + 1 > this.limit) return false;
    this.buf[this.length++] = 0;
    return true;
  }

  /**
   * Writes one resource record. Returns false, with the writer rolled back to
   * where it was, when the record does not fit: the caller decides whether
   * that means TC=1.
   */
  record(owner: string, type: number, cls: number, ttl: number, rdata: Uint8Array): boolean {
    const start = this.length;
    const ok = this.recordUnchecked(owner, type, cls, ttl, rdata);
    if (!ok) this.rollback(start);
    return ok;
  }

  /** Truncates back to `length`, forgetting compression targets that pointed past it. */
  rollback(length: number): void {
    this.length = length;
    for (const [k, off] of this.names) if (off >= length) this.names.delete(k);
    if (this.pointers !== undefined) while (this.pointers.length > 0 && this.pointers[this.pointers.length - 1]! >= length) this.pointers.pop();
  }

  private recordUnchecked(owner: string, type: number, cls: number, ttl: number, rdata: Uint8Array): boolean {
    if (!this.name(owner, true)) return false;
    if (!this.u16(type) || !this.u16(cls) || !this.u32(ttl)) return false;
    const lenAt = this.length;
    if (!this.u16(0)) return false;
    if (COMPRESSIBLE_RDATA.has(type)) {
      if (!this.compressibleRdata(type, rdata)) return false;
    } else if (!this.raw(rdata)) return false;
    this.buf.writeUInt16BE(this.length - lenAt - 2, lenAt);
    return true;
  }

  private compressibleRdata(type: number, rdata: Uint8Array): boolean {
    switch (type) {
      case TYPE.MX: {
        if (!this.raw(rdata, 0, 2)) return false;
        return this.name(readUncompressedName(rdata, 2).key, true);
      }
      case TYPE.SOA: {
        const m = readUncompressedName(rdata, 0);
        const r = readUncompressedName(rdata, m.end);
        return this.name(m.key, true) && this.name(r.key, true) && this.raw(rdata, r.end);
      }
      default:
        // NS, CNAME, PTR: the whole rdata is one name.
        return this.name(readUncompressedName(rdata, 0).key, true);
    }
  }

  /**
   * Appends an OPT record (RFC 6891). `options` is the option TLVs already in
   * wire form (code, length, data; e.g. a COOKIE from cookie.ts), or none.
   */
  opt(udpPayload: number, extendedRcode: number, dnssecOk: boolean, options?: Uint8Array): boolean {
    const size = optSize(options);
    if (this.length + size > this.limit) return false;
    writeOptAt(this.buf, this.length, udpPayload, extendedRcode, dnssecOk, options);
    this.length += size;
    return true;
  }

  /** A copy of the bytes written so far. */
  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.length));
  }
}

/** Octets an OPT record takes with these options (in wire form) as its rdata. */
export function optSize(options?: Uint8Array): number {
  return OPT_SIZE + (options === undefined ? 0 : options.length);
}

/**
 * Writes an OPT record (version 0) at `at`, with `options` (TLVs in wire form)
 * as its rdata when given; the caller has made room for optSize(options) octets.
 */
export function writeOptAt(b: Buffer, at: number, udpPayload: number, extendedRcode: number, dnssecOk: boolean, options?: Uint8Array): void {
  b[at] = 0;
  b.writeUInt16BE(TYPE.OPT, at + 1);
  b.writeUInt16BE(udpPayload, at + 3);
  b[at + 5] = extendedRcode;
  b[at + 6] = 0;
  b[at + 7] = dnssecOk ? 0x80 : 0;
  b[at + 8] = 0;
  b.writeUInt16BE(options === undefined ? 0 : options.length, at + 9);
  if (options !== undefined && options.length > 0) b.set(options, at + OPT_SIZE);
}
