// Domain names inside Vigil are "name keys": the uncompressed wire form of the
// name, ASCII-lowercased, held in a latin1 string (one char per byte).
// Example: "\x03www\x07example\x04test\x00".
// Why: a key is what a query packet already contains, so the hot path turns the
// question into a key with one pass over the bytes and no label splitting; the
// parent of a key is a single slice; Map lookups on short strings are fast.

import { DnsError } from './errors.js';

export const ROOT_KEY = '\x00';
export const MAX_NAME_LENGTH = 255;
export const MAX_LABEL_LENGTH = 63;

/** Parent name key; the parent of the root is undefined. */
export function parentKey(key: string): string | undefined {
  if (key.length <= 1) return undefined;
  return key.slice(key.charCodeAt(0) + 1);
}

/** Number of labels, not counting the root. */
export function labelCount(key: string): number {
  let n = 0;
  for (let i = 0; key.charCodeAt(i) !== 0; i += key.charCodeAt(i) + 1) n++;
  return n;
}

/** True when `key` equals `ancestor` or lies below it. */
export function isSubdomain(key: string, ancestor: string): boolean {
  if (key.length < ancestor.length) return false;
  if (!key.endsWith(ancestor)) return false;
  // endsWith alone could match in the middle of a label; walk label starts.
  const start = key.length - ancestor.length;
  for (let i = 0; i <= start; i += key.charCodeAt(i) + 1) if (i === start) return true;
  return false;
}

export function firstLabelIsWildcard(key: string): boolean {
  return key.charCodeAt(0) === 1 && key.charCodeAt(1) === 0x2a;
}

export function wildcardOf(key: string): string {
  return '\x01*' + key;
}

export function keyToBytes(key: string): Buffer {
  return Buffer.from(key, 'latin1');
}

/** Lowercases A-Z only: DNS names compare case-insensitively in ASCII (RFC 4343). */
export function lowerKey(key: string): string {
  let out = '';
  let changed = false;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) {
      changed = true;
      out += String.fromCharCode(c + 32);
    } else out += key[i];
  }
  return changed ? out : key;
}

/**
 * Presentation format ("www.Example.test.", "a\\.b.test.", "\\065.test.") to a key.
 * Relative names are completed with `origin` (itself a key); "@" is the origin.
 * Case is preserved; use lowerKey for lookups.
 */
export function parseName(text: string, origin?: string): string {
  if (text === '@') {
    if (origin === undefined) throw new DnsError('"@" used without an origin');
    return origin;
  }
  if (text === '.') return ROOT_KEY;
  const labels: number[][] = [];
  let label: number[] = [];
  let absolute = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x2e /* . */) {
      if (label.length === 0) throw new DnsError(`empty label in name "${text}"`);
      labels.push(label);
      label = [];
      if (i === text.length - 1) absolute = true;
      continue;
    }
    if (ch === 0x5c /* \ */) {
      const next = text.charCodeAt(i + 1);
      if (Number.isNaN(next)) throw new DnsError(`dangling backslash in name "${text}"`);
      if (next >= 0x30 && next <= 0x39) {
        const digits = text.slice(i + 1, i + 4);
        if (!/^[0-9]{3}$/.test(digits)) throw new DnsError(`bad \\DDD escape in name "${text}"`);
        const v = Number(digits);
        if (v > 255) throw new DnsError(`\\DDD escape over 255 in name "${text}"`);
        label.push(v);
        i += 3;
      } else {
        label.push(next);
        i += 1;
      }
      continue;
    }
    if (ch > 0xff) throw new DnsError(`non-ASCII character in name "${text}" (use punycode)`);
    label.push(ch);
  }
  if (label.length > 0) labels.push(label);
  let key = '';
  for (const l of labels) {
    if (l.length > MAX_LABEL_LENGTH) throw new DnsError(`label longer than 63 octets in name "${text}"`);
    key += String.fromCharCode(l.length) + String.fromCharCode(...l);
  }
  if (absolute) key += '\x00';
  else {
    if (origin === undefined) throw new DnsError(`relative name "${text}" without an origin`);
    key += origin;
  }
  if (key.length > MAX_NAME_LENGTH) throw new DnsError(`name "${text}" is longer than 255 octets`);
  return key;
}

/** Key to presentation format, with a trailing dot and RFC 1035 escapes. */
export function formatName(key: string): string {
  if (key === ROOT_KEY) return '.';
  let out = '';
  let i = 0;
  while (i < key.length) {
    const len = key.charCodeAt(i);
    if (len === 0) break;
    for (let j = i + 1; j <= i + len; j++) {
      const c = key.charCodeAt(j);
      if (c === 0x2e || c === 0x5c || c === 0x22 || c === 0x28 || c === 0x29 || c === 0x3b || c === 0x40 || c === 0x24) {
        out += '\\' + key[j];
      } else if (c <= 0x20 || c >= 0x7f) {
        out += '\\' + String(c).padStart(3, '0');
      } else out += key[j];
    }
    out += '.';
    i += len + 1;
  }
  return out;
}

/**
 * Reads an uncompressed name from `buf` at `offset` (rdata as stored in zones).
 * Returns the key and the offset after it, or throws on malformed data.
 */
export function readUncompressedName(buf: Uint8Array, offset: number): { key: string; end: number } {
  let key = '';
  let i = offset;
  for (;;) {
    if (i >= buf.length) throw new DnsError('name runs past the end of the data');
    const len = buf[i]!;
    if (len > MAX_LABEL_LENGTH) throw new DnsError('compressed or invalid label in stored name');
    key += String.fromCharCode(len);
    if (len === 0) break;
    if (i + 1 + len > buf.length) throw new DnsError('label runs past the end of the data');
    for (let j = i + 1; j <= i + len; j++) key += String.fromCharCode(buf[j]!);
    i += len + 1;
  }
  if (key.length > MAX_NAME_LENGTH) throw new DnsError('name longer than 255 octets');
  return { key, end: i + 1 };
}

/**
 * Offset just after a possibly compressed name at `offset` in msg[0, end),
 * or -1 when it runs past `end` or uses a reserved label type. Pointers end a
 * name and are not followed, so no loop is possible.
 */
export function skipName(msg: Uint8Array, offset: number, end: number = msg.length): number {
  let i = offset;
  for (;;) {
    if (i >= end) return -1;
    const len = msg[i]!;
    if (len === 0) return i + 1;
    if ((len & 0xc0) === 0xc0) return i + 2 <= end ? i + 2 : -1;
    if (len > 63) return -1;
    i += 1 + len;
  }
}
