// The weighted policy for one address family: `count` distinct members per
// answer, drawn by weight among the served members. Instead of a random draw
// per query, a deterministic table of variants whose frequencies are the
// weights; each query takes the next variant. See README.md for the rounding.

import type { CompiledMember, CompiledService, Family } from '../../../zones/service.js';
import { addressesOf, gcd, isServed, membersIn, NO_ADDRESSES, uniq, whenAllDown, type FamilyOutcome, type StatusOf } from './members.js';
import { MAX_TABLE, smoothOrder } from './variants.js';

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

/**
 * Largest-remainder (Hamilton) apportionment of `seats` slots to `weights`,
 * then at least one slot for every positive weight while there are as many
 * slots as members (a served member must not vanish through rounding); the
 * slot is taken from the member furthest above its exact quota.
 */
export function apportion(weights: readonly number[], seats: number): number[] {
  const W = sum(weights);
  if (W <= 0) return weights.map(() => 0);
  const alloc = weights.map((w) => Math.floor((w * seats) / W));
  let left = seats - sum(alloc);
  const order = weights.map((_, i) => i).sort((a, b) => ((weights[b]! * seats) % W) - ((weights[a]! * seats) % W) || a - b);
  for (const i of order) {
    if (left <= 0) break;
    alloc[i] = alloc[i]! + 1;
    left--;
  }
  if (weights.filter((w) => w > 0).length <= seats) {
    for (;;) {
      let zero = -1;
      for (let i = 0; i < weights.length; i++) if (weights[i]! > 0 && alloc[i] === 0 && (zero < 0 || weights[i]! > weights[zero]!)) zero = i;
      if (zero < 0) break;
      let donor = -1;
      let over = -Infinity;
      for (let i = 0; i < weights.length; i++) {
        if (alloc[i]! <= 1) continue;
        const o = alloc[i]! * W - weights[i]! * seats;
        if (o > over || (o === over && alloc[i]! > alloc[donor]!)) [donor, over] = [i, o];
      }
      if (donor < 0) break;
      alloc[donor] = alloc[donor]! - 1;
      alloc[zero] = 1;
    }
  }
  return alloc;
}

/**
 * count = 1: one member per variant; member i appears in exactly w_i / g of
 * the W / g variants (g = gcd of the weights) when W / g ≤ 100, else in its
 * apportioned share of 100 (or of `length` when given). Interleaved order.
 */
function singleDraws(weights: readonly number[], length: number | undefined): number[][] {
  const g = weights.reduce((a, b) => gcd(a, b), 0);
  const natural = sum(weights) / g;
  const counts = length === undefined && natural <= MAX_TABLE ? weights.map((w) => w / g) : apportion(weights, length ?? MAX_TABLE);
  return smoothOrder(counts).map((i) => [i]);
}

/**
 * count > 1: systematic sampling (Madow). Member i's inclusion share is
 * π_i = count × w_i / W, capped at 1 (a member cannot be in an answer twice;
 * the capped members' remaining share goes to the others by weight). The
 * members are laid end to end on [0, count) with lengths π_i, and variant j of
 * N takes the members under the points (j + ½)/N + k, k = 0 … count−1: points
 * one apart never fall twice into an interval no longer than 1, so the
 * members of a variant are distinct, and member i is in exactly π_i × N
 * variants whenever that is a whole number. N is the smallest such number when
 * it is ≤ 100, else 100 (or `length`), where each share is rounded to a
 * neighbouring whole number. Variant j lists its members rotated by j, so the
 * first place moves around too.
 */
function systematicDraws(weights: readonly number[], count: number, length: number | undefined): number[][] {
  const n = weights.length;
  if (count >= n) return [weights.map((_, i) => i)];
  const capped = weights.map(() => false);
  for (;;) {
    const c = count - capped.filter(Boolean).length;
    const W = sum(weights.filter((_, i) => !capped[i]));
    let cap = -1;
    for (let i = 0; i < n; i++) if (!capped[i] && c * weights[i]! >= W && (cap < 0 || weights[i]! > weights[cap]!)) cap = i;
    if (cap < 0 || c <= 0) break;
    capped[cap] = true;
  }
  const c = count - capped.filter(Boolean).length;
  const W = sum(weights.filter((_, i) => !capped[i]));
  // Lengths in units of 1/W: a capped member has length 1 (= W units).
  const lens = weights.map((w, i) => (capped[i] ? W : c * w));
  const g = weights.filter((_, i) => !capped[i]).reduce((a, b) => gcd(a, b), 0);
  const natural = c > 0 && W > 0 ? W / gcd(W, c * g) : 1;
  const N = length ?? (natural <= MAX_TABLE ? natural : MAX_TABLE);
  const starts: number[] = [];
  let acc = 0;
  for (const l of lens) {
    starts.push(acc);
    acc += l;
  }
  const rows: number[][] = [];
  for (let j = 0; j < N; j++) {
    const row: number[] = [];
    for (let k = 0; k < count; k++) {
      // The point (j + kN + ½)/N in units of 1/(2NW), so all arithmetic is on integers.
      const point = (2 * (j + k * N) + 1) * W;
      let i = 0;
      while (i < n - 1 && point >= 2 * N * (starts[i]! + lens[i]!)) i++;
      row.push(i);
    }
    const r = j % count;
    rows.push([...row.slice(r), ...row.slice(0, r)]);
  }
  return rows;
}

/** Rows of candidate indices: the weighted table for `count` draws. */
export function weightedDraws(weights: readonly number[], count: number, length?: number): number[][] {
  return count <= 1 ? singleDraws(weights, length) : systematicDraws(weights, count, length);
}

/**
 * The family's weighted table. `length` forces the number of variants (used to
 * align the A and AAAA tables when their natural lengths have a large lcm).
 * Members with weight 0 are standbys: drawn (equally) only when no member with
 * a weight above 0 is served, as Route 53 does.
 */
export function weightedFamily(service: CompiledService, family: Family, statusOf: StatusOf, length?: number): FamilyOutcome {
  const members = membersIn(service, family);
  if (members.length === 0) return NO_ADDRESSES;
  const up = members.filter((m) => isServed(statusOf(m, family)));
  if (up.length === 0) return whenAllDown(service, family, members);
  let candidates: CompiledMember[] = up.filter((m) => m.weight > 0);
  let weights = candidates.map((m) => m.weight);
  let note: string | undefined;
  if (candidates.length === 0) {
    candidates = up;
    weights = up.map(() => 1);
    note = 'standby members only';
  }
  const rows = weightedDraws(weights, Math.max(1, service.count), length);
  const variants = rows.map((row) => uniq(row.flatMap((i) => addressesOf(candidates[i]!, family))));
  return { variants, failedOpen: false, holding: false, ...(note !== undefined ? { note } : {}) };
}
