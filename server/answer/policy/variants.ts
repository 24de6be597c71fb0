// Building the variant lists: rotations, spreading a share over a list, an
// interleaved order for weighted slots, and combining the A and AAAA lists
// into the AnswerSets of the contract. Pure and deterministic.

import { lcm } from './members.js';
import type { AnswerSet } from './types.js';

/** Variants for multivalue are capped at this many rotations. */
export const MAX_ROTATIONS = 64;
/** Weighted tables and ramp splits have at most this many variants. */
export const MAX_TABLE = 100;

/**
 * The rotations of `list`: variant i starts at the i-th address, so
 * consecutive queries start at different addresses. k addresses → k variants;
 * above `cap` addresses, `cap` rotations with evenly spaced starts.
 */
export function rotations(list: readonly string[], cap = MAX_ROTATIONS): string[][] {
  const k = list.length;
  if (k <= 1) return [[...list]];
  const n = Math.min(k, cap);
  const out: string[][] = [];
  for (let i = 0; i < n; i++) {
    const s = Math.floor((i * k) / n);
    out.push([...list.slice(s), ...list.slice(0, s)]);
  }
  return out;
}

/**
 * Which of `total` slots carry `hits` (0 ≤ hits ≤ total), spread evenly and
 * starting with slot 0: slot i is a hit when (i × hits) mod total < hits.
 * Exact when hits and total are coprime (callers reduce by their gcd first).
 */
export function spread(total: number, hits: number): boolean[] {
  const out: boolean[] = [];
  for (let i = 0; i < total; i++) out.push((i * hits) % total < hits);
  return out;
}

/**
 * Smooth weighted round robin (nginx): a sequence of indices of length
 * sum(counts) in which index i occurs exactly counts[i] times, interleaved
 * (3:1 gives A A B A rather than A A A B). Ties go to the lower index.
 */
export function smoothOrder(counts: readonly number[]): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  const current = counts.map(() => 0);
  const seq: number[] = [];
  for (let s = 0; s < total; s++) {
    let best = -1;
    for (let i = 0; i < counts.length; i++) {
      current[i] = current[i]! + counts[i]!;
      if (counts[i]! > 0 && (best < 0 || current[i]! > current[best]!)) best = i;
    }
    current[best] = current[best]! - total;
    seq.push(best);
  }
  return seq;
}

/**
 * Combines the per-family alternatives into AnswerSets: variant i carries
 * v4[i mod k4] and v6[i mod k6]. The length is lcm(k4, k6), so each family
 * keeps its exact frequencies (an A query and an AAAA query each pick
 * `pick mod length`); when that exceeds `cap` the length is max(cap, k4, k6)
 * and a family whose count does not divide it is off by at most one slot.
 */
/** The empty list of an answer set, shared: answers are never modified once made. */
const NONE: readonly never[] = Object.freeze([]);

export function combineFamilies(v4: readonly (readonly string[])[], v6: readonly (readonly string[])[], cap: number): AnswerSet[] {
  const k4 = Math.max(1, v4.length);
  const k6 = Math.max(1, v6.length);
  let n = lcm(k4, k6);
  if (n > cap) n = Math.max(cap, k4, k6);
  const out: AnswerSet[] = [];
  // The families' lists are read-only and stay with the answer: shared, not copied. A burst of
  // a thousand changes keeps every answer it makes until the next, and each object costs a copy
  // in every scavenge it lives through.
  for (let i = 0; i < n; i++) out.push({ v4: v4[i % k4] ?? NONE, v6: v6[i % k6] ?? NONE, srv: NONE, mx: NONE });
  return out;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Whether two variant lists hand out the same records in the same order.
 * Field by field rather than comparing JSON texts: the TTL cap compares an
 * answer with each alternative, and serialising both every time was a
 * visible share of a churn burst.
 */
export function sameVariants(a: readonly AnswerSet[], b: readonly AnswerSet[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (!sameList(x.v4, y.v4) || !sameList(x.v6, y.v6) || x.srv.length !== y.srv.length || x.mx.length !== y.mx.length) return false;
    for (let j = 0; j < x.srv.length; j++) {
      const s = x.srv[j]!;
      const t = y.srv[j]!;
      if (s.priority !== t.priority || s.weight !== t.weight || s.port !== t.port || s.target !== t.target) return false;
    }
    for (let j = 0; j < x.mx.length; j++) {
      if (x.mx[j]!.preference !== y.mx[j]!.preference || x.mx[j]!.exchange !== y.mx[j]!.exchange) return false;
    }
  }
  return true;
}
