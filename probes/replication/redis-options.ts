// RedisSettings → an ioredis client (standalone URL, Sentinel or Cluster).
// Validation lives here so a bad setting is reported once, with the field
// that is wrong, before any connection is attempted; the store turns it into
// a rejected start(). Credentials never leave this module in a printable
// form: callers log `description`, and pass anything else through redact().

import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { ConnectionOptions } from 'node:tls';
import type { RedisSettings } from './types.js';

export class RedisSettingsError extends Error {
  override readonly name = 'RedisSettingsError';
  constructor(
    message: string,
    /** The settings field at fault, as a config path ("replication.redis.url"). */
    readonly field: string,
  ) {
    super(`${field}: ${message}`);
  }
}

export type RedisClient = Redis | Cluster;

export type RedisMode = 'standalone' | 'sentinel' | 'cluster';

/** Settings checked and resolved: what createRedisClient needs, nothing secret in `description`. */
export interface ResolvedRedis {
  readonly mode: RedisMode;
  /** Safe to log: host:port/db or the sentinel/cluster seeds, never a user name or password. */
  readonly description: string;
  /** Strings that must never appear in logs (the password, the full URL). */
  readonly secrets: readonly string[];
  /** Key prefix to use: "vigil", or "{vigil}" in cluster mode so every key hashes to one slot. */
  readonly keyPrefix: string;
  readonly standalone?: { readonly host: string; readonly port: number; readonly db: number };
  readonly username?: string;
  readonly password?: string;
  readonly tls?: ConnectionOptions;
}

/** Knobs the store sets per connection; everything else follows from the settings. */
export interface ClientTuning {
  /** CLIENT SETNAME, to tell our connections apart in CLIENT LIST. */
  readonly connectionName?: string;
  /** A command with no reply for this long kills the socket, so a black-holed server is noticed (default 5000). */
  readonly socketTimeoutMs?: number;
  /** Bound on one connection attempt (default 5000). */
  readonly connectTimeoutMs?: number;
  /**
   * Let ioredis resubscribe after a reconnect (default true). The store's
   * subscriber turns it off and subscribes on every 'ready' itself, which
   * also covers a first connection that failed before SUBSCRIBE was sent.
   */
  readonly autoResubscribe?: boolean;
}

const PREFIX_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** Reconnect delay: 100 ms doubling, capped at 5 s (attempt numbers start at 1). */
export function retryDelay(times: number): number {
  const exp = Math.min(Math.max(times, 1) - 1, 16);
  return Math.min(100 * 2 ** exp, 5000);
}

function hostPort(list: readonly { readonly host: string; readonly port: number }[], field: string): void {
  if (list.length === 0) throw new RedisSettingsError('must list at least one host', `replication.redis.${field}`);
  for (const [i, n] of list.entries()) {
    if (typeof n.host !== 'string' || n.host.length === 0) throw new RedisSettingsError(`entry ${i}: host is empty`, `replication.redis.${field}`);
    if (!Number.isInteger(n.port) || n.port < 1 || n.port > 65535) throw new RedisSettingsError(`entry ${i}: port ${String(n.port)} is not 1-65535`, `replication.redis.${field}`);
  }
}

function parseUrl(url: string): { host: string; port: number; db: number; tls: boolean; username?: string; password?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // The URL itself may hold a password: never echo it.
    throw new RedisSettingsError('is not a valid URL (expected redis://[user:password@]host:port/db or rediss://...)', 'replication.redis.url');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new RedisSettingsError(`scheme ${u.protocol} is not redis: or rediss:`, 'replication.redis.url');
  }
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  if (host.length === 0) throw new RedisSettingsError('has no host', 'replication.redis.url');
  const port = u.port === '' ? 6379 : Number(u.port);
  const path = u.pathname.replace(/^\//, '');
  const db = path === '' ? 0 : Number(path);
  if (!Number.isInteger(db) || db < 0 || db > 65535 || !/^\d*$/.test(path)) {
    throw new RedisSettingsError(`database "${path}" is not a non-negative integer`, 'replication.redis.url');
  }
  const out: { host: string; port: number; db: number; tls: boolean; username?: string; password?: string } = {
    host,
    port,
    db,
    tls: u.protocol === 'rediss:',
  };
  if (u.username !== '') out.username = decodeURIComponent(u.username);
  if (u.password !== '') out.password = decodeURIComponent(u.password);
  return out;
}

/** Checks the settings and resolves them; throws RedisSettingsError naming the field at fault. */
export function resolveRedisSettings(s: RedisSettings): ResolvedRedis {
  const modes = [s.url !== undefined, s.sentinels !== undefined, s.cluster !== undefined].filter(Boolean).length;
  if (modes === 0) throw new RedisSettingsError('one of url, sentinels or cluster is required', 'replication.redis.url');
  if (modes > 1) throw new RedisSettingsError('url, sentinels and cluster are exclusive; give exactly one', 'replication.redis.url');
  if (typeof s.prefix !== 'string' || !PREFIX_RE.test(s.prefix)) {
    throw new RedisSettingsError('must be 1-64 letters, digits, ".", "_", ":" or "-" (no braces: cluster mode adds its own hash tag)', 'replication.redis.prefix');
  }
  if (s.sentinelName !== undefined && s.sentinels === undefined) {
    throw new RedisSettingsError('sentinel_name is only meaningful with sentinels', 'replication.redis.sentinel_name');
  }

  const secrets: string[] = [];
  let password = s.password;
  let username = s.username;
  let tls: ConnectionOptions | undefined;
  const wantTls = (on: boolean): void => {
    if (!on) return;
    tls = { rejectUnauthorized: s.tls?.rejectUnauthorized ?? true };
    if (s.tls?.ca !== undefined) tls.ca = s.tls.ca;
    if (s.tls?.servername !== undefined) tls.servername = s.tls.servername;
  };

  if (s.url !== undefined) {
    secrets.push(s.url);
    const u = parseUrl(s.url);
    if (s.tls !== undefined && !u.tls) {
      throw new RedisSettingsError('tls settings given with a redis:// URL; use rediss:// for TLS', 'replication.redis.tls');
    }
    password ??= u.password;
    username ??= u.username;
    // A password given in the URL is a secret even when a password file overrides it.
    if (u.password !== undefined) secrets.push(u.password);
    wantTls(u.tls);
    if (password !== undefined) secrets.push(password);
    const bracket = u.host.includes(':') ? `[${u.host}]` : u.host;
    return {
      mode: 'standalone',
      description: `${u.tls ? 'rediss' : 'redis'}://${bracket}:${u.port}/${u.db}`,
      secrets,
      keyPrefix: s.prefix,
      standalone: { host: u.host, port: u.port, db: u.db },
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(tls !== undefined ? { tls } : {}),
    };
  }

  if (password !== undefined) secrets.push(password);
  wantTls(s.tls !== undefined);
  const extra = {
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(tls !== undefined ? { tls } : {}),
  };
  if (s.sentinels !== undefined) {
    hostPort(s.sentinels, 'sentinels');
    if (s.sentinelName === undefined || s.sentinelName.length === 0) {
      throw new RedisSettingsError('sentinels need sentinel_name (the master group name)', 'replication.redis.sentinel_name');
    }
    return {
      mode: 'sentinel',
      description: `sentinel master "${s.sentinelName}" via ${s.sentinels.map((n) => `${n.host}:${n.port}`).join(',')}${tls ? ' (tls)' : ''}`,
      secrets,
      keyPrefix: s.prefix,
      ...extra,
    };
  }
  const seeds = s.cluster ?? [];
  hostPort(seeds, 'cluster');
  return {
    mode: 'cluster',
    description: `cluster via ${seeds.map((n) => `${n.host}:${n.port}`).join(',')}${tls ? ' (tls)' : ''}`,
    secrets,
    // Every key shares one hash slot, so pipelines, MULTI and the Lua scripts
    // (which touch several keys) work unchanged on a cluster.
    keyPrefix: `{${s.prefix}}`,
    ...extra,
  };
}

/** Options common to every mode: fail fast while Redis is away, reconnect with backoff. */
function commonOptions(tuning: ClientTuning): RedisOptions {
  return {
    lazyConnect: true,
    // Nothing may pile up while Redis is gone: a command fails at once and
    // the next resync rewrites whatever it was meant to write.
    enableOfflineQueue: false,
    // 0: commands in flight when the connection drops are rejected at once.
    // With autoResendUnfulfilledCommands off and any other value, ioredis
    // 6.0 drops them unsettled when the first reconnect attempt succeeds,
    // and an await on them would hang forever.
    maxRetriesPerRequest: 0,
    // Never replay old writes after a reconnect: the resync writes the current state.
    autoResendUnfulfilledCommands: false,
    retryStrategy: retryDelay,
    connectTimeout: tuning.connectTimeoutMs ?? 5000,
    socketTimeout: tuning.socketTimeoutMs ?? 5000,
    autoResubscribe: tuning.autoResubscribe ?? true,
    ...(tuning.connectionName !== undefined ? { connectionName: tuning.connectionName } : {}),
  };
}

/** The ioredis options for a standalone or Sentinel client (exported for tests and the bench). */
export function redisOptions(r: ResolvedRedis, tuning: ClientTuning = {}): RedisOptions {
  const auth = {
    ...(r.username !== undefined ? { username: r.username } : {}),
    ...(r.password !== undefined ? { password: r.password } : {}),
    ...(r.tls !== undefined ? { tls: r.tls } : {}),
  };
  if (r.mode === 'standalone' && r.standalone !== undefined) {
    return { ...commonOptions(tuning), host: r.standalone.host, port: r.standalone.port, db: r.standalone.db, ...auth };
  }
  if (r.mode === 'sentinel') {
    return { ...commonOptions(tuning), ...auth };
  }
  throw new RedisSettingsError('cluster settings have no single-node options', 'replication.redis.cluster');
}

/**
 * Builds the client (not yet connected: call connect()). `settings` must be
 * the object `r` was resolved from; Sentinel and Cluster seeds are taken from it.
 */
export function createRedisClient(settings: RedisSettings, r: ResolvedRedis, tuning: ClientTuning = {}): RedisClient {
  if (r.mode === 'cluster') {
    const base = commonOptions(tuning);
    const { retryStrategy: _r, enableOfflineQueue: _e, lazyConnect: _l, ...perNode } = base;
    const opts: ClusterOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: retryDelay,
      redisOptions: {
        ...perNode,
        ...(r.username !== undefined ? { username: r.username } : {}),
        ...(r.password !== undefined ? { password: r.password } : {}),
        ...(r.tls !== undefined ? { tls: r.tls } : {}),
      },
    };
    return new Cluster(
      (settings.cluster ?? []).map((n) => ({ host: n.host, port: n.port })),
      opts,
    );
  }
  const opts = redisOptions(r, tuning);
  if (r.mode === 'sentinel') {
    return new Redis({
      ...opts,
      sentinels: (settings.sentinels ?? []).map((n) => ({ host: n.host, port: n.port })),
      ...(settings.sentinelName !== undefined ? { name: settings.sentinelName } : {}),
      ...(r.tls !== undefined ? { enableTLSForSentinelMode: true } : {}),
    });
  }
  return new Redis(opts);
}

/** `url` with any user name and password replaced by "***" (for messages that must name the URL). */
export function redactUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/)[^@/]*@/i, '$1***@');
}

/** `text` with every secret and every URL credential replaced by "***". */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) {
    if (s.length > 0) out = out.split(s).join('***');
  }
  return out.replace(/(rediss?:\/\/)[^@/\s]*@/gi, '$1***@');
}
