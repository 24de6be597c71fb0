// The `views:` and `services:` config keys: checked and compiled to
// the contract of service.ts. One analysis serves both places that need it:
// parseConfig (errors only, on data that may have failed the schema, so every
// value is type-checked before use) and compileConfig (the values, with
// defaults filled). What needs the compiled zones (is the name inside a zone,
// not below a cut, free of clashing static records) is placeServices, run by
// compileConfig once the zones are built.

import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { Cidr, CompiledMember, CompiledService, CompiledView, Damping, Failback, ProbeSpec, WhenAllDown } from './service.js';
import type { Zone } from './zone.js';
import type { ZoneRecord } from './record.js';
import { absolute, splitHostPort, type ConfigPath } from './config.js';
import { parseDuration } from './compile.js';
import { parseIPv6, parseTtl } from './rdata-text.js';
import { TYPE, typeName } from '../server/wire/constants.js';
import { firstLabelIsWildcard, formatName, isSubdomain, lowerKey, parentKey, parseName } from '../server/wire/name.js';
import { CheckerSpecError } from '../probes/checkers/types.js';
import { httpChecker } from '../probes/checkers/http.js';
import { tcpChecker } from '../probes/checkers/tcp.js';
import { dnsChecker } from '../probes/checkers/dns.js';

export const SERVICE_DEFAULTS = {
  type: 'address',
  policy: 'failover',
  ttl: 60,
  /** Capped at `ttl` when only ttl is given. */
  degradedTtl: 10,
  settleMs: 60_000,
  minHealthy: 1,
  maxAnswers: 8,
  count: 1,
  priority: 1,
  weight: 1,
  initialState: 'unknown',
  failback: { mode: 'ramp', percent: [10, 50, 100], stepMs: 20_000 },
  damping: { enabled: true, penalty: 1000, suppress: 2000, reuse: 750, halfLifeMs: 60_000 },
} as const;

export const PROBE_DEFAULTS = {
  type: 'none',
  intervalMs: 500,
  timeoutMs: 1000,
  recheckMs: 200,
  jitterMs: 50,
  rise: 3,
  fall: 5,
} as const;

type ProbeType = ProbeSpec['type'];
const PROBE_TYPES: readonly ProbeType[] = ['http', 'https', 'tcp', 'dns', 'none'];
/** Keys every probe type takes. */
const TIMING_KEYS = ['type', 'interval', 'timeout', 'recheck', 'jitter', 'rise', 'fall'] as const;
/** The checker's own spec fields per probe type (probes/checkers/*.ts), as written in the config. */
export const PROBE_PARAMS: Readonly<Record<ProbeType, readonly string[]>> = {
  http: ['port', 'path', 'method', 'host', 'servername', 'headers', 'expect_status', 'expect_body', 'tls_verify'],
  https: ['port', 'path', 'method', 'host', 'servername', 'headers', 'expect_status', 'expect_body', 'tls_verify'],
  tcp: ['port', 'send', 'expect'],
  dns: ['port', 'name', 'qtype', 'expect_rcode', 'expect_answer', 'recursion_desired'],
  none: [],
};
/** Params that are a substring, or a regex when written "/regex/flags". */
const MATCHER_PARAMS: ReadonlySet<string> = new Set(['expect_body', 'expect']);

/** Reports a problem at a config path; `key` points at the key rather than the value. */
export type Report = (path: ConfigPath, detail: string, key?: boolean) => void;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const int = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) ? v : undefined);
const has = (o: Obj | undefined, k: string): boolean => o !== undefined && Object.prototype.hasOwnProperty.call(o, k);

// ---------------------------------------------------------------- addresses

/** A member or last-resort address: an IPv4 or IPv6 literal without a zone id. */
export function addressFamily(text: string): 4 | 6 | undefined {
  if (text.includes('%')) return undefined;
  const f = isIP(text);
  return f === 4 ? 4 : f === 6 ? 6 : undefined;
}

function v4Bytes(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

/**
 * "10.0.0.0/8", "::1/128", or a bare address (a /32 or /128). Throws RangeError
 * with an operator-facing message for a bad address or prefix, host bits set
 * beyond the prefix, or an IPv4-mapped IPv6 prefix (clients arriving as
 * ::ffff:a.b.c.d are matched as IPv4, so such a prefix would never match).
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const family = addressFamily(addr);
  if (family === undefined) throw new RangeError(`"${text}" is not a CIDR prefix: "${addr}" is not an IP address`);
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > max) throw new RangeError(`"${text}" has a bad prefix length "${p}" (0..${max} for IPv${family})`);
    prefix = Number(p);
  }
  const bytes = family === 4 ? v4Bytes(addr) : parseIPv6(addr);
  if (family === 6 && bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff && prefix >= 96) {
    throw new RangeError(`"${text}" is an IPv4-mapped prefix, which never matches: IPv4 clients are matched as IPv4; write "${[...bytes.subarray(12)].join('.')}/${prefix - 96}"`);
  }
  const masked = Uint8Array.from(bytes);
  for (let i = 0; i < masked.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    masked[i] = masked[i]! & ((0xff00 >> bits) & 0xff);
  }
  if (masked.some((b, i) => b !== bytes[i])) throw new RangeError(`${text} has host bits set (the network is ${formatCidr({ family, bytes: masked, prefix })})`);
  return { family, bytes: masked, prefix };
}

/** Canonical text of a prefix, for messages and logs. */
export function formatCidr(c: Cidr): string {
  if (c.family === 4) return `${[...c.bytes].join('.')}/${c.prefix}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((c.bytes[i]! << 8) | c.bytes[i + 1]!).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const text = best < 0 ? groups.join(':') : `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
  return `${text}/${c.prefix}`;
}

// ---------------------------------------------------------------- analysis

/** A service as compiled from the config alone; placeServices adds its zone. */
export interface ServiceDraft {
  readonly service: Omit<CompiledService, 'zone'>;
  /** Index in the config's services list. */
  readonly index: number;
}

export interface Analysis {
  readonly views: readonly CompiledView[];
  /** Only the services without errors. */
  readonly services: readonly ServiceDraft[];
}

/**
 * Checks and compiles `views`, `zones[].views` and `services`.
 * `lineOf` gives the line of a config path, for CompiledService.where.
 */
export function analyzeServices(data: unknown, file: string, lineOf: (path: ConfigPath) => number, report: Report): Analysis {
  const cfg = isObj(data) ? data : {};
  const seen = new Set<string>();
  // A service probe's key can be at fault for several members: say it once.
  const once: Report = (path, detail, key) => {
    const id = `${JSON.stringify(path)}\n${detail}`;
    if (seen.has(id)) return;
    seen.add(id);
    report(path, detail, key);
  };
  const views = analyzeViews(cfg['views'], once);
  const viewNames = new Set(views.map((v) => v.name));
  const checkViewList = (value: unknown, path: ConfigPath): string[] => {
    const out: string[] = [];
    list(value).forEach((v, j) => {
      if (typeof v !== 'string') return;
      if (!viewNames.has(v)) {
        const known = viewNames.size ? `declared views: ${[...viewNames].join(', ')}` : 'the configuration declares no views';
        once([...path, j], `unknown view "${v}" (${known})`);
      } else if (!out.includes(v)) out.push(v);
    });
    return out;
  };
  list(cfg['zones']).forEach((z, i) => {
    if (isObj(z)) checkViewList(z['views'], ['zones', i, 'views']);
  });

  const drafts: ServiceDraft[] = [];
  const allViews = views.map((v) => v.name);
  list(cfg['services']).forEach((s, i) => {
    if (!isObj(s)) return;
    const d = analyzeService(s, i, file, lineOf, (value, path) => checkViewList(value, path), once);
    if (d) drafts.push(d);
  });

  // The same name twice: only in disjoint views (each view answers it from one service).
  const effective = (s: Omit<CompiledService, 'zone'>): readonly string[] => (s.views.length ? s.views : allViews);
  const byName = new Map<string, ServiceDraft[]>();
  for (const d of drafts) {
    const earlier = byName.get(d.service.name) ?? [];
    byName.set(d.service.name, [...earlier, d]);
    for (const prior of earlier) {
      const a = effective(prior.service);
      const shared = effective(d.service).filter((v) => a.includes(v));
      if (allViews.length && shared.length === 0) continue;
      const where = allViews.length ? ` in view${shared.length > 1 ? 's' : ''} ${shared.map((v) => `"${v}"`).join(', ')}` : '';
      once(
        ['services', d.index, 'name'],
        `service ${formatName(d.service.name)} is already defined${where} by services[${prior.index}] (line ${prior.service.where.line}); the same name may only be a service again in other views`,
      );
      break;
    }
  }
  // Health is kept per member id; two members sharing one must probe the same thing.
  const byId = new Map<string, { member: CompiledMember; index: number }>();
  const ok: ServiceDraft[] = [];
  for (const d of drafts) {
    let clash = false;
    d.service.members.forEach((m, j) => {
      const prior = byId.get(m.id);
      if (prior && prior.index !== d.index && prior.member.probeKey !== m.probeKey) {
        clash = true;
        once(
          ['services', d.index, 'members', j, 'name'],
          `member ${m.id} is also in services[${prior.index}] with other addresses or another probe; health is kept per member name, so name this one differently`,
        );
      } else if (!prior) byId.set(m.id, { member: m, index: d.index });
    });
    if (!clash) ok.push(d);
  }
  return { views, services: ok };
}

function isLoopback(host: string): boolean {
  return host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

function analyzeViews(value: unknown, report: Report): CompiledView[] {
  const out: CompiledView[] = [];
  const firstAt = new Map<string, number>();
  let defaultAt: number | undefined;
  list(value).forEach((v, i) => {
    if (!isObj(v)) return;
    const name = str(v['name']);
    const match: Cidr[] = [];
    list(v['match']).forEach((m, j) => {
      if (typeof m !== 'string') return;
      try {
        match.push(parseCidr(m.trim()));
      } catch (e) {
        report(['views', i, 'match', j], (e as Error).message);
      }
    });
    if (defaultAt !== undefined) {
      report(['views', defaultAt], `view "${str((list(value)[defaultAt] as Obj)['name']) ?? ''}" has no "match", so it matches every client and must be the last view; views after it would never be used`);
      defaultAt = undefined;
    }
    if (!has(v, 'match')) defaultAt = i;
    if (name === undefined) return;
    const prior = firstAt.get(name);
    if (prior !== undefined) {
      report(['views', i, 'name'], `view "${name}" is already defined by views[${prior}]`);
      return;
    }
    firstAt.set(name, i);
    // Accepting the key and then ignoring it would be worse than refusing it.
    if (v['ecs'] === true) report(['views', i, 'ecs'], 'EDNS Client Subnet matching is not implemented yet; views match the source address');
    out.push({ name, match, useEcs: false });
  });
  return out;
}

// ---------------------------------------------------------------- services

function parseTtlValue(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 2147483647 ? v : undefined;
  if (typeof v === 'string') return parseTtl(v);
  return undefined;
}

function durationMs(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return parseDuration(v);
  if (typeof v === 'string' && /^[0-9]+(\.[0-9]+)?(ms|s|m|h)$/.test(v)) return parseDuration(v);
  return undefined;
}

function nameKey(text: string): string {
  return lowerKey(parseName(absolute(text)));
}

function analyzeService(
  s: Obj,
  i: number,
  file: string,
  lineOf: (path: ConfigPath) => number,
  views: (value: unknown, path: ConfigPath) => string[],
  report: Report,
): ServiceDraft | undefined {
  const P: ConfigPath = ['services', i];
  let valid = true;
  const fail = (path: ConfigPath, detail: string, key?: boolean): void => {
    valid = false;
    report(path, detail, key);
  };

  let name: string | undefined;
  const nameText = str(s['name']);
  if (nameText !== undefined && nameText !== '') {
    try {
      name = nameKey(nameText);
      if (firstLabelIsWildcard(name)) fail([...P, 'name'], `a service name cannot be a wildcard`);
    } catch (e) {
      fail([...P, 'name'], `bad service name: ${(e as Error).message}`);
    }
  }
  const viewList = views(s['views'], [...P, 'views']);
  const kind = (['address', 'srv', 'mx'] as const).find((k) => k === s['type']) ?? SERVICE_DEFAULTS.type;
  const policy = (['failover', 'multivalue', 'weighted'] as const).find((k) => k === s['policy']) ?? SERVICE_DEFAULTS.policy;

  const ttlOf = (key: string, dflt: number): number => {
    try {
      return parseTtlValue(s[key]) ?? dflt;
    } catch (e) {
      fail([...P, key], (e as Error).message);
      return dflt;
    }
  };
  const ttl = ttlOf('ttl', SERVICE_DEFAULTS.ttl);
  const degradedTtl = ttlOf('degraded_ttl', Math.min(SERVICE_DEFAULTS.degradedTtl, ttl));
  if (degradedTtl > ttl) {
    fail([...P, has(s, 'degraded_ttl') ? 'degraded_ttl' : 'ttl'], `degraded_ttl ${degradedTtl} is longer than ttl ${ttl}; it must be at most ttl`);
  }
  const positive = (path: ConfigPath, v: unknown, dflt: number): number => {
    const ms = durationMs(v);
    if (ms === undefined) return dflt;
    if (ms <= 0) fail(path, 'must be longer than 0');
    return ms;
  };
  const settleMs = durationMs(s['settle']) ?? SERVICE_DEFAULTS.settleMs;

  // when_all_down
  let whenAllDown: WhenAllDown = { mode: 'fail_open' };
  const wad = s['when_all_down'];
  if (isObj(wad)) {
    const v4: string[] = [];
    const v6: string[] = [];
    addressList(wad['last_resort'], [...P, 'when_all_down', 'last_resort'], v4, v6, fail);
    whenAllDown = { mode: 'last_resort', v4, v6 };
  }

  // failback
  let failback: Failback = { ...SERVICE_DEFAULTS.failback, percent: [...SERVICE_DEFAULTS.failback.percent] };
  const fb = s['failback'];
  if (fb === 'immediate' || fb === 'manual') failback = { mode: fb };
  else if (isObj(fb)) {
    const rampPath: ConfigPath = [...P, 'failback', 'ramp'];
    const percent = Array.isArray(fb['ramp']) ? fb['ramp'].filter((p): p is number => int(p) !== undefined) : [...SERVICE_DEFAULTS.failback.percent];
    if (percent.length === list(fb['ramp']).length || !Array.isArray(fb['ramp'])) {
      percent.forEach((p, k) => {
        if (k > 0 && p <= percent[k - 1]!) fail([...rampPath, k], `ramp percentages must increase: ${p} follows ${percent[k - 1]}`);
      });
      if (percent.length && percent[percent.length - 1] !== 100) {
        fail(Array.isArray(fb['ramp']) ? [...rampPath, percent.length - 1] : [...P, 'failback'], `the last ramp step must be 100 (all answers back on the recovered members)`);
      }
    }
    const stepMs = positive([...P, 'failback', 'step'], fb['step'], SERVICE_DEFAULTS.failback.stepMs);
    failback = { mode: 'ramp', percent, stepMs };
  }

  // damping
  let damping: Damping = { ...SERVICE_DEFAULTS.damping };
  const dm = s['damping'];
  if (dm === false) damping = { ...SERVICE_DEFAULTS.damping, enabled: false };
  else if (isObj(dm)) {
    const D = SERVICE_DEFAULTS.damping;
    damping = {
      enabled: true,
      penalty: int(dm['penalty']) ?? D.penalty,
      suppress: int(dm['suppress']) ?? D.suppress,
      reuse: int(dm['reuse']) ?? D.reuse,
      halfLifeMs: positive([...P, 'damping', 'half_life'], dm['half_life'], D.halfLifeMs),
    };
    if (damping.reuse >= damping.suppress) {
      fail([...P, 'damping', has(dm, 'reuse') ? 'reuse' : 'suppress'], `reuse (${damping.reuse}) must be below suppress (${damping.suppress})`);
    }
  }

  const initialState = (['unknown', 'up', 'down'] as const).find((k) => k === s['initial_state']) ?? SERVICE_DEFAULTS.initialState;
  const serviceProbe = isObj(s['probe']) ? s['probe'] : undefined;

  // members
  const members: CompiledMember[] = [];
  const memberAt = new Map<string, number>();
  const label = name !== undefined ? formatName(name) : nameText ?? '';
  list(s['members']).forEach((m, j) => {
    if (!isObj(m)) return;
    const M: ConfigPath = [...P, 'members', j];
    const memberName = str(m['name']);
    if (memberName !== undefined) {
      const prior = memberAt.get(memberName);
      if (prior !== undefined) fail([...M, 'name'], `member "${memberName}" is already defined by members[${prior}] (line ${lineOf([...P, 'members', prior])})`);
      else memberAt.set(memberName, j);
    }
    const v4: string[] = [];
    const v6: string[] = [];
    addressList(m['addresses'], [...M, 'addresses'], v4, v6, fail);
    const priority = int(m['priority']) ?? SERVICE_DEFAULTS.priority;
    const weight = int(m['weight']) ?? SERVICE_DEFAULTS.weight;

    const only = (key: string, k: string): void => {
      if (has(m, key)) fail([...M, key], `"${key}" applies to ${k} services only (this service has type ${kind})`, true);
    };
    let srv: CompiledMember['srv'];
    let mx: CompiledMember['mx'];
    if (kind === 'address') {
      if (!has(m, 'addresses')) fail(M, `member "${memberName ?? j}" of an address service needs "addresses"`);
      only('target', 'srv');
      only('port', 'srv');
      only('exchange', 'mx');
    } else if (kind === 'srv') {
      const missing = ['target', 'port'].filter((k) => !has(m, k));
      if (missing.length) fail(M, `member "${memberName ?? j}" of an srv service needs ${missing.map((k) => `"${k}"`).join(' and ')}`);
      only('exchange', 'mx');
      const target = hostName(m['target'], [...M, 'target'], fail);
      const port = int(m['port']);
      if (target !== undefined && port !== undefined) srv = { target, port };
    } else {
      if (!has(m, 'exchange')) fail(M, `member "${memberName ?? j}" of an mx service needs "exchange"`);
      only('target', 'srv');
      only('port', 'srv');
      const exchange = hostName(m['exchange'], [...M, 'exchange'], fail);
      if (exchange !== undefined) mx = { exchange };
    }

    const memberProbe = isObj(m['probe']) ? m['probe'] : undefined;
    const { probe, complete } = effectiveProbe(serviceProbe, memberProbe, [...P, 'probe'], [...M, 'probe'], fail);
    if (probe.type !== 'none') {
      const first = v4[0] ?? v6[0];
      if (!has(m, 'addresses')) {
        if (kind !== 'address') fail(M, `member "${memberName ?? j}" has ${article(probe.type)} ${probe.type} probe but no "addresses" to probe`);
      } else if (first !== undefined && complete) {
        const err = checkerError(probe, first);
        if (err !== undefined) fail(memberProbe ? [...M, 'probe'] : [...P, 'probe'], err);
      }
    }
    if (memberName === undefined) return;
    const member: CompiledMember = {
      id: `${label}/${memberName}`,
      name: memberName,
      v4,
      v6,
      priority,
      weight,
      ...(srv ? { srv } : {}),
      ...(mx ? { mx } : {}),
      probe,
      probeKey: probeKey(v4, v6, probe),
    };
    members.push(member);
  });
  if (policy === 'weighted' && members.length && members.every((m) => m.weight === 0)) {
    fail([...P, 'members'], 'the weighted policy needs at least one member with a weight above 0');
  }

  if (!valid || name === undefined || members.length !== list(s['members']).length || members.length === 0) return undefined;
  return {
    index: i,
    service: {
      name,
      views: viewList,
      kind,
      policy,
      ttl,
      degradedTtl,
      settleMs,
      minHealthy: int(s['min_healthy']) ?? SERVICE_DEFAULTS.minHealthy,
      maxAnswers: int(s['max_answers']) ?? SERVICE_DEFAULTS.maxAnswers,
      count: int(s['count']) ?? SERVICE_DEFAULTS.count,
      whenAllDown,
      failback,
      damping,
      initialState,
      members,
      where: { file, line: lineOf(P) },
    },
  };
}

function addressList(value: unknown, path: ConfigPath, v4: string[], v6: string[], fail: Report): void {
  const seen = new Map<string, number>();
  list(value).forEach((a, k) => {
    if (typeof a !== 'string') return;
    const family = addressFamily(a);
    if (family === undefined) return fail([...path, k], `"${a}" is not an IP address`);
    // One spelling per address, so that "2001:DB8::1" and "2001:db8:0::1" are the same member.
    const text = family === 4 ? a : formatCidr({ family: 6, bytes: parseIPv6(a), prefix: 128 }).slice(0, -4);
    const prior = seen.get(text);
    if (prior !== undefined) return fail([...path, k], `"${a}" is listed twice (also at [${prior}])`);
    seen.set(text, k);
    (family === 4 ? v4 : v6).push(text);
  });
}

function hostName(value: unknown, path: ConfigPath, fail: Report): string | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  try {
    return nameKey(value);
  } catch (e) {
    fail(path, `bad name: ${(e as Error).message}`);
    return undefined;
  }
}

// ---------------------------------------------------------------- probes

/**
 * The member's probe: its own keys over the service's, key by key. When the
 * member names another probe type than the service, only the timing keys of
 * the service's probe carry over (its checker keys belong to the other type).
 */
function effectiveProbe(
  sp: Obj | undefined,
  mp: Obj | undefined,
  sPath: ConfigPath,
  mPath: ConfigPath,
  fail: Report,
): { probe: ProbeSpec; complete: boolean } {
  const sType = PROBE_TYPES.find((t) => t === sp?.['type']);
  const mType = PROBE_TYPES.find((t) => t === mp?.['type']);
  const type: ProbeType = mType ?? sType ?? PROBE_DEFAULTS.type;
  // key -> [value, path of the probe object it came from, whether that object names its type]
  const merged = new Map<string, { value: unknown; from: ConfigPath; typed: boolean }>();
  if (sp) {
    const carryAll = mType === undefined || sType === undefined || mType === sType;
    for (const [k, v] of Object.entries(sp)) {
      if (carryAll || (TIMING_KEYS as readonly string[]).includes(k)) merged.set(k, { value: v, from: sPath, typed: sType !== undefined });
    }
  }
  if (mp) for (const [k, v] of Object.entries(mp)) merged.set(k, { value: v, from: mPath, typed: mType !== undefined });

  const allowed = PROBE_PARAMS[type];
  const params: Record<string, unknown> = type === 'http' || type === 'https' ? { scheme: type } : {};
  for (const [k, { value, from, typed }] of merged) {
    if ((TIMING_KEYS as readonly string[]).includes(k)) continue;
    if (!allowed.includes(k)) {
      // A probe object that names its type had its keys checked by the schema already.
      const sourceType = from === sPath ? sType : mType;
      if (!typed || sourceType !== type) {
        const takes = allowed.length ? `${type} probes take: ${allowed.join(', ')}` : 'it is never probed; only timing keys are allowed';
        fail([...from, k], `"${k}" does not apply to ${type === 'none' ? 'a probe of type none' : `${article(type)} ${type} probe`} (${takes})`, true);
      }
      continue;
    }
    if (MATCHER_PARAMS.has(k) && typeof value === 'string') {
      try {
        params[k] = matcher(value);
      } catch (e) {
        fail([...from, k], `bad regular expression: ${(e as Error).message}`);
      }
      continue;
    }
    // The checkers' tables are upper case; the config need not be.
    params[k] = (k === 'qtype' || k === 'expect_rcode') && typeof value === 'string' ? value.toUpperCase() : value;
  }
  // A type the schema refused leaves nothing sensible to check against.
  const badType = (has(mp, 'type') && mType === undefined) || (has(sp, 'type') && sType === undefined);
  const missing = badType ? undefined : type === 'tcp' && !has(params, 'port') ? 'port' : type === 'dns' && !has(params, 'name') ? 'name' : undefined;
  if (missing) fail(mp ? mPath : sPath, `${article(type)} ${type} probe needs "${missing}"${missing === 'name' ? ' (the name to query)' : ''}`);

  const timing = (key: string, dflt: number, allowZero = false): number => {
    const e = merged.get(key);
    const ms = durationMs(e?.value);
    if (e === undefined || ms === undefined) return dflt;
    if (ms <= 0 && !allowZero) fail([...e.from, key], 'must be longer than 0');
    return ms;
  };
  const count = (key: string, dflt: number): number => int(merged.get(key)?.value) ?? dflt;
  const probe: ProbeSpec = {
    type,
    params,
    intervalMs: timing('interval', PROBE_DEFAULTS.intervalMs),
    timeoutMs: timing('timeout', PROBE_DEFAULTS.timeoutMs),
    recheckMs: timing('recheck', PROBE_DEFAULTS.recheckMs),
    jitterMs: timing('jitter', PROBE_DEFAULTS.jitterMs, true),
    rise: count('rise', PROBE_DEFAULTS.rise),
    fall: count('fall', PROBE_DEFAULTS.fall),
  };
  return { probe, complete: missing === undefined && !badType };
}

function article(type: string): string {
  return type === 'http' || type === 'https' ? 'an' : 'a';
}

/** "/regex/flags" is a regular expression; any other string is a substring to find. */
export function matcher(text: string): string | RegExp {
  const m = /^\/(.+)\/([dgimsuvy]*)$/s.exec(text);
  return m ? new RegExp(m[1]!, m[2]) : text;
}

/** Builds (and drops) the checker to run its own spec validation; the message when it refuses. */
function checkerError(probe: ProbeSpec, address: string): string | undefined {
  const spec = { ...probe.params, address, timeout_ms: probe.timeoutMs };
  try {
    if (probe.type === 'http' || probe.type === 'https') httpChecker(spec as unknown as Parameters<typeof httpChecker>[0]);
    else if (probe.type === 'tcp') tcpChecker(spec as unknown as Parameters<typeof tcpChecker>[0]);
    else if (probe.type === 'dns') dnsChecker(spec as unknown as Parameters<typeof dnsChecker>[0]);
  } catch (e) {
    if (e instanceof CheckerSpecError) return `bad probe: ${e.message.replace(/^(http|tcp|dns) check [^:]*: /, '')}`;
    // Anything else comes from a value of the wrong shape, which the schema reports.
  }
  return undefined;
}

/** JSON with sorted keys, regexes as "/source/flags": the same spec always gives the same text. */
function canonical(v: unknown): string {
  if (v instanceof RegExp) return JSON.stringify(`/${v.source}/${v.flags}`);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObj(v)) {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => v[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Identity of what a member's health is about: its addresses and how they are probed. */
export function probeKey(v4: readonly string[], v6: readonly string[], probe: ProbeSpec): string {
  return createHash('sha256').update(canonical({ v4, v6, probe })).digest('hex');
}

// ---------------------------------------------------------------- placement

export interface PlacedZone {
  readonly zone: Zone;
  /** The records it was compiled from, to point at a clashing static record; a function, because a reused zone parses them only then. */
  readonly records: () => readonly ZoneRecord[];
}

/** Static types that a service of each kind would shadow. */
const CLASHES: Readonly<Record<CompiledService['kind'], readonly number[]>> = {
  address: [TYPE.A, TYPE.AAAA, TYPE.CNAME],
  srv: [TYPE.SRV, TYPE.CNAME],
  mx: [TYPE.MX, TYPE.CNAME],
};

/**
 * Gives each service its zone. `zonesIn(view)` is what a view serves (view
 * zones over the shared ones); `views` are the config's view names, empty for
 * a config without views (then `zonesIn(undefined)`).
 */
export function placeServices(
  drafts: readonly ServiceDraft[],
  views: readonly string[],
  zonesIn: (view: string | undefined) => ReadonlyMap<string, PlacedZone>,
  report: Report,
): CompiledService[] {
  const out: CompiledService[] = [];
  for (const { service, index } of drafts) {
    const name = formatName(service.name);
    const inViews: (string | undefined)[] = service.views.length ? [...service.views] : views.length ? [...views] : [undefined];
    // Problem -> the views it occurs in, so that a shared zone's problem is reported once.
    const problems = new Map<string, (string | undefined)[]>();
    const problem = (detail: string, view: string | undefined): void => {
      problems.set(detail, [...(problems.get(detail) ?? []), view]);
    };
    let origin: string | undefined;
    for (const view of inViews) {
      const zones = zonesIn(view);
      let found: PlacedZone | undefined;
      for (let k: string | undefined = service.name; k !== undefined && !found; k = parentKey(k)) found = zones.get(k);
      if (!found) {
        problem(`${name} is not inside any zone served`, view);
        continue;
      }
      const zone = found.zone;
      if (origin === undefined) origin = zone.origin;
      else if (origin !== zone.origin) {
        problem(`${name} is in zone ${formatName(origin)} in one view but in zone ${formatName(zone.origin)}; a service must be in the same zone in all its views`, view);
        continue;
      }
      for (let k: string | undefined = service.name; k !== undefined && k !== zone.origin && isSubdomain(k, zone.origin); k = parentKey(k)) {
        if (zone.nodes.get(k)?.isCut) {
          problem(`${name} is ${k === service.name ? 'at' : 'below'} the delegation ${formatName(k)} in zone ${formatName(zone.origin)}; a service must be in the zone's own data`, view);
          break;
        }
      }
      const node = zone.nodes.get(service.name);
      for (const type of CLASHES[service.kind]) {
        const set = node?.rrsets.get(type);
        if (!set) continue;
        const rec = found.records().find((r) => r.type === type && lowerKey(r.owner) === service.name);
        const src = rec ? `${rec.where.file}:${rec.where.line}` : zone.source;
        const plural = set.rdatas.length > 1 ? 's' : '';
        problem(`${name} has static ${typeName(type)} record${plural} at ${src} and is also a service at ${service.where.file}:${service.where.line}`, view);
      }
    }
    for (const [detail, where] of problems) {
      const named = where.filter((v): v is string => v !== undefined);
      // Said only when it narrows things down: not for every view of a config with views.
      const suffix = named.length && named.length < views.length ? ` (view${named.length > 1 ? 's' : ''} ${named.map((v) => `"${v}"`).join(', ')})` : '';
      report(['services', index, 'name'], detail + suffix);
    }
    if (problems.size === 0 && origin !== undefined) out.push({ ...service, zone: origin });
  }
  return out;
}
