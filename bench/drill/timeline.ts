// From what the drill recorded (admin API polls, the backends' own request
// logs, the clients' attempts) to the timeline it prints. Pure functions:
// every figure is computed from timestamps taken during the run, none is
// inferred from the configuration. Times in a Timeline are ms after T0 (the
// kill), null when the event was not observed.

import type { Attempt } from './clients.js';
import type { DrainChange, DrainView, ServiceView } from './vigil.js';

export interface Poll {
  /** ms epoch when the request was sent and when the answer arrived. */
  readonly sent: number;
  readonly received: number;
  readonly service: ServiceView | undefined;
  readonly drain: DrainView | undefined;
}

/**
 * An event seen by polling: `at` is when the first poll showing it returned,
 * `after` when the last poll not showing it was sent, so the event happened
 * in [after, at] (both ms after T0).
 */
export interface Seen {
  readonly at: number;
  readonly after: number;
}

export interface Percentiles {
  readonly p50: number | null;
  readonly p90: number | null;
  readonly all: number | null;
}

export interface DrainFigures {
  readonly available: boolean;
  /** Why not, when not available. */
  readonly reason: string | null;
  /** The change as the drain tracker recorded it (the failover's change, the oldest one at or after T0). */
  readonly changeAt: number | null;
  readonly from: string | null;
  readonly to: string | null;
  readonly oldTtl: number | null;
  readonly population: number | null;
  readonly refetched: number | null;
  /** changeAt + p50Ms / p90Ms from /drain. */
  readonly p50: number | null;
  readonly p90: number | null;
  /** First poll with refetched == population (> 0). */
  readonly all: Seen | null;
  /** When the tracker expects the drain to be done (its expectedDoneAt), and the first poll that called it overdue. */
  readonly expectedDone: number | null;
  readonly overdue: Seen | null;
}

export interface Timeline {
  /** ms epoch of the kill. */
  readonly t0: number;
  readonly ttlBefore: number | null;
  readonly detected: Seen | null;
  readonly answerChanged: (Seen & { readonly from: string; readonly to: string; readonly epochFrom: number | null; readonly epochTo: number | null }) | null;
  readonly drain: DrainFigures;
  /** Per resolver (index 0 = resolver 1): first request one of its clients sent to the secondary. */
  readonly resolverSwitch: readonly (number | null)[];
  readonly resolversSwitched: Percentiles;
  /** First client request in the secondary's own log after T0, then the 1 s window shares. */
  readonly trafficFirst: number | null;
  readonly traffic: Percentiles;
  /** traffic.p90 − the answer change (the drain tracker's `at` when available, else the poll that first showed it). */
  readonly gap: { readonly ms: number; readonly from: 'drain' | 'state' } | null;
  readonly counts: {
    readonly secondaryLogged: number;
    readonly clientOkSecondary: number;
    readonly refused: number;
    readonly dnsErrors: number;
    readonly attempts: number;
  };
}

export interface TimelineInput {
  readonly t0: number;
  readonly polls: readonly Poll[];
  readonly primaryAddress: string;
  readonly secondaryAddress: string;
  /** Arrival times in the secondary's own log. */
  readonly secondaryLog: readonly number[];
  readonly attempts: readonly Attempt[];
  readonly resolvers: number;
  readonly clients: number;
  readonly windowMs?: number;
}

/** The first poll (at or after T0) where `test` holds, with the bracket described in Seen. */
function firstSeen(polls: readonly Poll[], t0: number, test: (p: Poll) => boolean): { seen: Seen; poll: Poll } | null {
  let previousSent = t0;
  for (const p of polls) {
    if (p.received < t0) continue;
    if (test(p)) return { seen: { at: p.received - t0, after: Math.max(previousSent, t0) - t0 }, poll: p };
    previousSent = p.sent;
  }
  return null;
}

/** Time at which the k-th of `times` happened, k = ceil(share × count). */
function kth(times: readonly (number | null)[], share: number): number | null {
  const known = times.filter((t): t is number => t !== null).sort((a, b) => a - b);
  const k = Math.max(1, Math.ceil(share * times.length));
  return known.length >= k ? known[k - 1]! : null;
}

/**
 * For each share, the end of the first `windowMs` window (ending at an event
 * at or after T0) in which at least that share of requests reached the
 * secondary. Requests that reached it come from its own log; requests that
 * did not (refused by the dead primary, or failed lookups) only the clients
 * can record. Windows with fewer than `minEvents` requests are skipped.
 */
export function windowShares(t0: number, reached: readonly number[], missed: readonly number[], windowMs: number, minEvents: number, shares: readonly number[]): (number | null)[] {
  type Ev = { t: number; hit: boolean };
  const events: Ev[] = [...reached.filter((t) => t >= t0).map((t) => ({ t, hit: true })), ...missed.filter((t) => t >= t0).map((t) => ({ t, hit: false }))].sort(
    (a, b) => a.t - b.t || Number(a.hit) - Number(b.hit),
  );
  const out: (number | null)[] = shares.map(() => null);
  let start = 0;
  let hits = 0;
  for (let end = 0; end < events.length; end++) {
    const e = events[end]!;
    if (e.hit) hits++;
    while (events[start]!.t <= e.t - windowMs) {
      if (events[start]!.hit) hits--;
      start++;
    }
    // Several events at the same instant: judge the window once all of them are in.
    if (end + 1 < events.length && events[end + 1]!.t === e.t) continue;
    const total = end - start + 1;
    if (total < minEvents) continue;
    const share = hits / total;
    shares.forEach((s, i) => {
      if (out[i] === null && share >= s) out[i] = e.t - t0;
    });
  }
  return out;
}

export function buildTimeline(input: TimelineInput): Timeline {
  const { t0, polls, secondaryAddress } = input;
  const rel = (t: number): number => t - t0;
  const before = [...polls].reverse().find((p) => p.received <= t0 && p.service !== undefined);
  const initial = before?.service;

  const detected = firstSeen(polls, t0, (p) => p.service?.members.some((m) => m.name === 'primary' && m.status === 'down') === true);
  const changed =
    initial === undefined
      ? null
      : firstSeen(
          polls,
          t0,
          (p) => p.service !== undefined && (p.service.answer !== initial.answer || (initial.epoch !== undefined && p.service.epoch !== undefined && p.service.epoch !== initial.epoch)),
        );

  // The drain tracker's view: the last /drain poll is the most complete.
  const lastDrain = [...polls].reverse().find((p) => p.drain !== undefined)?.drain;
  let drain: DrainFigures;
  if (lastDrain === undefined || !lastDrain.available) {
    drain = {
      available: false,
      reason: lastDrain === undefined ? 'never polled' : `GET /drain: ${lastDrain.error}`,
      changeAt: null, from: null, to: null, oldTtl: null, population: null, refetched: null, p50: null, p90: null, all: null, expectedDone: null, overdue: null,
    };
  } else {
    // Changes are newest first; the failover's is the oldest at or after T0.
    const change = [...lastDrain.changes].reverse().find((c) => c.at >= t0);
    if (change === undefined) {
      drain = {
        available: true,
        reason: 'no change recorded at or after T0',
        changeAt: null, from: null, to: null, oldTtl: null, population: null, refetched: null, p50: null, p90: null, all: null, expectedDone: null, overdue: null,
      };
    } else {
      const sameChange = (p: Poll): DrainChange | undefined => (p.drain?.available === true ? p.drain.changes.find((x) => x.at === change.at) : undefined);
      const all = firstSeen(polls, t0, (p) => {
        const c = sameChange(p);
        return c !== undefined && c.population > 0 && c.refetched >= c.population;
      });
      const overdue = firstSeen(polls, t0, (p) => sameChange(p)?.overdue === true);
      drain = {
        available: true,
        reason: null,
        changeAt: rel(change.at),
        from: change.from ?? null,
        to: change.to ?? null,
        oldTtl: change.oldTtl ?? null,
        population: change.population,
        refetched: change.refetched,
        p50: change.p50Ms === undefined ? null : rel(change.at) + change.p50Ms,
        p90: change.p90Ms === undefined ? null : rel(change.at) + change.p90Ms,
        all: all?.seen ?? null,
        expectedDone: change.expectedDoneAt === undefined ? null : rel(change.expectedDoneAt),
        overdue: overdue?.seen ?? null,
      };
    }
  }

  const after = input.attempts.filter((a) => a.at >= t0);
  const resolverSwitch: (number | null)[] = [];
  for (let r = 1; r <= input.resolvers; r++) {
    const first = after.find((a) => a.resolver === r && a.address === secondaryAddress);
    resolverSwitch.push(first === undefined ? null : rel(first.at));
  }

  const reached = input.secondaryLog.filter((t) => t >= t0);
  const missed = after.filter((a) => a.address !== secondaryAddress || a.outcome !== 'ok').map((a) => a.at);
  const [p50, p90, all] = windowShares(t0, reached, missed, input.windowMs ?? 1000, Math.max(1, Math.floor(input.clients / 2)), [0.5, 0.9, 1]);
  const traffic: Percentiles = { p50: p50 ?? null, p90: p90 ?? null, all: all ?? null };

  const changeRef = drain.changeAt !== null ? { at: drain.changeAt, from: 'drain' as const } : changed !== null ? { at: changed.seen.at, from: 'state' as const } : null;
  const gap = changeRef !== null && traffic.p90 !== null ? { ms: traffic.p90 - changeRef.at, from: changeRef.from } : null;

  return {
    t0,
    ttlBefore: initial !== undefined && Number.isFinite(initial.ttl) ? initial.ttl : null,
    detected: detected?.seen ?? null,
    answerChanged:
      changed === null || initial === undefined
        ? null
        : {
            ...changed.seen,
            from: initial.answer,
            to: changed.poll.service?.answer ?? '',
            epochFrom: initial.epoch ?? null,
            epochTo: changed.poll.service?.epoch ?? null,
          },
    drain,
    resolverSwitch,
    resolversSwitched: { p50: kth(resolverSwitch, 0.5), p90: kth(resolverSwitch, 0.9), all: kth(resolverSwitch, 1) },
    trafficFirst: reached.length > 0 ? rel(Math.min(...reached)) : null,
    traffic,
    gap,
    counts: {
      secondaryLogged: reached.length,
      clientOkSecondary: after.filter((a) => a.address === secondaryAddress && a.outcome === 'ok').length,
      refused: after.filter((a) => a.outcome === 'http-error').length,
      dnsErrors: after.filter((a) => a.outcome === 'dns-error').length,
      attempts: after.length,
    },
  };
}

/**
 * Whether, for the last `holdMs` before `now`, every client attempt went to
 * the secondary and succeeded, with every one of `clients` seen in that
 * stretch: the drill's condition to stop.
 */
export function settledOnSecondary(attempts: readonly Attempt[], secondaryAddress: string, clients: number, now: number, holdMs: number): boolean {
  let lastMiss = -Infinity;
  for (const a of attempts) if (a.address !== secondaryAddress || a.outcome !== 'ok') lastMiss = Math.max(lastMiss, a.at);
  if (now - lastMiss < holdMs) return false;
  const seen = new Set<number>();
  for (const a of attempts) if (a.at > lastMiss) seen.add(a.client);
  return seen.size >= clients;
}
