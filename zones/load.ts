// Configuration file to CompiledConfig: read the YAML, read and parse every zone
// it names, compile. A configuration with any error is refused as a whole, and
// the refusal lists every error across the config and all its zone files, so a
// reload either swaps in a complete, checked snapshot or changes nothing.

import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve as resolvePath } from 'node:path';
import type { CompiledConfig, Zone, ZoneNode } from './zone.js';
import type { ZoneRecord } from './record.js';
import { ConfigError, ConfigErrors, absolute, formatPath, parseConfig, type ParsedConfig, type RawZone } from './config.js';
import { compileConfig, compileZoneSteps, type CompileResult, type LoadedZone } from './compile.js';
import { parseMasterFileCollect, parseMasterFileSteps, ZoneFileError, ZoneFileErrors } from './masterfile.js';
import { runSliced } from './steps.js';
import { parseTtl } from './rdata-text.js';
import { DnsError } from '../server/wire/errors.js';
import { isSubdomain, lowerKey, parseName } from '../server/wire/name.js';

/** TTL of records written in the config without one when the zone sets no `ttl`; Knot DNS's default $TTL. */
export const DEFAULT_RECORD_TTL = 3600;

export interface LoadResult {
  config: CompiledConfig;
  /** Formatted "FILE:LINE: message" lines for accepted-but-suspicious data. */
  warnings: string[];
}

export interface LoadOptions {
  /**
   * The config being served, if any. A zone file whose path, origin, default
   * TTL and bytes are those of a zone in it is not parsed or compiled again:
   * its compiled zone is reused, so reloading a config beside a
   * million-record zone that did not change costs a read and a hash of that
   * file instead of a full load.
   */
  previous?: CompiledConfig;
  /**
   * Leave out zone files larger than this many bytes, for a start that
   * answers the other zones while they load (server/daemon.ts): the config
   * lists them in pendingZones, and the services inside them are left out.
   * Only zones shared by every view, with no view's own zone at or under
   * their origin, are left out (their services are then the same in every
   * view). Undefined: every zone is loaded.
   */
  deferZonesOver?: number;
  /** Stops the load (between slices of parsing, compiling, hashing), rejecting with the signal's reason. */
  signal?: AbortSignal;
}

// How each zone compiled from a file was made, keyed by its node map: that map
// is created once per compile and shared by every copy of the Zone object
// (compileConfig spreads one to add `transfer`), and it is what makes a zone
// big, so the entry lives exactly as long as some config still serves the zone.
const compiledFrom = new WeakMap<ReadonlyMap<string, ZoneNode>, { key: string; result: CompileResult<Zone> }>();

function reusable(previous: CompiledConfig | undefined): Map<string, CompileResult<Zone>> {
  const out = new Map<string, CompileResult<Zone>>();
  if (previous === undefined) return out;
  for (const zones of [previous.zones, ...previous.viewZones.values()]) {
    for (const zone of zones.values()) {
      const from = compiledFrom.get(zone.nodes);
      if (from !== undefined) out.set(from.key, from.result);
    }
  }
  return out;
}

/** Loads and checks a configuration. Throws ConfigErrors listing every problem found. */
export async function loadConfig(path: string, opts: LoadOptions = {}): Promise<LoadResult> {
  let configBytes: Buffer;
  try {
    configBytes = await readFile(path);
  } catch (e) {
    throw new ConfigErrors([new ConfigError(`cannot read configuration file: ${ioReason(e)}`, { file: path })]);
  }
  const parsed = parseConfig(configBytes.toString('utf8'), path);

  // Zones load concurrently, each into its own error list, so the report keeps config order.
  const reuse = reusable(opts.previous);
  const deferred = opts.deferZonesOver === undefined ? new Set<number>() : await deferrable(parsed, opts.deferZonesOver);
  const loads = await Promise.all(
    parsed.raw.zones.map(async (rz, i) => {
      const errors: ConfigError[] = [];
      if (deferred.has(i)) return { zone: undefined, errors };
      const zone = await loadZone(parsed, rz, i, errors, reuse, opts.signal);
      return { zone: errors.length ? undefined : zone, errors };
    }),
  );
  const errors = loads.flatMap((l) => l.errors);
  const zones = loads.map((l) => l.zone);
  const dir = dirname(path);
  const operations = { env: process.env, readFile: (f: string) => readFileSync(resolvePath(dir, f), 'utf8') };
  const result = compileConfig(parsed.raw, path, { configBytes, zones, locate: parsed.locate, operations, deferred });
  errors.push(...result.errors);
  if (errors.length || !result.value) throw new ConfigErrors(byFileThenLine(errors, path, parsed.raw.zones, zones));
  return { config: result.value, warnings: result.warnings.map((w) => w.message) };
}

/** Indexes of the zones LoadOptions.deferZonesOver leaves out. A file that cannot be read is not: loading it reports why. */
async function deferrable(parsed: ParsedConfig, overBytes: number): Promise<Set<number>> {
  const out = new Set<number>();
  const zones = parsed.raw.zones;
  const origins = zones.map((rz) => lowerKey(parseName(absolute(rz.origin))));
  await Promise.all(
    zones.map(async (rz, i) => {
      if (rz.file === undefined || rz.views !== undefined) return;
      if (zones.some((other, j) => other.views !== undefined && isSubdomain(origins[j]!, origins[i]!))) return;
      const file = isAbsolute(rz.file) ? rz.file : join(dirname(parsed.file), rz.file);
      const size = await stat(file).then(
        (s) => s.size,
        () => 0,
      );
      if (size > overBytes) out.add(i);
    }),
  );
  return out;
}

// Problems go into `errors`, which belongs to this zone alone. A zone with any
// is not compiled: that would only add echoes (a bad SOA line would also be
// reported as "no SOA").
async function loadZone(
  parsed: ParsedConfig,
  rz: RawZone,
  i: number,
  errors: ConfigError[],
  reuse: ReadonlyMap<string, CompileResult<Zone>>,
  signal: AbortSignal | undefined,
): Promise<LoadedZone | undefined> {
  const configFile = parsed.file;
  const at = (path: (string | number)[], key = false): { file: string; line: number; column: number; path: string } => {
    const pos = key ? parsed.locateKey(path) : parsed.locate(path);
    return { file: configFile, line: pos.line, column: pos.column, path: formatPath(path) };
  };
  const origin = lowerKey(parseName(absolute(rz.origin)));

  let zoneTtl: number | undefined;
  if (rz.ttl !== undefined) {
    try {
      zoneTtl = typeof rz.ttl === 'number' ? rz.ttl : parseTtl(rz.ttl);
    } catch (e) {
      errors.push(new ConfigError(dnsMessage(e), at(['zones', i, 'ttl'])));
    }
  }

  if (rz.file !== undefined) {
    const file = isAbsolute(rz.file) ? rz.file : join(dirname(configFile), rz.file);
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (e) {
      errors.push(new ConfigError(`cannot read zone file ${file}: ${ioReason(e)}`, at(['zones', i, 'file'], true)));
      return undefined;
    }
    const opts = zoneTtl === undefined ? { origin, file } : { origin, file, defaultTtl: zoneTtl };
    const digest = await digestSliced(bytes, signal);
    // Everything the compiled zone depends on; the config's line numbers only
    // appear in errors, and a zone with errors is never reused.
    const key = JSON.stringify([origin, file, zoneTtl ?? null, digest]);
    const previous = reuse.get(key);
    if (previous !== undefined) {
      // The records are needed only to point at a static record a service
      // clashes with (placeServices), a refused config: parse them then.
      let records: readonly ZoneRecord[] | undefined;
      return {
        get records() {
          return (records ??= parseMasterFileCollect(bytes.toString('utf8'), opts).records);
        },
        source: file,
        bytes,
        digest,
        compiled: previous,
      };
    }
    const r = await runSliced(parseMasterFileSteps(bytes.toString('utf8'), opts), undefined, signal);
    errors.push(...r.errors.map(fromZoneFileError));
    if (r.errors.length) return { records: r.records, source: file, bytes, digest };
    const compiled = await runSliced(compileZoneSteps({ origin, records: r.records, source: file, declaredAt: at(['zones', i]) }), undefined, signal);
    if (compiled.value !== undefined && compiled.errors.length === 0) compiledFrom.set(compiled.value.nodes, { key, result: compiled });
    return { records: r.records, source: file, bytes, digest, compiled };
  }

  const records: ZoneRecord[] = [];
  (rz.records ?? []).forEach((item, j) => {
    const path = ['zones', i, 'records', j];
    const firstLine = parsed.locate(path).line;
    // An object record becomes one master-file line so that both forms share one
    // parser and one set of rules and messages.
    const text = typeof item === 'string' ? item : [item.name, item.ttl ?? '', 'IN', item.type, item.data].join(' ');
    const r = parseMasterFileCollect(text, { origin, file: configFile, defaultTtl: zoneTtl ?? DEFAULT_RECORD_TTL, firstLine });
    records.push(...r.records);
    for (const e of r.errors) errors.push(new ConfigError(e.detail, { file: configFile, line: e.line, path: formatPath(path) }));
  });
  return { records, source: '<config>' };
}

// Groups the report the way an operator works through it: the config file first,
// then each zone file in config order, each from top to bottom.
function byFileThenLine(errors: ConfigError[], configFile: string, raw: readonly RawZone[], loaded: readonly (LoadedZone | undefined)[]): ConfigError[] {
  const rank = new Map<string, number>([[configFile, 0]]);
  const dir = dirname(configFile);
  raw.forEach((rz, i) => {
    const file = loaded[i]?.source ?? (rz.file === undefined ? undefined : isAbsolute(rz.file) ? rz.file : join(dir, rz.file));
    if (file !== undefined && !rank.has(file)) rank.set(file, rank.size);
  });
  const r = (e: ConfigError): number => rank.get(e.file) ?? rank.size;
  return errors
    .map((e, i) => ({ e, i }))
    .sort((a, b) => r(a.e) - r(b.e) || a.e.line - b.e.line || a.i - b.i)
    .map(({ e }) => e);
}

// sha256 in pieces, between which queries are answered: hashing a 30 MB zone
// file in one call holds the event loop for about 0.1 s.
async function digestSliced(bytes: Uint8Array, signal: AbortSignal | undefined): Promise<string> {
  const hash = createHash('sha256');
  const piece = 1 << 20;
  for (let at = 0; at < bytes.length; at += piece) {
    if (at > 0) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      signal?.throwIfAborted();
    }
    hash.update(bytes.subarray(at, at + piece));
  }
  return hash.digest('hex');
}

function fromZoneFileError(e: ZoneFileError): ConfigError {
  return new ConfigError(e.detail, { file: e.file, line: e.line });
}

function dnsMessage(e: unknown): string {
  if (e instanceof DnsError) return e.message;
  throw e;
}

function ioReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return err.message ?? String(e);
  }
}

/** Human-readable text for any error loadConfig (or the parsers under it) can throw, for the CLI. */
export function formatErrors(err: unknown): string {
  if (err instanceof ConfigErrors) return err.message;
  if (err instanceof ConfigError || err instanceof ZoneFileError) return err.message;
  if (err instanceof ZoneFileErrors) return err.message;
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
