// Which zones a view may transfer, and to whom: built with each snapshot from
// the compiled config's static zones, so a reload that changes `transfer`
// takes effect with the next query like everything else.

import type { Zone } from '../../zones/zone.js';
import { compileViewMatcher } from '../answer/views.js';

/** A zone that may be transferred, as the config compiled it (never the snapshot's copy with service overlays). */
export interface TransferSource {
  readonly zone: Zone;
  /** True when `client` (a socket's remote address) is inside `transfer.allow`. */
  readonly allowed: (client: string) => boolean;
}

// Compiled once per Zone object, i.e. once per config: health changes rebuild
// the snapshot often and the zones (and their ACLs) stay the same objects.
const sources = new WeakMap<Zone, TransferSource>();

function sourceOf(zone: Zone): TransferSource | undefined {
  const transfer = zone.transfer;
  if (transfer === undefined || transfer.allow.length === 0) return undefined;
  let s = sources.get(zone);
  if (s === undefined) {
    // The views' matcher, with one "view" whose prefixes are the allow list:
    // the same IPv4-mapped and zone-index handling for both, one implementation.
    const match = compileViewMatcher([{ name: 'transfer', match: transfer.allow, useEcs: false }]);
    s = { zone, allowed: (client) => match(client) === 0 };
    sources.set(zone, s);
  }
  return s;
}

/** The transferable zones among a view's static zones (origin key → source). */
export function transferSources(staticZones: ReadonlyMap<string, Zone>): ReadonlyMap<string, TransferSource> {
  const out = new Map<string, TransferSource>();
  for (const [origin, zone] of staticZones) {
    const s = sourceOf(zone);
    if (s !== undefined) out.set(origin, s);
  }
  return out;
}
