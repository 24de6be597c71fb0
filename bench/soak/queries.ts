// What the soak asks and what counts as a right answer. Responses are decoded
// with dns-packet, not Vigil's own wire code, so a bug shared by Vigil's
// encoder and decoder cannot hide. Every check returns undefined for a good
// answer or the reason it is wrong.

import dnsPacket from 'dns-packet';
import { BROKEN_GENERATION, SERVICES, SOAK_ZONE, VARIANT_ADDRESS } from './config.js';

export type Kind = 'static' | 'service' | 'nxdomain' | 'generation';

/** What the load knows about reloads when it sends a generation query. */
export interface GenerationWindow {
  /** The newest generation written to the config file (the server may serve it any time now). */
  readonly written: number;
  /** The newest generation whose reload the metrics have confirmed: every later query must see at least this one. */
  readonly confirmed: number;
}

export interface Plan {
  readonly kind: Kind;
  readonly qname: string;
  readonly qtype: 'A' | 'AAAA' | 'MX' | 'TXT';
  /** For service queries: the service name (lowercase, with the dot). */
  readonly service?: string;
  check(p: dnsPacket.Packet, w: GenerationWindow): string | undefined;
}

type Answer = dnsPacket.Answer;
const lc = (s: string): string => s.toLowerCase().replace(/\.$/, '');
const rand = (): string => Math.random().toString(36).slice(2, 10);

function dataOf(a: Answer): unknown {
  return (a as { data?: unknown }).data;
}

function addresses(p: dnsPacket.Packet, qname: string, type: 'A' | 'AAAA'): string[] | string {
  const out: string[] = [];
  for (const a of p.answers ?? []) {
    if (a.type !== type) return `unexpected ${a.type} in the answer`;
    if (lc(a.name) !== lc(qname)) return `answer owner ${a.name}, asked ${qname}`;
    out.push(String(dataOf(a)));
  }
  return out.sort();
}

function exactly(qname: string, type: 'A' | 'AAAA', want: readonly string[]): (p: dnsPacket.Packet) => string | undefined {
  const sorted = [...want].sort().join(',');
  return (p) => {
    const got = addresses(p, qname, type);
    if (typeof got === 'string') return got;
    return got.join(',') === sorted ? undefined : `answer ${got.join(',') || '(empty)'}, expected ${sorted}`;
  };
}

function negative(p: dnsPacket.Packet): string | undefined {
  if ((p.answers ?? []).length !== 0) return 'NXDOMAIN with answers';
  if (!(p.authorities ?? []).some((a) => a.type === 'SOA')) return 'NXDOMAIN without SOA in authority';
  return undefined;
}

const STATIC: readonly (() => Plan)[] = [
  () => ({ kind: 'static', qname: 'www.example.test', qtype: 'A', check: exactly('www.example.test', 'A', ['192.0.2.10']) }),
  () => ({ kind: 'static', qname: 'WwW.Example.TEST', qtype: 'AAAA', check: exactly('www.example.test', 'AAAA', ['2001:db8::10']) }),
  () => ({ kind: 'static', qname: 'api.example.test', qtype: 'A', check: exactly('api.example.test', 'A', ['192.0.2.20', '198.51.100.20', '203.0.113.20']) }),
  () => {
    // A wildcard under a fresh name each time: built per query, never memoized.
    const qname = `w${rand()}.apps.example.test`;
    return { kind: 'static', qname, qtype: 'A', check: exactly(qname, 'A', ['192.0.2.80']) };
  },
  () => ({
    kind: 'static',
    qname: 'example.test',
    qtype: 'MX',
    check: (p) => {
      const mx = (p.answers ?? []).map((a) => (a.type === 'MX' ? `${(dataOf(a) as { preference: number }).preference} ${lc((dataOf(a) as { exchange: string }).exchange)}` : a.type));
      return mx.sort().join(',') === '10 mail1.example.test,20 mail2.example.test' ? undefined : `MX answer ${mx.join(',')}`;
    },
  }),
  () => ({
    kind: 'static',
    qname: 'shop.example.test',
    qtype: 'A',
    check: (p) => {
      const got = (p.answers ?? []).map((a) => `${lc(a.name)} ${a.type} ${lc(String(dataOf(a)))}`);
      const want = ['shop.example.test CNAME www.example.test', 'www.example.test A 192.0.2.10'];
      return got.join('|') === want.join('|') ? undefined : `CNAME chain ${got.join('|')}`;
    },
  }),
  () => ({ kind: 'static', qname: `v.${lc(SOAK_ZONE)}`, qtype: 'A', check: (p) => {
    const got = addresses(p, `v.${SOAK_ZONE}`, 'A');
    if (typeof got === 'string') return got;
    return got.length === 1 && (got[0] === VARIANT_ADDRESS.A || got[0] === VARIANT_ADDRESS.B) ? undefined : `v answer ${got.join(',') || '(empty)'}`;
  } }),
];

const SERVICE_PLANS: readonly (() => Plan)[] = SERVICES.map((s) => {
  const allowed = new Set(s.members.map((m) => m.address));
  const qname = lc(s.name);
  return (): Plan => ({
    kind: 'service',
    qname,
    qtype: 'A',
    service: s.name,
    check: (p) => {
      const got = addresses(p, qname, 'A');
      if (typeof got === 'string') return got;
      if (got.length === 0) return 'empty answer for a service';
      const foreign = got.filter((a) => !allowed.has(a));
      return foreign.length === 0 ? undefined : `foreign address ${foreign.join(',')} for ${s.name}`;
    },
  });
});

const NXDOMAIN: readonly (() => Plan)[] = [
  () => ({ kind: 'nxdomain', qname: `nx-${rand()}.example.test`, qtype: 'A', check: negative }),
  () => ({ kind: 'nxdomain', qname: `nx-${rand()}.${lc(SOAK_ZONE)}`, qtype: 'A', check: negative }),
];

/** The generation in a gen.soak.test TXT answer, or the answer as text when it holds none. */
function generation(p: dnsPacket.Packet): number | string {
  const txt = (p.answers ?? []).map((a) => (a.type === 'TXT' ? ([] as (Buffer | string)[]).concat(dataOf(a) as Buffer[]).map(String).join('') : a.type));
  const m = txt.length === 1 ? /^gen-([0-9]+)$/.exec(txt[0]!) : null;
  return m === null ? `generation answer ${JSON.stringify(txt)}` : Number(m[1]);
}

const GENERATION = (): Plan => ({
  kind: 'generation',
  qname: `gen.${lc(SOAK_ZONE)}`,
  qtype: 'TXT',
  check: (p, w) => {
    const gen = generation(p);
    if (typeof gen === 'string') return gen;
    if (gen === BROKEN_GENERATION) return 'the broken config is being served';
    if (gen > w.written) return `generation ${gen} was never written (newest ${w.written})`;
    if (gen < w.confirmed) return `generation ${gen} served after generation ${w.confirmed} was confirmed loaded`;
    return undefined;
  },
});

/** The mix: of every 20 queries, 8 static, 7 service, 4 NXDOMAIN, 1 generation. */
const MIX: readonly (() => Plan)[] = [
  ...STATIC,
  STATIC[3]!,
  ...SERVICE_PLANS,
  ...SERVICE_PLANS,
  SERVICE_PLANS[0]!,
  ...NXDOMAIN,
  ...NXDOMAIN,
  GENERATION,
];

/** The i-th query of the mix. */
export function planFor(i: number): Plan {
  return MIX[i % MIX.length]!();
}

/** The expected rcode of a kind. */
export function expectedRcode(kind: Kind): 'NOERROR' | 'NXDOMAIN' {
  return kind === 'nxdomain' ? 'NXDOMAIN' : 'NOERROR';
}

/**
 * Everything a response must satisfy: decodable, a response to this
 * question (the letter case echoed), authoritative, not truncated, the
 * expected rcode (SERVFAIL named as such), then the plan's own check.
 */
export function judge(raw: Buffer, plan: Plan, w: GenerationWindow): { reason: string; detail: string } | undefined {
  let p: dnsPacket.DecodedPacket;
  try {
    p = dnsPacket.decode(raw);
  } catch (err) {
    return { reason: 'malformed', detail: (err as Error).message };
  }
  const q = p.questions?.[0];
  if (p.type !== 'response' || q === undefined || q.name !== plan.qname || q.type !== plan.qtype) {
    return { reason: 'malformed', detail: `question ${q?.name ?? '(none)'} ${q?.type ?? ''} in a ${p.type ?? '?'}` };
  }
  const rcode = (p as { rcode?: string }).rcode ?? 'NOERROR';
  if (rcode === 'SERVFAIL') return { reason: 'servfail', detail: plan.qname };
  if (rcode !== expectedRcode(plan.kind)) return { reason: 'wrong rcode', detail: `${rcode} for ${plan.qname} ${plan.qtype}` };
  if (p.flag_tc) return { reason: 'truncated', detail: plan.qname };
  if (!p.flag_aa) return { reason: 'not authoritative', detail: plan.qname };
  const wrong = plan.check(p, w);
  return wrong === undefined ? undefined : { reason: plan.kind === 'service' ? 'wrong service answer' : 'wrong answer', detail: `${plan.qname} ${plan.qtype}: ${wrong}` };
}

/** The generation a good gen.soak.test answer carries. */
export function generationOf(raw: Buffer): number {
  const g = generation(dnsPacket.decode(raw));
  return typeof g === 'number' ? g : -1;
}

/** The sorted addresses of a service answer, as one key, for counting distinct answers. */
export function answerKey(raw: Buffer): string {
  const p = dnsPacket.decode(raw);
  return (p.answers ?? [])
    .map((a) => String(dataOf(a)))
    .sort()
    .join(',');
}
