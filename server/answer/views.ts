// Split horizon: which view a client's address falls in. Views are tried in
// config order and the first whose prefixes contain the address wins; a view
// with no prefixes matches everyone (the default, last by construction).

import { isIPv4 } from 'node:net';
import type { Cidr, CompiledView } from '../../zones/service.js';
import { parseIPv6 } from '../../zones/rdata-text.js';

/** Returns the index of the matching view, or -1 (the query is REFUSED). */
export type ViewMatcher = (address: string) => number;

function v4Bytes(addr: string, out: Uint8Array): boolean {
  let part = 0;
  let digits = 0;
  let k = 0;
  for (let i = 0; i <= addr.length; i++) {
    const c = i < addr.length ? addr.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || part > 255 || k > 3) return false;
      out[k++] = part;
      part = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      part = part * 10 + (c - 0x30);
      digits++;
    } else return false;
  }
  return k === 4;
}

function contains(c: Cidr, bytes: Uint8Array): boolean {
  const full = c.prefix >> 3;
  for (let i = 0; i < full; i++) if (bytes[i] !== c.bytes[i]) return false;
  const rest = c.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[full]! & mask) === c.bytes[full];
}

export function compileViewMatcher(views: readonly CompiledView[]): ViewMatcher {
  if (views.length === 0 || views[0]!.match.length === 0) return () => 0;
  const v4 = new Uint8Array(4);
  return (address: string): number => {
    let bytes: Uint8Array;
    let family: 4 | 6;
    if (isIPv4(address)) {
      if (!v4Bytes(address, v4)) return -1;
      bytes = v4;
      family = 4;
    } else if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) {
      // An IPv4 client on a dual-stack socket is still an IPv4 client.
      v4Bytes(address.slice(7), v4);
      bytes = v4;
      family = 4;
    } else {
      // A link-local source carries a zone index ("fe80::1%eth0"); prefixes never do.
      const zone = address.indexOf('%');
      try {
        bytes = parseIPv6(zone >= 0 ? address.slice(0, zone) : address);
      } catch {
        return -1;
      }
      family = 6;
    }
    for (let i = 0; i < views.length; i++) {
      const m = views[i]!.match;
      if (m.length === 0) return i;
      for (const c of m) if (c.family === family && contains(c, bytes)) return i;
    }
    return -1;
  };
}
