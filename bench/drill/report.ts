// The drill's output: a timeline for people, one JSON line for machines.

import type { Percentiles, Seen, Timeline } from './timeline.js';

export interface ReportContext {
  readonly service: string;
  readonly ttl: number;
  readonly resolvers: number;
  readonly clients: number;
  readonly ok: boolean;
  readonly failure: string | null;
}

const s = (ms: number | null): string => (ms === null ? 'n/a' : `+${(ms / 1000).toFixed(3)}`);
const span = (x: Seen): string => `in [${s(x.after)}, ${s(x.at)}]`;
const pct = (p: Percentiles): string => `50% ${s(p.p50)}   90% ${s(p.p90)}   100% ${s(p.all)}`;
const sec = (ms: number | null): number | null => (ms === null ? null : Math.round(ms) / 1000);
const seenSec = (x: Seen | null): { at: number; after: number } | null => (x === null ? null : { at: sec(x.at)!, after: sec(x.after)! });

export function formatTimeline(tl: Timeline, c: ReportContext): string {
  const lines: string[] = [];
  lines.push(`Vigil failover drill: ${c.service} TTL ${c.ttl} s, ${c.resolvers} unbound resolvers x ${c.clients} clients each`);
  lines.push(`(seconds after T0; "in [a, b]": the event happened between two polls of the admin API, 100 ms apart)`);
  lines.push('');
  const row = (t: string, what: string, detail = ''): void => void lines.push(`  ${t.padStart(8)}  ${what.padEnd(34)}${detail}`.trimEnd());
  row(s(0), 'primary killed (T0)');
  row(s(tl.detected?.at ?? null), 'failure detected', tl.detected === null ? 'never seen in /state' : `/state: primary down, ${span(tl.detected)}`);
  if (tl.answerChanged === null) row('n/a', 'answer changed', 'never seen in /state');
  else {
    const a = tl.answerChanged;
    const epoch = a.epochFrom !== null || a.epochTo !== null ? ` (epoch ${a.epochFrom ?? '?'} -> ${a.epochTo ?? '?'})` : '';
    row(s(a.at), 'answer changed', `/state: ${a.from} -> ${a.to}${epoch}, ${span(a)}`);
  }
  const d = tl.drain;
  if (!d.available) row('n/a', '  change recorded by the tracker', `n/a (no /drain: ${d.reason ?? ''})`);
  else row(s(d.changeAt), '  change recorded by the tracker', d.changeAt === null ? (d.reason ?? '') : `/drain: at, ${d.from ?? '?'} -> ${d.to ?? '?'}, old TTL ${d.oldTtl ?? '?'} s`);
  lines.push('');
  if (!d.available) lines.push(`  resolver caches refreshed (/drain):  n/a (no /drain)`);
  else {
    lines.push(
      `  resolver caches refreshed (/drain, ${d.refetched ?? '?'} of ${d.population ?? '?'} re-fetched):  50% ${s(d.p50)}   90% ${s(d.p90)}   100% ${d.all === null ? 'n/a' : `${s(d.all.at)} (${span(d.all)})`}`,
    );
  }
  if (d.available && d.changeAt !== null) {
    lines.push(`      the tracker expected it done by ${s(d.expectedDone)} (old TTL ${d.oldTtl ?? '?'} s + grace)${d.overdue === null ? '' : `; it called the drain overdue ${span(d.overdue)}`}`);
  }
  lines.push(`  resolvers switched (first client request to the secondary):  ${pct(tl.resolversSwitched)}`);
  lines.push(`      per resolver: ${tl.resolverSwitch.map((t, i) => `#${i + 1} ${s(t)}`).join('  ')}`);
  lines.push(`  client traffic moved (secondary's own log, 1 s window):  first ${s(tl.trafficFirst)}   ${pct(tl.traffic)}`);
  lines.push('');
  const gapFrom = tl.gap?.from === 'drain' ? 'the change as /drain recorded it' : 'the change as /state first showed it';
  lines.push(
    `  declaration gap: ${tl.gap === null ? 'n/a' : `${(tl.gap.ms / 1000).toFixed(3)} s`} (traffic 90% moved - answer changed, from ${gapFrom}); TTL served before the change: ${tl.ttlBefore ?? '?'} s`,
  );
  const n = tl.counts;
  lines.push(
    `  requests after T0: ${n.attempts} sent by clients; the secondary logged ${n.secondaryLogged} (clients saw ${n.clientOkSecondary} succeed there); ${n.refused} refused or failed; ${n.dnsErrors} lookups failed`,
  );
  lines.push('');
  lines.push(c.ok ? 'drill completed' : `drill NOT completed: ${c.failure ?? 'unknown reason'}`);
  return lines.join('\n');
}

/** The JSON line: every time in seconds after T0 (null when not observed), T0 itself in ms epoch. */
export function timelineJson(tl: Timeline | null, c: ReportContext): string {
  if (tl === null) return JSON.stringify({ ok: false, failure: c.failure, service: c.service, ttl: c.ttl, resolvers: c.resolvers, clients: c.clients });
  const p = (x: Percentiles): { p50: number | null; p90: number | null; all: number | null } => ({ p50: sec(x.p50), p90: sec(x.p90), all: sec(x.all) });
  return JSON.stringify({
    ok: c.ok,
    failure: c.failure,
    service: c.service,
    ttl: c.ttl,
    resolvers: c.resolvers,
    clients: c.clients,
    t0: tl.t0,
    ttlBefore: tl.ttlBefore,
    detected: seenSec(tl.detected),
    answerChanged: tl.answerChanged === null ? null : { ...seenSec(tl.answerChanged), from: tl.answerChanged.from, to: tl.answerChanged.to, epochFrom: tl.answerChanged.epochFrom, epochTo: tl.answerChanged.epochTo },
    drain: {
      available: tl.drain.available,
      reason: tl.drain.reason,
      changeAt: sec(tl.drain.changeAt),
      from: tl.drain.from,
      to: tl.drain.to,
      oldTtl: tl.drain.oldTtl,
      population: tl.drain.population,
      refetched: tl.drain.refetched,
      p50: sec(tl.drain.p50),
      p90: sec(tl.drain.p90),
      all: seenSec(tl.drain.all),
      expectedDone: sec(tl.drain.expectedDone),
      overdue: seenSec(tl.drain.overdue),
    },
    resolversSwitched: { ...p(tl.resolversSwitched), perResolver: tl.resolverSwitch.map(sec) },
    traffic: { first: sec(tl.trafficFirst), ...p(tl.traffic) },
    declarationGap: tl.gap === null ? null : { seconds: sec(tl.gap.ms), from: tl.gap.from },
    requests: tl.counts,
  });
}
