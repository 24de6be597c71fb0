// The operational config keys: `node`, `replication`, `metrics`, `admin` and
// `log`. The schema checks their shape; this checks what the schema cannot
// (addresses, secrets that must be readable, a token off loopback) and applies
// the environment, which wins over the file so that one config file can serve
// every node of a fleet (VIGIL_NODE_ID, VIGIL_POP, VIGIL_REDIS_URL,
// VIGIL_ADMIN_TOKEN, VIGIL_LOG_LEVEL).

import { hostname } from 'node:os';
import { isIP } from 'node:net';
import type { ConfigPath } from './config.js';
import { splitHostPort, type RawConfig } from './config.js';
import { parseDuration } from './compile.js';
import type { ListenAddress } from './zone.js';
import type { NodeIdentity, Quorum, RedisSettings, ReplicationSettings } from '../probes/replication/types.js';

export interface LogSettings {
  readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Share of queries written to the query log; 0 = off. */
  readonly querySample: number;
}

export interface OperationsSettings {
  readonly node: NodeIdentity;
  readonly replication: ReplicationSettings;
  readonly metrics?: ListenAddress;
  readonly admin?: ListenAddress;
  /** Bearer token for the admin API; never logged. */
  readonly adminToken?: string;
  readonly log: LogSettings;
}

export const OPERATION_DEFAULTS = {
  pop: 'default',
  prefix: 'vigil',
  staleAfterMs: 3_000,
  heartbeatMs: 1_000,
  resyncMs: 10_000,
  outageGraceMs: 60_000,
  divergenceAfterMs: 10_000,
} as const;

export interface OperationsInputs {
  /** Environment variables (process.env in production; tests pass their own). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Reads a file named in the config (relative paths are the caller's business); throws when unreadable. */
  readonly readFile?: (path: string) => string;
}

type Fail = (path: ConfigPath, detail: string) => void;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function isLoopback(host: string): boolean {
  return host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

function listenAddress(text: string | undefined, path: ConfigPath, fail: Fail): ListenAddress | undefined {
  if (text === undefined) return undefined;
  const hp = splitHostPort(text);
  if (hp === undefined) return undefined; // the schema has said why
  if (isIP(hp.host) === 0) fail(path, `"${hp.host}" is not an IP address`);
  else if (hp.port > 65535) fail(path, `port ${hp.port} is out of range (0..65535)`);
  else return hp;
  return undefined;
}

function endpoints(list: readonly string[] | undefined, path: ConfigPath, fail: Fail): { host: string; port: number }[] | undefined {
  if (list === undefined) return undefined;
  const out: { host: string; port: number }[] = [];
  list.forEach((entry, i) => {
    const m = /^(.+):([0-9]{1,5})$/.exec(entry);
    if (m === null) return;
    const port = Number(m[2]);
    if (port < 1 || port > 65535) fail([...path, i], `port ${port} is out of range (1..65535)`);
    else out.push({ host: m[1]!, port });
  });
  return out;
}

/** The first line of a secret file, trimmed; a file that cannot be read or is empty is a config error. */
function secret(file: string, path: ConfigPath, inputs: OperationsInputs, fail: Fail): string | undefined {
  if (inputs.readFile === undefined) return undefined;
  let text: string;
  try {
    text = inputs.readFile(file);
  } catch (e) {
    fail(path, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return undefined;
  }
  const first = text.split(/\r?\n/, 1)[0]!.trim();
  if (first === '') fail(path, `${file} is empty`);
  return first === '' ? undefined : first;
}

function ms(v: number | string | undefined, dflt: number): number {
  return v === undefined ? dflt : parseDuration(v);
}

function compileRedis(raw: NonNullable<NonNullable<RawConfig['replication']>['redis']>, env: OperationsInputs['env'], inputs: OperationsInputs, fail: Fail): RedisSettings | undefined {
  const P = ['replication', 'redis'];
  const url = env?.['VIGIL_REDIS_URL'] || raw.url;
  const sentinels = endpoints(raw.sentinels, [...P, 'sentinels'], fail);
  const cluster = endpoints(raw.cluster, [...P, 'cluster'], fail);
  const modes = [url !== undefined, sentinels !== undefined, cluster !== undefined].filter(Boolean).length;
  if (modes === 0) {
    fail(P, 'needs one of "url" (or $VIGIL_REDIS_URL), "sentinels" or "cluster"');
    return undefined;
  }
  if (modes > 1) fail(P, 'give only one of "url", "sentinels" and "cluster"');
  if (sentinels !== undefined && raw.sentinel_name === undefined) fail([...P, 'sentinels'], '"sentinels" needs "sentinel_name" (the master group name)');
  if (url !== undefined && !/^rediss?:\/\/[^/\s]/.test(url)) fail(raw.url === url ? [...P, 'url'] : P, 'the Redis URL must look like redis://host:port/db or rediss://host:port/db');
  const password = raw.password_file !== undefined ? secret(raw.password_file, [...P, 'password_file'], inputs, fail) : undefined;
  let tls: RedisSettings['tls'];
  if (raw.tls !== undefined) {
    const ca = raw.tls.ca_file !== undefined && inputs.readFile !== undefined ? readCa(raw.tls.ca_file, [...P, 'tls', 'ca_file'], inputs, fail) : undefined;
    tls = {
      rejectUnauthorized: raw.tls.verify ?? true,
      ...(ca !== undefined ? { ca } : {}),
      ...(raw.tls.servername !== undefined ? { servername: raw.tls.servername } : {}),
    };
  }
  return {
    prefix: raw.prefix ?? OPERATION_DEFAULTS.prefix,
    ...(url !== undefined ? { url } : {}),
    ...(sentinels !== undefined ? { sentinels } : {}),
    ...(raw.sentinel_name !== undefined ? { sentinelName: raw.sentinel_name } : {}),
    ...(cluster !== undefined ? { cluster } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(raw.username !== undefined ? { username: raw.username } : {}),
    ...(tls !== undefined ? { tls } : {}),
  };
}

function readCa(file: string, path: ConfigPath, inputs: OperationsInputs, fail: Fail): string | undefined {
  try {
    const pem = inputs.readFile!(file);
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) fail(path, `${file} holds no PEM certificate`);
    return pem;
  } catch (e) {
    fail(path, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return undefined;
  }
}

/**
 * Compiles the operational keys. Without `inputs` (unit tests of zones, the
 * `check` of a config on another machine) files are not read and the
 * environment is ignored.
 */
export function compileOperations(raw: RawConfig, inputs: OperationsInputs, fail: Fail): OperationsSettings {
  const env = inputs.env;
  const id = env?.['VIGIL_NODE_ID'] || raw.node?.id || hostname().split('.')[0] || 'vigil';
  const pop = env?.['VIGIL_POP'] || raw.node?.pop || OPERATION_DEFAULTS.pop;
  if (!NAME.test(id)) fail(['node', 'id'], `node id "${id}" must be 1-63 letters, digits, '.', '_' or '-'${env?.['VIGIL_NODE_ID'] ? ' (from $VIGIL_NODE_ID)' : ''}`);
  if (!NAME.test(pop)) fail(['node', 'pop'], `pop "${pop}" must be 1-63 letters, digits, '.', '_' or '-'${env?.['VIGIL_POP'] ? ' (from $VIGIL_POP)' : ''}`);

  const r = raw.replication ?? {};
  const quorum: Quorum = typeof r.quorum === 'number' ? { mode: 'k_of_n', k: r.quorum } : { mode: 'majority' };
  // $VIGIL_REDIS_URL alone turns replication on: a fleet's nodes can share a file written for one.
  const redisRaw = r.redis ?? (env?.['VIGIL_REDIS_URL'] ? {} : undefined);
  const redis = redisRaw !== undefined ? compileRedis(redisRaw, env, inputs, fail) : undefined;
  const replication: ReplicationSettings = {
    node: { id, pop },
    quorum,
    staleAfterMs: ms(r.stale_after, OPERATION_DEFAULTS.staleAfterMs),
    heartbeatMs: ms(r.heartbeat, OPERATION_DEFAULTS.heartbeatMs),
    resyncMs: ms(r.resync, OPERATION_DEFAULTS.resyncMs),
    outageGraceMs: ms(r.outage_grace, OPERATION_DEFAULTS.outageGraceMs),
    divergenceAfterMs: ms(r.divergence_after, OPERATION_DEFAULTS.divergenceAfterMs),
    ...(redis !== undefined ? { redis } : {}),
  };
  // A node must have missed several heartbeats before it stops counting, or one slow round trip would drop it.
  if (replication.staleAfterMs < 2 * replication.heartbeatMs) {
    fail(['replication', r.stale_after !== undefined ? 'stale_after' : 'heartbeat'], `stale_after (${replication.staleAfterMs} ms) must be at least twice the heartbeat (${replication.heartbeatMs} ms)`);
  }

  const metrics = listenAddress(raw.metrics?.listen, ['metrics', 'listen'], fail);
  const admin = listenAddress(raw.admin?.listen, ['admin', 'listen'], fail);
  let adminToken = env?.['VIGIL_ADMIN_TOKEN'] || undefined;
  if (adminToken === undefined && raw.admin?.token_file !== undefined) adminToken = secret(raw.admin.token_file, ['admin', 'token_file'], inputs, fail);
  if (admin !== undefined && !isLoopback(admin.host) && adminToken === undefined && raw.admin?.token_file === undefined) {
    fail(['admin', 'listen'], `the admin API listens on ${admin.host}, off loopback: set admin.token_file or $VIGIL_ADMIN_TOKEN`);
  }
  if (adminToken !== undefined && adminToken.length < 16) fail(['admin', raw.admin?.token_file !== undefined ? 'token_file' : 'listen'], 'the admin token must be at least 16 characters');

  const envLevel = env?.['VIGIL_LOG_LEVEL'];
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
  const level = levels.find((l) => l === envLevel) ?? raw.log?.level ?? 'info';
  return {
    node: { id, pop },
    replication,
    log: { level, querySample: raw.log?.query_log?.sample ?? 0 },
    ...(metrics !== undefined ? { metrics } : {}),
    ...(admin !== undefined ? { admin } : {}),
    ...(adminToken !== undefined ? { adminToken } : {}),
  };
}
