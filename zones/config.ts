// The YAML configuration as written: parsed, checked against config.schema.json
// and a few rules a schema cannot express, with every problem reported at the
// file, line and column an operator has to edit. Defaults are applied later, in
// compile.ts, so RawConfig stays a faithful picture of the file.

import { isIP } from 'node:net';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, isNode, isScalar, type Document, type Node } from 'yaml';
import schema from './config.schema.json' with { type: 'json' };
import { parseName } from '../server/wire/name.js';
import { analyzeServices } from './services.js';

export interface RawRecordObject {
  name: string;
  type: string;
  ttl?: number | string;
  data: string;
}

export type RawRecord = string | RawRecordObject;

export interface RawZone {
  origin: string;
  file?: string;
  ttl?: number | string;
  records?: RawRecord[];
  /** Served only in these views. */
  views?: string[];
  /** Zone transfers (AXFR) to these client prefixes; absent = refused. */
  transfer?: { allow: string[] };
}

export interface RawView {
  name: string;
  match?: string[];
  ecs?: boolean;
}

export type StatusSpecRaw = number | [number, number];

/** A probe as written: timing keys plus the checker's own keys (probes/checkers/*.ts). */
export interface RawProbe {
  type?: 'http' | 'https' | 'tcp' | 'dns' | 'none';
  interval?: number | string;
  timeout?: number | string;
  recheck?: number | string;
  jitter?: number | string;
  rise?: number;
  fall?: number;
  port?: number;
  path?: string;
  method?: string;
  host?: string;
  servername?: string;
  headers?: Record<string, string>;
  expect_status?: StatusSpecRaw[];
  expect_body?: string;
  tls_verify?: boolean;
  send?: string;
  expect?: string;
  name?: string;
  qtype?: string | number;
  expect_rcode?: string | number;
  expect_answer?: string;
  recursion_desired?: boolean;
}

export interface RawMember {
  name: string;
  addresses?: string[];
  priority?: number;
  weight?: number;
  probe?: RawProbe;
  target?: string;
  port?: number;
  exchange?: string;
}

export interface RawService {
  name: string;
  views?: string[];
  type?: 'address' | 'srv' | 'mx';
  policy?: 'failover' | 'multivalue' | 'weighted';
  ttl?: number | string;
  degraded_ttl?: number | string;
  settle?: number | string;
  min_healthy?: number;
  max_answers?: number;
  count?: number;
  when_all_down?: 'fail_open' | { last_resort: string[] };
  failback?: 'immediate' | 'manual' | { ramp?: number[]; step?: number | string };
  damping?: boolean | { penalty?: number; suppress?: number; reuse?: number; half_life?: number | string };
  initial_state?: 'unknown' | 'up' | 'down';
  probe?: RawProbe;
  members: RawMember[];
}

export interface RawConfig {
  listen?: string[];
  server?: {
    /** Account (name or uid) to switch to after binding, when started as root. */
    user?: string | number;
    group?: string | number;
  };
  edns?: { udp_payload?: number };
  tcp?: {
    idle_timeout?: number | string;
    max_connections?: number;
    max_connections_per_client?: number;
    max_buffered_bytes?: number;
    max_queries_per_connection?: number;
  };
  chaos?: { version?: string; identity?: string };
  rate_limit?: {
    responses_per_second?: number;
    nxdomains_per_second?: number;
    errors_per_second?: number;
    slip?: number;
    window?: number | string;
    ipv4_prefix_length?: number;
    ipv6_prefix_length?: number;
    exempt_clients?: string[];
    table_size?: number;
  };
  cookies?: { enabled?: boolean; secret_file?: string; previous_secret_file?: string };
  admin?: { listen: string; token_file?: string };
  metrics?: { listen: string };
  node?: { id?: string; pop?: string };
  replication?: {
    redis?: {
      url?: string;
      password_file?: string;
      username?: string;
      tls?: { ca_file?: string; servername?: string; verify?: boolean };
      sentinels?: string[];
      sentinel_name?: string;
      cluster?: string[];
      prefix?: string;
    };
    quorum?: 'majority' | number;
    stale_after?: number | string;
    heartbeat?: number | string;
    resync?: number | string;
    outage_grace?: number | string;
    divergence_after?: number | string;
  };
  log?: { level?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'; query_log?: { sample: number } };
  views?: RawView[];
  zones: RawZone[];
  services?: RawService[];
}

/** A path into the config document, as ajv and yaml both understand it: keys and array indexes. */
export type ConfigPath = readonly (string | number)[];

export interface Position {
  line: number;
  column: number;
}

/** One problem in the configuration or a zone it loads. `line` 0 means the whole file. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly file: string;
  readonly line: number;
  readonly column: number | undefined;
  /** Where in the config document ("zones[0].origin"); undefined for errors inside zone files. */
  readonly path: string | undefined;
  /** The message without the location prefix. */
  readonly detail: string;

  constructor(detail: string, where: { file: string; line?: number; column?: number; path?: string }) {
    const line = where.line ?? 0;
    let loc = where.file;
    if (line > 0) loc += `:${line}`;
    if (line > 0 && where.column !== undefined) loc += `:${where.column}`;
    super(`${loc}: ${where.path ? `${where.path}: ` : ''}${detail}`);
    this.file = where.file;
    this.line = line;
    this.column = line > 0 ? where.column : undefined;
    this.path = where.path || undefined;
    this.detail = detail;
  }
}

/** Everything wrong with a configuration, so one run shows every fix needed. */
export class ConfigErrors extends Error {
  override name = 'ConfigErrors';
  readonly errors: readonly ConfigError[];

  constructor(errors: readonly ConfigError[]) {
    const n = errors.length;
    super(`${n} configuration error${n === 1 ? '' : 's'}:\n${errors.map((e) => e.message).join('\n')}`);
    this.errors = errors;
  }
}

export interface ParsedConfig {
  readonly file: string;
  readonly raw: RawConfig;
  /** Line and column of the node at `path`, or of its nearest existing ancestor. */
  locate(path: ConfigPath): Position;
  /** Line and column of the key of the pair at `path` (the value's position when the key is absent). */
  locateKey(path: ConfigPath): Position;
}

/** "zones[0].records[3]" from ["zones", 0, "records", 3]. */
export function formatPath(path: ConfigPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

// Ajv is costly to construct and compile; one validator serves every load.
let validator: ReturnType<Ajv['compile']> | undefined;
function getValidator(): ReturnType<Ajv['compile']> {
  if (validator) return validator;
  // verbose: errors carry their parentSchema, where our "x-message" overrides live.
  const ajv = new Ajv({ allErrors: true, verbose: true, allowUnionTypes: true, strict: true, strictRequired: false });
  ajv.addKeyword({ keyword: 'x-message', schemaType: 'object' });
  validator = ajv.compile(schema);
  return validator;
}

function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}

function ajvMessage(err: ErrorObject): string {
  const custom = (err.parentSchema as { 'x-message'?: Record<string, string> } | undefined)?.['x-message'];
  const override = custom?.[err.keyword];
  // "{key}" in an additionalProperties message names the offending key.
  if (override) return override.replace('{key}', String(err.params['additionalProperty'] ?? ''));
  switch (err.keyword) {
    case 'required':
      return `missing required key "${String(err.params['missingProperty'])}"`;
    case 'additionalProperties': {
      const allowed = Object.keys((err.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      return `unknown key "${String(err.params['additionalProperty'])}"` + (allowed.length ? ` (expected one of: ${allowed.join(', ')})` : '');
    }
    case 'type':
      return `must be ${String(err.params['type']).replace(/,/g, ' or ')}`;
    default:
      return err.message ?? `fails ${err.keyword}`;
  }
}

/** Parses and validates config text. Throws ConfigErrors naming every problem. */
export function parseConfig(text: string, file: string): ParsedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const errors: ConfigError[] = [];

  for (const e of doc.errors) {
    const pos = e.linePos?.[0];
    // yaml's pretty message repeats the location and quotes the source line; keep the first line only.
    const detail = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    errors.push(new ConfigError(`YAML syntax: ${detail}`, { file, line: pos?.line ?? 0, column: pos?.col }));
  }
  if (errors.length) throw new ConfigErrors(errors);

  const locator = makeLocator(doc, lineCounter, text);
  const data: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {};
  const validate = getValidator();
  const valid = validate(data);
  if (!valid) {
    for (const err of prune(validate.errors ?? [])) {
      let path = pointerToPath(err.instancePath);
      let pos: Position;
      if (err.keyword === 'additionalProperties') {
        path = [...path, String(err.params['additionalProperty'])];
        pos = locator.locateKey(path);
      } else pos = locator.locate(path);
      errors.push(new ConfigError(ajvMessage(err), { file, line: pos.line, column: pos.column, path: formatPath(path) || '(top level)' }));
    }
  }
  // Runs even when the schema failed, so a bad port and a typo elsewhere show up together.
  checkSemantics(data, file, locator, errors);
  if (errors.length) throw new ConfigErrors(sortErrors(errors));
  return { file, raw: data as RawConfig, locate: locator.locate, locateKey: locator.locateKey };
}

// With allErrors, a failed oneOf also reports each branch's own failures
// ("missing file", "missing records"); the oneOf message says it better alone.
// An if/then adds "must match then schema" beside the then-branch's own errors,
// which name the problem.
function prune(errs: readonly ErrorObject[]): ErrorObject[] {
  return errs.filter((e) => !/\/oneOf\/\d+\//.test(e.schemaPath) && e.keyword !== 'if');
}

function sortErrors(errors: ConfigError[]): ConfigError[] {
  return errors.sort((a, b) => a.line - b.line || (a.column ?? 0) - (b.column ?? 0));
}

function makeLocator(doc: Document, lc: LineCounter, text: string): { locate(path: ConfigPath): Position; locateKey(path: ConfigPath): Position } {
  const posOf = (node: Node | undefined): Position | undefined => {
    let off = node?.range?.[0];
    if (off === undefined) return undefined;
    // A block scalar's range starts at its "|" or ">" header; its text starts on the next line.
    if (isScalar(node) && (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED')) {
      const nl = text.indexOf('\n', off);
      if (nl >= 0) {
        off = nl + 1;
        while (text[off] === ' ') off++;
      }
    }
    const p = lc.linePos(off);
    return { line: p.line, column: p.col };
  };
  const nodeAt = (path: ConfigPath): Node | undefined => {
    const n: unknown = path.length === 0 ? doc.contents : doc.getIn(path, true);
    return isNode(n) ? n : undefined;
  };
  const locate = (path: ConfigPath): Position => {
    for (let len = path.length; len >= 0; len--) {
      const p = posOf(nodeAt(path.slice(0, len)));
      if (p) return p;
    }
    return { line: 1, column: 1 };
  };
  const locateKey = (path: ConfigPath): Position => {
    const parent = nodeAt(path.slice(0, -1));
    const key = path[path.length - 1];
    if (isMap(parent)) {
      for (const pair of parent.items) {
        const k = isScalar(pair.key) ? pair.key.value : pair.key;
        if (k === key || String(k) === String(key)) {
          const p = posOf(isNode(pair.key) ? pair.key : undefined);
          if (p) return p;
        }
      }
    }
    return locate(path);
  };
  return { locate, locateKey };
}

// Rules beyond the schema's reach: values that must make sense, not just have a shape.
// The data may have failed the schema, so every value is checked for its type
// first and shape problems are left to the schema's messages.
function checkSemantics(data: unknown, file: string, loc: ReturnType<typeof makeLocator>, errors: ConfigError[]): void {
  const fail = (path: ConfigPath, detail: string, key = false): void => {
    const pos = key ? loc.locateKey(path) : loc.locate(path);
    errors.push(new ConfigError(detail, { file, line: pos.line, column: pos.column, path: formatPath(path) }));
  };
  const cfg = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
  const listen = Array.isArray(cfg['listen']) ? (cfg['listen'] as unknown[]) : [];
  listen.forEach((entry, i) => {
    if (typeof entry !== 'string') return;
    const parsed = splitHostPort(entry);
    if (!parsed) return;
    if (isIP(parsed.host) === 0) fail(['listen', i], `"${parsed.host}" is not an IP address`);
    else if (parsed.port > 65535) fail(['listen', i], `port ${parsed.port} is out of range (0..65535)`);
  });
  const zones = Array.isArray(cfg['zones']) ? (cfg['zones'] as unknown[]) : [];
  zones.forEach((z, i) => {
    const origin = typeof z === 'object' && z !== null ? (z as Record<string, unknown>)['origin'] : undefined;
    if (typeof origin !== 'string' || origin === '') return;
    try {
      parseName(absolute(origin));
    } catch (e) {
      fail(['zones', i, 'origin'], `bad zone name: ${(e as Error).message}`);
    }
  });
  analyzeServices(data, file, (path) => loc.locate(path).line, fail);
}

/** "ipv4:port" or "[v6]:port" into parts (the schema's listen pattern); undefined when it has neither shape. */
export function splitHostPort(entry: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(entry);
  if (!m) return undefined;
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

/** Zone origins in the config are always absolute; the trailing dot is optional there. */
export function absolute(name: string): string {
  return name.endsWith('.') && !name.endsWith('\\.') ? name : `${name}.`;
}

/**
 * `server.user` / `server.group` for ServerSettings: ids as decimal text, so
 * that dropPrivileges (server/privileges.ts) resolves both forms alike. The
 * account is looked up only when privileges are dropped: a config is often
 * checked on another host than the one it runs on.
 */
export function compileServerAccount(raw: RawConfig): { user?: string; group?: string } {
  const s = raw.server;
  const out: { user?: string; group?: string } = {};
  if (s?.user !== undefined) out.user = String(s.user);
  if (s?.group !== undefined) out.group = String(s.group);
  return out;
}
