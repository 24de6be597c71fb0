// The multivalue policy for one address family: every served member (sorted
// by priority, then config order), at most max_answers addresses, rotated so
// each query starts at a different address.

import type { CompiledService, Family } from '../../../zones/service.js';
import { addressesOfAll, isServed, membersIn, NO_ADDRESSES, whenAllDown, type FamilyOutcome, type StatusOf } from './members.js';
import { rotations } from './variants.js';

export function multivalueFamily(service: CompiledService, family: Family, statusOf: StatusOf): FamilyOutcome {
  const members = membersIn(service, family);
  if (members.length === 0) return NO_ADDRESSES;
  // Array.prototype.sort is stable: equal priorities keep config order.
  const up = members.filter((m) => isServed(statusOf(m, family))).sort((a, b) => a.priority - b.priority);
  if (up.length === 0) return whenAllDown(service, family, members);
  const list = addressesOfAll(up, family).slice(0, Math.max(1, service.maxAnswers));
  return { variants: rotations(list), failedOpen: false, holding: false };
}
