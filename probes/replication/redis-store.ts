// The HealthStore over Redis: the only code that talks to Redis. Each node
// writes its own verdicts to its own hash and announces every change on a
// pub/sub channel; every node keeps a copy of everyone else's state, kept
// current by those events and repaired by periodic resyncs. Redis being away
// is normal operation: every write made meanwhile is remembered and the
// resync after reconnecting writes it. Key layout and the outage story:
// REDIS.md next to this file.

import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import {
  AuditRing,
  EpochCounter,
  StoreEmitter,
  expiryTimer,
  isExpired,
  overrideFields,
} from './local-store.js';
import { createRedisClient, redact, resolveRedisSettings, RedisSettingsError, type RedisClient, type ResolvedRedis } from './redis-options.js';
import type {
  AuditEntry,
  HealthStore,
  NodeIdentity,
  NodeReport,
  Override,
  RedisSettings,
  ReplicationSettings,
  StoreEvents,
  Verdict,
} from './types.js';

export type RedisStoreSettings = ReplicationSettings & { readonly redis: RedisSettings };

export interface RedisStoreOptions {
  readonly logger?: Logger;
  /** Local clock (ms epoch); tests may replace it. */
  readonly now?: () => number;
}

/** Entries kept in the audit stream (approximately: XADD MAXLEN ~). */
export const AUDIT_MAXLEN = 10000;
/** Audit entries held while Redis is away; the oldest go first beyond this. */
const PENDING_AUDIT_MAX = 10000;

/** Field names in a node hash that are not health keys. */
const REV_FIELD = '@rev';
const SERVED_FIELD = '@served';
const RESERVED_AUDIT = new Set(['at', 'event', 'node', 'by', 'reason']);

// If the stored hash is ours, the stored epoch; else the next one. `floor` is
// the caller's own last epoch and hash for the service: when Redis holds less
// (it lost its data), the count resumes from there instead of going back.
const CLAIM_EPOCH_LUA = `
local svc = ARGV[1]
local e = tonumber(redis.call('HGET', KEYS[1], svc) or '0') or 0
local h = redis.call('HGET', KEYS[1], svc .. '#h')
local floor = tonumber(ARGV[3]) or 0
if floor > e then
  e = floor
  h = ARGV[4]
  redis.call('HSET', KEYS[1], svc, e, svc .. '#h', h)
end
if e > 0 and h == ARGV[2] then return e end
e = e + 1
redis.call('HSET', KEYS[1], svc, e, svc .. '#h', ARGV[2])
return e
`;

// Writes an override unless the stored one is newer (by its "at"): an
// operator's action replayed after an outage never undoes a later one.
const SET_OVERRIDE_LUA = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, o = pcall(cjson.decode, cur)
  if ok and type(o) == 'table' and tonumber(o.at) and tonumber(o.at) > tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`;

// Deletes a hash field if it still holds exactly ARGV[2] (expiry, pruning:
// the node whose delete succeeds is the one that logs it), or, with ARGV[2]
// empty, if the stored override is not newer than ARGV[3] (a clear replayed
// after an outage).
const DEL_FIELD_LUA = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
if ARGV[2] ~= '' then
  if cur == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) return 1 end
  return 0
end
local ok, o = pcall(cjson.decode, cur)
if ok and type(o) == 'table' and tonumber(o.at) and tonumber(o.at) > tonumber(ARGV[3]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
`;

interface ScriptCommands {
  vigilClaimEpoch(key: string, service: string, hash: string, floorEpoch: string, floorHash: string): Promise<number>;
  vigilSetOverride(key: string, member: string, json: string, at: string): Promise<number>;
  vigilDelField(key: string, field: string, expected: string, at: string): Promise<number>;
}

interface Keys {
  readonly nodes: string;
  readonly events: string;
  readonly overrides: string;
  readonly epochs: string;
  readonly audit: string;
  readonly instance: string;
  node(id: string): string;
}

function keysFor(prefix: string): Keys {
  return {
    nodes: `${prefix}:nodes`,
    events: `${prefix}:events`,
    overrides: `${prefix}:overrides`,
    epochs: `${prefix}:epochs`,
    audit: `${prefix}:audit`,
    instance: `${prefix}:instance`,
    node: (id) => `${prefix}:node:${id}`,
  };
}

/**
 * A node's data version: `inc` is random per process, `n` counts that
 * process's writes. Only versions of the same process are ordered, so no
 * clock is compared; a different `inc` means the node restarted.
 */
interface Rev {
  readonly inc: string;
  readonly n: number;
}

function parseRev(v: unknown): Rev | undefined {
  if (typeof v !== 'string') return undefined;
  const i = v.lastIndexOf(':');
  if (i <= 0) return undefined;
  const n = Number(v.slice(i + 1));
  return Number.isSafeInteger(n) ? { inc: v.slice(0, i), n } : undefined;
}

function revString(r: Rev): string {
  return `${r.inc}:${r.n}`;
}

/** True when `a` is not known to be older than or equal to `held`. */
function revAdvances(a: Rev | undefined, held: Rev | undefined): boolean {
  if (a === undefined) return false;
  if (held === undefined || a.inc !== held.inc) return true;
  return a.n > held.n;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function verdictJson(v: Verdict): string {
  return JSON.stringify({ status: v.status, since: v.since, reason: v.reason });
}

function toVerdict(v: unknown): Verdict | undefined {
  if (!isRecord(v)) return undefined;
  const { status, since, reason } = v;
  if (status !== 'up' && status !== 'down' && status !== 'unknown') return undefined;
  if (typeof since !== 'number' || typeof reason !== 'string') return undefined;
  return { status, since, reason };
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return undefined;
  }
}

function overrideJson(o: Override): string {
  return JSON.stringify({
    member: o.member,
    action: o.action,
    reason: o.reason,
    by: o.by,
    at: o.at,
    ...(o.expiresAt !== undefined ? { expiresAt: o.expiresAt } : {}),
  });
}

function toOverride(v: unknown): Override | undefined {
  if (!isRecord(v)) return undefined;
  const { member, action, reason, by, at, expiresAt } = v;
  if (typeof member !== 'string' || typeof reason !== 'string' || typeof by !== 'string' || typeof at !== 'number') return undefined;
  if (action !== 'drain' && action !== 'force_up' && action !== 'force_down') return undefined;
  if (expiresAt !== undefined && typeof expiresAt !== 'number') return undefined;
  return { member, action, reason, by, at, ...(expiresAt !== undefined ? { expiresAt } : {}) };
}

/** Served epochs as a JSON object with sorted keys, so equal maps give equal strings. */
function servedJson(m: ReadonlyMap<string, number>): string {
  const o: Record<string, number> = {};
  for (const k of [...m.keys()].sort()) o[k] = m.get(k) as number;
  return JSON.stringify(o);
}

function toServed(v: unknown): Map<string, number> | undefined {
  if (!isRecord(v)) return undefined;
  const m = new Map<string, number>();
  for (const [k, e] of Object.entries(v)) if (typeof e === 'number') m.set(k, e);
  return m;
}

/** One node's entry in P:nodes. */
interface NodeEntry {
  readonly pop: string;
  readonly hb: number;
  readonly rev: Rev | undefined;
  readonly raw: string;
}

function toNodeEntry(raw: string): NodeEntry | undefined {
  const v = parseJson(raw);
  if (!isRecord(v) || typeof v['pop'] !== 'string' || typeof v['hb'] !== 'number') return undefined;
  return { pop: v['pop'], hb: v['hb'], rev: parseRev(v['rev']), raw };
}

/** What this node holds about another one. */
interface Remote {
  readonly id: string;
  pop: string;
  lastSeen: number;
  /** The last heartbeat value seen: a different one means the node is alive. */
  hb: number | undefined;
  /** The version of the data held (from the hash or the last event applied). */
  rev: Rev | undefined;
  readonly verdictRaw: Map<string, string>;
  readonly verdicts: Map<string, Verdict>;
  served: Map<string, number>;
  servedRaw: string;
  /** Immutable copies handed out by reports(), rebuilt after a change. */
  frozen: { verdicts: ReadonlyMap<string, Verdict>; served: ReadonlyMap<string, number> } | undefined;
}

type PendingOp =
  /** Write `o` unless a newer one is stored. */
  | { readonly kind: 'set'; readonly o: Override }
  /**
   * Delete the stored override: exactly `json` when given (an expiry: the
   * audit entry is written only if the delete happens), else any not newer than `at`.
   */
  | { readonly kind: 'del'; readonly json: string; readonly at: number; readonly expired?: Override };

type Message = Record<string, unknown> & { node: string; kind: string };

export class RedisStore implements HealthStore {
  readonly node: NodeIdentity;
  private readonly settings: RedisStoreSettings;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly events = new StoreEmitter();
  private readonly incarnation = randomUUID().slice(0, 8);
  private readonly nodeTtlMs: number;

  private resolved: ResolvedRedis | undefined;
  private keys: Keys | undefined;
  private cmd: RedisClient | undefined;
  private sub: RedisClient | undefined;

  // Our own state: what we want Redis to hold.
  private ownVerdicts = new Map<string, string>();
  private ownServed = '{}';
  private revN = 0;
  /** The @rev of the last write sent for our hash. */
  private writtenRev: string | undefined;
  /** Our hash was rewritten on the current connection, so changes can be written as they come. */
  private ownSynced = false;
  /** A write of ours failed: the next resync rewrites our hash whatever its @rev says. */
  private ownDirty = false;
  private lastHb = 0;

  private readonly remotes = new Map<string, Remote>();
  private reportsCache: NodeReport[] | undefined;

  private readonly overrideMap = new Map<string, Override>();
  private readonly overrideRaw = new Map<string, string>();
  /** member → sequence of the last local change (event or operator), to keep it over an older resync read. */
  private readonly touched = new Map<string, number>();
  private touchSeq = 0;
  private readonly pendingOps = new Map<string, PendingOp>();
  private pendingAudit: AuditEntry[] = [];
  private readonly ring = new AuditRing(1000);
  private localAuditSeq = 0;
  private readonly epochs = new EpochCounter();

  private isConnected = false;
  private since: number | undefined;
  private everConnected = false;
  private outageLogged = false;
  private instanceId: string | undefined;
  /** Bumped whenever the command connection closes: work started before belongs to a dead connection. */
  private gen = 0;
  private fullPending = true;
  /** The connection generation of the resync under way, if any. */
  private resyncRunning: number | undefined;
  private resyncQueued = false;
  private readonly readQueue = new Set<string>();
  private readScheduled = false;

  private heartbeatTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  private readonly wired: [RedisClient, string, (...args: unknown[]) => void][] = [];
  /** The last connection error (redacted), for the outage warning. */
  private lastError: string | undefined;
  /** A resync failed on a live connection (ACL, OOM, READONLY...): warned once until one succeeds. */
  private resyncWarned = false;
  private firstSync: (() => void) | undefined;

  constructor(settings: RedisStoreSettings, opts: RedisStoreOptions = {}) {
    this.settings = settings;
    this.node = settings.node;
    this.now = opts.now ?? Date.now;
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'replication', node: settings.node.id });
    this.nodeTtlMs = Math.max(60_000, 10 * settings.staleAfterMs, 3 * settings.resyncMs);
  }

  get connected(): boolean {
    return this.isConnected;
  }

  get disconnectedSince(): number | undefined {
    return this.isConnected ? undefined : this.since;
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Connects and resolves after the first resync, or after min(2 s,
   * staleAfterMs) if Redis cannot be reached (the node serves without it and
   * keeps retrying). Rejects only with RedisSettingsError.
   */
  async start(): Promise<void> {
    if (this.started || this.closed) return;
    const startedAt = this.now();
    this.checkTimings();
    const resolved = resolveRedisSettings(this.settings.redis);
    this.started = true;
    this.resolved = resolved;
    this.keys = keysFor(resolved.keyPrefix);
    const socketTimeoutMs = Math.max(5000, 2 * this.settings.heartbeatMs);
    this.cmd = createRedisClient(this.settings.redis, resolved, { connectionName: `vigil:${this.node.id}`, socketTimeoutMs });
    this.sub = createRedisClient(this.settings.redis, resolved, {
      connectionName: `vigil:${this.node.id}:sub`,
      socketTimeoutMs,
      autoResubscribe: false,
    });
    this.cmd.defineCommand('vigilClaimEpoch', { numberOfKeys: 1, lua: CLAIM_EPOCH_LUA });
    this.cmd.defineCommand('vigilSetOverride', { numberOfKeys: 1, lua: SET_OVERRIDE_LUA });
    this.cmd.defineCommand('vigilDelField', { numberOfKeys: 1, lua: DEL_FIELD_LUA });
    this.wireClients(this.cmd, this.sub);

    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.settings.heartbeatMs);
    this.heartbeatTimer.unref();
    this.resyncTimer = setInterval(() => {
      if (this.cmd?.status === 'ready') this.requestResync();
    }, this.settings.resyncMs);
    this.resyncTimer.unref();

    const synced = new Promise<void>((resolve) => (this.firstSync = resolve));
    this.log.info({ redis: resolved.description }, 'connecting to redis');
    this.cmd.connect().catch((err: unknown) => this.debugErr('redis connect', err));
    this.sub.connect().catch((err: unknown) => this.debugErr('redis subscriber connect', err));

    let waitTimer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      waitTimer = setTimeout(resolve, Math.min(2000, this.settings.staleAfterMs));
    });
    await Promise.race([synced, waited]);
    clearTimeout(waitTimer);
    if (!this.isConnected && !this.closed) {
      this.since ??= startedAt;
      this.logOutage('not reachable at start');
    }
  }

  /** Stops timers and closes both connections; bounded, never hangs. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of [this.heartbeatTimer, this.resyncTimer, this.retryTimer, this.expiryTimer]) {
      if (t !== undefined) clearTimeout(t);
    }
    this.firstSync?.();
    const clients = [this.cmd, this.sub].filter((c): c is RedisClient => c !== undefined);
    await Promise.all(clients.map((c) => this.quit(c)));
    this.isConnected = false;
    this.events.removeAll();
  }

  private async quit(c: RedisClient): Promise<void> {
    for (const [client, event, fn] of this.wired) if (client === c) client.off(event, fn);
    // Keep an 'error' listener: a late socket error must not become an unhandled 'error' event.
    c.on('error', () => undefined);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        c.quit(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, 1000);
        }),
      ]);
    } catch {
      // Not connected: nothing to say goodbye to.
    } finally {
      clearTimeout(timer);
      c.disconnect();
    }
  }

  private checkTimings(): void {
    const s = this.settings;
    const positive: [string, number][] = [
      ['replication.stale_after', s.staleAfterMs],
      ['replication.heartbeat', s.heartbeatMs],
      ['replication.resync', s.resyncMs],
    ];
    for (const [field, v] of positive) {
      if (!Number.isFinite(v) || v <= 0) throw new RedisSettingsError(`must be a positive duration (got ${String(v)} ms)`, field);
    }
    if (s.node.id.length === 0) throw new RedisSettingsError('must not be empty', 'node.id');
  }

  private listen(c: RedisClient, event: string, fn: (...args: never[]) => void): void {
    const f = fn as (...args: unknown[]) => void;
    c.on(event, f);
    this.wired.push([c, event, f]);
  }

  private wireClients(cmd: RedisClient, sub: RedisClient): void {
    this.listen(cmd, 'ready', () => {
      if (this.closed) return;
      this.ownSynced = false;
      this.fullPending = true;
      this.requestResync();
    });
    this.listen(cmd, 'close', () => this.onConnectionLost());
    this.listen(cmd, 'error', (err: unknown) => {
      this.lastError = this.redacted(err);
      this.debugErr('redis connection', err);
    });
    this.listen(sub, 'ready', () => {
      if (this.closed || this.keys === undefined) return;
      sub
        .subscribe(this.keys.events)
        .then(() => {
          // Events may have been missed while the subscriber was away: a
          // resync reads whatever moved (revisions and heartbeats tell what).
          if (!this.closed && this.cmd?.status === 'ready') this.requestResync();
        })
        .catch((err: unknown) => this.debugErr('redis subscribe', err));
    });
    this.listen(sub, 'error', (err: unknown) => this.debugErr('redis subscriber', err));
    this.listen(sub, 'message', (channel: string, message: string) => {
      if (channel === this.keys?.events) this.onMessage(message);
    });
  }

  private onConnectionLost(): void {
    if (this.closed) return;
    this.gen++;
    this.ownSynced = false;
    if (this.isConnected) {
      this.isConnected = false;
      this.since = this.now();
      this.events.emit('connection', false);
      this.logOutage('connection lost');
    }
  }

  private logOutage(why: string): void {
    if (this.outageLogged) return;
    this.outageLogged = true;
    this.log.warn(
      { redis: this.resolved?.description, why, ...(this.lastError !== undefined ? { err: this.lastError } : {}) },
      'redis unreachable; answering from last consensus + own probes',
    );
  }

  private redacted(err: unknown): string {
    return redact(err instanceof Error ? err.message : String(err), this.resolved?.secrets ?? []);
  }

  private debugErr(what: string, err: unknown): void {
    this.log.debug({ err: this.redacted(err) }, `${what} failed`);
  }

  /** Writes are sent only on a connection where our hash was rewritten, so they build on a known base. */
  private canWrite(): boolean {
    return !this.closed && this.ownSynced && this.cmd?.status === 'ready';
  }

  // ------------------------------------------------------------- own writes

  private nextRev(): string {
    this.writtenRev = revString({ inc: this.incarnation, n: ++this.revN });
    return this.writtenRev;
  }

  private nextHb(): number {
    this.lastHb = Math.max(this.now(), this.lastHb + 1);
    return this.lastHb;
  }

  private nodeEntry(hb: number): string {
    return JSON.stringify({ pop: this.node.pop, hb, rev: this.writtenRev });
  }

  private publishMsg(msg: Record<string, unknown>): string {
    return JSON.stringify({ node: this.node.id, pop: this.node.pop, ...msg });
  }

  private onWriteFailed(what: string, err: unknown): void {
    this.ownDirty = true;
    this.debugErr(what, err);
    this.scheduleRetry();
  }

  publishVerdicts(verdicts: ReadonlyMap<string, Verdict>): void {
    if (this.closed) return;
    const next = new Map<string, string>();
    const set: Record<string, Verdict> = {};
    const setArgs: string[] = [];
    for (const [k, v] of verdicts) {
      // "@..." fields hold the hash's own bookkeeping; no health key looks like that.
      if (k.startsWith('@')) continue;
      const j = verdictJson(v);
      next.set(k, j);
      if (this.ownVerdicts.get(k) !== j) {
        set[k] = { status: v.status, since: v.since, reason: v.reason };
        setArgs.push(k, j);
      }
    }
    const del = [...this.ownVerdicts.keys()].filter((k) => !next.has(k));
    this.ownVerdicts = next;
    if (setArgs.length === 0 && del.length === 0) return;
    if (!this.canWrite() || this.cmd === undefined || this.keys === undefined) return;
    const key = this.keys.node(this.node.id);
    const rev = this.nextRev();
    const m = this.cmd.multi();
    m.hset(key, ...setArgs, REV_FIELD, rev);
    if (del.length > 0) m.hdel(key, ...del);
    m.publish(this.keys.events, this.publishMsg({ kind: 'verdict', rev, set, del }));
    m.exec()
      .then((r) => checkExec(r))
      .catch((err: unknown) => this.onWriteFailed('verdict write', err));
  }

  publishServed(served: ReadonlyMap<string, number>): void {
    if (this.closed) return;
    const j = servedJson(served);
    if (j === this.ownServed) return;
    this.ownServed = j;
    if (!this.canWrite() || this.cmd === undefined || this.keys === undefined) return;
    const key = this.keys.node(this.node.id);
    const rev = this.nextRev();
    this.cmd
      .multi()
      .hset(key, SERVED_FIELD, j, REV_FIELD, rev)
      .publish(this.keys.events, this.publishMsg({ kind: 'served', rev, served: JSON.parse(j) as unknown }))
      .exec()
      .then((r) => checkExec(r))
      .catch((err: unknown) => this.onWriteFailed('served write', err));
  }

  private heartbeat(): void {
    // A reply due on the subscriber lets its socket timeout notice a dead
    // path; otherwise an idle subscriber could sit on a black-holed socket.
    if (!this.closed && this.sub?.status === 'ready') this.sub.ping().catch((err: unknown) => this.debugErr('subscriber ping', err));
    if (!this.canWrite() || this.cmd === undefined || this.keys === undefined) return;
    const hb = this.nextHb();
    this.cmd
      .pipeline()
      .hset(this.keys.nodes, this.node.id, this.nodeEntry(hb))
      .pexpire(this.keys.node(this.node.id), this.nodeTtlMs)
      .publish(this.keys.events, this.publishMsg({ kind: 'heartbeat', hb, rev: this.writtenRev }))
      .exec()
      .then((r) => checkExec(r))
      .catch((err: unknown) => this.debugErr('heartbeat', err));
  }

  /** Our hash replaced as a whole in one transaction, so readers never see it half written. */
  private async rewriteOwn(cmd: RedisClient, keys: Keys): Promise<void> {
    const key = keys.node(this.node.id);
    const rev = this.nextRev();
    const hb = this.nextHb();
    const args: string[] = [REV_FIELD, rev, SERVED_FIELD, this.ownServed];
    for (const [k, j] of this.ownVerdicts) args.push(k, j);
    const m = cmd
      .multi()
      .del(key)
      .hset(key, ...args)
      .pexpire(key, this.nodeTtlMs)
      .hset(keys.nodes, this.node.id, this.nodeEntry(hb))
      .publish(keys.events, this.publishMsg({ kind: 'heartbeat', hb, rev }));
    // Changes made from here on are queued behind the rewrite on the same connection.
    this.ownSynced = true;
    this.ownDirty = false;
    checkExec(await m.exec());
  }

  // ------------------------------------------------------------------ resync

  private requestResync(): void {
    if (this.closed) return;
    // A resync begun on a connection that has since closed is not waited for.
    if (this.resyncRunning !== undefined && this.resyncRunning === this.gen) {
      this.resyncQueued = true;
      return;
    }
    const gen = this.gen;
    this.resyncRunning = gen;
    const full = this.fullPending;
    let watchdog: NodeJS.Timeout | undefined;
    // Belt and braces: whatever happens to a reply, a resync cannot wedge the next ones.
    const bound = new Promise<never>((_, reject) => {
      watchdog = setTimeout(() => reject(new Error('resync timed out')), Math.max(15_000, 3 * this.settings.heartbeatMs));
      watchdog.unref();
    });
    Promise.race([this.resync(gen, full), bound])
      .then((ok) => {
        if (ok && full && gen === this.gen) this.fullPending = false;
        if (ok) this.resyncWarned = false;
        else this.scheduleRetry();
      })
      .catch((err: unknown) => {
        if (gen === this.gen && this.cmd?.status === 'ready' && !this.resyncWarned) {
          // The connection is fine but Redis refuses us: only a person can fix that.
          this.resyncWarned = true;
          this.log.warn({ redis: this.resolved?.description, err: this.redacted(err) }, 'redis resync failed; retrying');
        } else {
          this.debugErr('resync', err);
        }
        this.scheduleRetry();
      })
      .finally(() => {
        clearTimeout(watchdog);
        if (this.resyncRunning !== gen) return;
        this.resyncRunning = undefined;
        if (this.resyncQueued) {
          this.resyncQueued = false;
          if (this.cmd?.status === 'ready') this.requestResync();
        }
      });
  }

  /** A resync soon, for work a failure left undone; the reconnect path covers a lost connection. */
  private scheduleRetry(): void {
    if (this.closed || this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.cmd?.status === 'ready') this.requestResync();
    }, Math.min(1000, this.settings.resyncMs));
    this.retryTimer.unref();
  }

  /**
   * Reads everyone's state and makes ours right. `full` (after a (re)connect):
   * rewrite our hash and read every node's hash; otherwise only nodes whose
   * revision moved are read. Returns false when the connection changed under it.
   */
  private async resync(gen: number, full: boolean): Promise<boolean> {
    const cmd = this.cmd;
    const keys = this.keys;
    if (cmd === undefined || keys === undefined || cmd.status !== 'ready') return false;
    const mark = this.touchSeq;
    const self = this.node.id;

    const r1 = checkExec(await cmd.pipeline().get(keys.instance).hgetall(keys.nodes).hget(keys.node(self), REV_FIELD).exec());
    if (gen !== this.gen) return false;
    let instance = typeof r1[0] === 'string' ? r1[0] : undefined;
    let replaced = false;
    if (instance === undefined) {
      const r = checkExec(await cmd.pipeline().set(keys.instance, randomUUID(), 'NX').get(keys.instance).exec());
      instance = typeof r[1] === 'string' ? r[1] : undefined;
      replaced = this.instanceId !== undefined;
    } else if (this.instanceId !== undefined && instance !== this.instanceId) {
      replaced = true;
    }
    if (gen !== this.gen) return false;
    if (replaced) {
      this.log.warn({ redis: this.resolved?.description }, 'redis came back empty or was replaced; restoring overrides and republishing');
    }
    this.instanceId = instance;
    full ||= replaced;

    // Our own hash first: the others' reads below can take a while.
    const ownRev = typeof r1[2] === 'string' ? r1[2] : undefined;
    if (full || this.ownDirty || !this.ownSynced || ownRev !== this.writtenRev) await this.rewriteOwn(cmd, keys);
    if (gen !== this.gen) return false;

    // Operator actions taken while Redis was away, then (if Redis lost its
    // data) the overrides we hold that nobody has put back yet.
    await this.flushPendingOps(gen);
    if (replaced) await this.restoreOverrides(gen);
    await this.flushPendingAudit(gen);
    if (gen !== this.gen) return false;

    const now = this.now();
    const entries = new Map<string, NodeEntry>();
    for (const [id, raw] of Object.entries(asStringRecord(r1[1]))) {
      const e = toNodeEntry(raw);
      if (e !== undefined && id !== self) entries.set(id, e);
    }
    const toRead: string[] = [];
    for (const [id, e] of entries) {
      const r = this.remotes.get(id);
      if (r === undefined) {
        toRead.push(id);
        continue;
      }
      r.pop = e.pop;
      if (e.hb !== r.hb) {
        r.hb = e.hb;
        this.seen(r, now);
      }
      if (full || revAdvances(e.rev, r.rev)) toRead.push(id);
    }

    const p2 = cmd.pipeline();
    for (const id of toRead) p2.hgetall(keys.node(id));
    p2.hgetall(keys.overrides);
    const r2 = checkExec(await p2.exec());
    if (gen !== this.gen) return false;
    const readAt = this.now();
    for (const [i, id] of toRead.entries()) {
      const fields = asStringRecord(r2[i]);
      const e = entries.get(id);
      if (e === undefined) continue;
      if (!this.remotes.has(id)) {
        if (fields[REV_FIELD] === undefined) {
          // An entry whose hash has expired: the node has been gone for
          // longer than the node TTL. Remove it unless it changed meanwhile.
          if (Object.keys(fields).length === 0) {
            this.scripts(cmd)
              .vigilDelField(keys.nodes, id, e.raw, '0')
              .catch((err: unknown) => this.debugErr('node entry prune', err));
          }
          continue;
        }
        this.remotes.set(id, newRemote(id, e.pop, readAt, e.hb));
        this.reportsCache = undefined;
        this.events.change();
      }
      this.applyHash(id, fields);
    }
    this.replaceOverrides(asStringRecord(r2[toRead.length]), mark);

    // Reports of nodes gone from P:nodes are kept (Redis may have come back
    // empty) until they are long stale.
    for (const [id, r] of this.remotes) {
      if (!entries.has(id) && readAt - r.lastSeen > this.nodeTtlMs) {
        this.remotes.delete(id);
        this.reportsCache = undefined;
        this.events.change();
      }
    }
    if (!this.isConnected) this.becomeConnected(readAt);
    if (this.pendingOps.size > 0 || this.pendingAudit.length > 0 || this.ownDirty) this.scheduleRetry();
    return true;
  }

  private becomeConnected(now: number): void {
    const outageStart = this.since;
    if (this.everConnected && outageStart !== undefined) {
      // Reports that counted when the outage began get a full staleAfter
      // window to be refreshed: Redis coming back (perhaps empty) must not
      // age every other node out at once and flap the answers.
      for (const r of this.remotes.values()) {
        if (outageStart - r.lastSeen <= this.settings.staleAfterMs) r.lastSeen = Math.max(r.lastSeen, now);
      }
      this.reportsCache = undefined;
      this.events.change();
    }
    const wasOutage = this.outageLogged;
    this.lastError = undefined;
    this.isConnected = true;
    this.everConnected = true;
    this.outageLogged = false;
    this.since = undefined;
    if (wasOutage && outageStart !== undefined) {
      this.log.info({ redis: this.resolved?.description, outageMs: now - outageStart }, 'redis reachable again');
    } else {
      this.log.info({ redis: this.resolved?.description }, 'redis connected');
    }
    this.events.emit('connection', true);
    this.firstSync?.();
    this.firstSync = undefined;
  }

  private scripts(cmd: RedisClient): ScriptCommands {
    return cmd as unknown as ScriptCommands;
  }

  // ------------------------------------------------------------ remote state

  reports(): readonly NodeReport[] {
    if (this.reportsCache === undefined) {
      const out: NodeReport[] = [];
      for (const r of this.remotes.values()) {
        r.frozen ??= { verdicts: new Map(r.verdicts), served: new Map(r.served) };
        out.push({ node: r.id, pop: r.pop, lastSeen: r.lastSeen, verdicts: r.frozen.verdicts, served: r.frozen.served });
      }
      this.reportsCache = out;
    }
    return this.reportsCache;
  }

  /** Heard from `r` now; a node coming back from staleness changes the consensus inputs. */
  private seen(r: Remote, now: number): void {
    const wasStale = now - r.lastSeen > this.settings.staleAfterMs;
    r.lastSeen = now;
    this.reportsCache = undefined;
    if (wasStale) this.events.change();
  }

  /** Replaces what we hold for `id` with its hash, unless events already gave us something newer. */
  private applyHash(id: string, fields: Record<string, string>): void {
    const r = this.remotes.get(id);
    const rev = parseRev(fields[REV_FIELD]);
    if (r === undefined || rev === undefined) return;
    if (r.rev !== undefined && r.rev.inc === rev.inc && rev.n < r.rev.n) return;
    r.rev = rev;
    let changed = false;
    const seen = new Set<string>();
    for (const [k, raw] of Object.entries(fields)) {
      if (k.startsWith('@')) continue;
      const v = toVerdict(parseJson(raw));
      if (v === undefined) continue;
      seen.add(k);
      if (r.verdictRaw.get(k) !== raw) {
        r.verdictRaw.set(k, raw);
        r.verdicts.set(k, v);
        changed = true;
      }
    }
    for (const k of [...r.verdictRaw.keys()]) {
      if (!seen.has(k)) {
        r.verdictRaw.delete(k);
        r.verdicts.delete(k);
        changed = true;
      }
    }
    const servedRaw = fields[SERVED_FIELD] ?? '{}';
    if (servedRaw !== r.servedRaw) {
      r.servedRaw = servedRaw;
      r.served = toServed(parseJson(servedRaw)) ?? new Map();
      changed = true;
    }
    if (changed) this.remoteChanged(r);
  }

  private remoteChanged(r: Remote): void {
    r.frozen = undefined;
    this.reportsCache = undefined;
    this.events.change();
  }

  /** Reads the hashes of nodes whose events showed a gap, in one round trip. */
  private scheduleRead(id: string): void {
    this.readQueue.add(id);
    if (this.readScheduled) return;
    this.readScheduled = true;
    setImmediate(() => {
      this.readScheduled = false;
      const ids = [...this.readQueue];
      this.readQueue.clear();
      const cmd = this.cmd;
      const keys = this.keys;
      // Without a connection the reconnect resync reads everything anyway.
      if (this.closed || cmd === undefined || keys === undefined || cmd.status !== 'ready' || ids.length === 0) return;
      const gen = this.gen;
      const p = cmd.pipeline();
      for (const n of ids) p.hgetall(keys.node(n));
      p.exec()
        .then((res) => {
          if (gen !== this.gen || this.closed) return;
          const r = checkExec(res);
          ids.forEach((n, i) => this.applyHash(n, asStringRecord(r[i])));
        })
        .catch((err: unknown) => this.debugErr('node read', err));
    });
  }

  private onMessage(raw: string): void {
    if (this.closed) return;
    const m = parseJson(raw);
    if (!isRecord(m) || typeof m['node'] !== 'string' || typeof m['kind'] !== 'string') {
      this.log.debug('ignoring a malformed replication event');
      return;
    }
    const msg = m as Message;
    if (msg.node === this.node.id) return;
    const now = this.now();
    switch (msg.kind) {
      case 'verdict':
      case 'served':
      case 'heartbeat':
        this.onNodeEvent(msg, now);
        return;
      case 'override':
        this.touchRemote(msg.node, now);
        this.onOverrideEvent(msg);
        return;
      case 'audit': {
        this.touchRemote(msg.node, now);
        const e = toAuditEntry(msg['entry']);
        if (e !== undefined) {
          this.ring.push(e);
          this.events.emit('audit', e);
        }
        return;
      }
      default:
        this.log.debug({ kind: msg.kind }, 'ignoring an unknown replication event');
    }
  }

  private touchRemote(id: string, now: number): void {
    const r = this.remotes.get(id);
    if (r !== undefined) this.seen(r, now);
  }

  private onNodeEvent(msg: Message, now: number): void {
    const pop = typeof msg['pop'] === 'string' ? msg['pop'] : 'unknown';
    const rev = parseRev(msg['rev']);
    let r = this.remotes.get(msg.node);
    if (r === undefined) {
      r = newRemote(msg.node, pop, now, undefined);
      this.remotes.set(msg.node, r);
      this.reportsCache = undefined;
      this.events.change();
      // All we have is this event: the node's full state is in its hash.
      this.scheduleRead(msg.node);
    } else {
      r.pop = pop;
      this.seen(r, now);
    }
    if (msg.kind === 'heartbeat') {
      if (typeof msg['hb'] === 'number') r.hb = msg['hb'];
      if (revAdvances(rev, r.rev)) this.scheduleRead(msg.node);
      return;
    }
    if (rev === undefined || !revAdvances(rev, r.rev)) return;
    // One step past what we hold applies cleanly; anything else means missed events.
    if (r.rev === undefined || r.rev.inc !== rev.inc || rev.n !== r.rev.n + 1) this.scheduleRead(msg.node);
    r.rev = rev;
    let changed = false;
    if (msg.kind === 'verdict') {
      const set = isRecord(msg['set']) ? msg['set'] : {};
      for (const [k, v] of Object.entries(set)) {
        const verdict = toVerdict(v);
        if (verdict === undefined || k.startsWith('@')) continue;
        const j = verdictJson(verdict);
        if (r.verdictRaw.get(k) !== j) {
          r.verdictRaw.set(k, j);
          r.verdicts.set(k, verdict);
          changed = true;
        }
      }
      const del = Array.isArray(msg['del']) ? msg['del'] : [];
      for (const k of del) {
        if (typeof k === 'string' && r.verdictRaw.delete(k)) {
          r.verdicts.delete(k);
          changed = true;
        }
      }
    } else {
      const served = toServed(msg['served']);
      if (served !== undefined) {
        const j = servedJson(served);
        if (j !== r.servedRaw) {
          r.servedRaw = j;
          r.served = served;
          changed = true;
        }
      }
    }
    if (changed) this.remoteChanged(r);
  }

  // --------------------------------------------------------------- overrides

  overrides(): readonly Override[] {
    const now = this.now();
    return [...this.overrideMap.values()].filter((o) => !isExpired(o, now));
  }

  async setOverride(o: Override): Promise<void> {
    if (this.closed) return;
    const clean = toOverride(o);
    if (clean === undefined) throw new TypeError(`invalid override for ${String(o.member)}`);
    const json = overrideJson(clean);
    this.setLocal(clean.member, clean, json);
    this.touchLocal(clean.member);
    const written = await this.tryWrite((cmd, keys) =>
      cmd
        .pipeline()
        .hset(keys.overrides, clean.member, json)
        .publish(keys.events, this.publishMsg({ kind: 'override', member: clean.member, override: clean }))
        .exec()
        .then((r) => void checkExec(r)),
    );
    if (!written) this.pendingOps.set(clean.member, { kind: 'set', o: clean });
    else this.pendingOps.delete(clean.member);
    await this.audit('override.set', clean.by, clean.reason, overrideFields(clean));
  }

  async clearOverride(member: string, by: string, reason: string): Promise<boolean> {
    if (this.closed) return false;
    const o = this.overrideMap.get(member);
    if (o === undefined) return false;
    if (isExpired(o, this.now())) {
      // Lapsed already: that is an expiry (logged as one), not a clear.
      this.expireNow();
      return false;
    }
    const at = this.now();
    this.setLocal(member, undefined, undefined);
    this.touchLocal(member);
    const written = await this.tryWrite((cmd, keys) =>
      cmd
        .pipeline()
        .hdel(keys.overrides, member)
        .publish(keys.events, this.publishMsg({ kind: 'override', member, override: null }))
        .exec()
        .then((r) => void checkExec(r)),
    );
    if (!written) this.pendingOps.set(member, { kind: 'del', json: '', at });
    else this.pendingOps.delete(member);
    await this.audit('override.clear', by, reason, overrideFields(o));
    return true;
  }

  /** Runs `write` if we can; false when it was not attempted or failed (the caller queues it). */
  private async tryWrite(write: (cmd: RedisClient, keys: Keys) => Promise<void>): Promise<boolean> {
    const cmd = this.cmd;
    const keys = this.keys;
    if (!this.canWrite() || cmd === undefined || keys === undefined) return false;
    try {
      await write(cmd, keys);
      return true;
    } catch (err) {
      this.debugErr('override write', err);
      this.scheduleRetry();
      return false;
    }
  }

  private setLocal(member: string, o: Override | undefined, json: string | undefined): boolean {
    if (o === undefined || json === undefined) {
      if (!this.overrideMap.has(member)) return false;
      this.overrideMap.delete(member);
      this.overrideRaw.delete(member);
    } else {
      if (this.overrideRaw.get(member) === json) return false;
      this.overrideMap.set(member, o);
      this.overrideRaw.set(member, json);
    }
    this.events.change();
    this.armExpiry();
    return true;
  }

  private touchLocal(member: string): void {
    this.touched.set(member, ++this.touchSeq);
  }

  private onOverrideEvent(msg: Message): void {
    const member = msg['member'];
    if (typeof member !== 'string') return;
    const o = msg['override'] === null ? undefined : toOverride(msg['override']);
    if (msg['override'] !== null && o === undefined) return;
    this.touchLocal(member);
    this.setLocal(member, o, o === undefined ? undefined : overrideJson(o));
  }

  /** P:overrides as read by a resync; members changed locally since `mark` keep their newer local state. */
  private replaceOverrides(fields: Record<string, string>, mark: number): void {
    const fresh = new Map<string, { o: Override; raw: string }>();
    for (const [member, raw] of Object.entries(fields)) {
      const o = toOverride(parseJson(raw));
      // The stored bytes, so an expiry's compare-and-delete matches exactly.
      if (o !== undefined && o.member === member) fresh.set(member, { o, raw });
    }
    const members = new Set([...fresh.keys(), ...this.overrideMap.keys()]);
    for (const m of members) {
      if ((this.touched.get(m) ?? 0) > mark || this.pendingOps.has(m)) continue;
      const f = fresh.get(m);
      this.setLocal(m, f?.o, f?.raw);
    }
    // Bookkeeping older than this read is no longer needed to arbitrate.
    for (const [m, seq] of this.touched) if (seq <= mark) this.touched.delete(m);
  }

  private async flushPendingOps(gen: number): Promise<void> {
    const cmd = this.cmd;
    const keys = this.keys;
    if (cmd === undefined || keys === undefined) return;
    const s = this.scripts(cmd);
    for (const [member, op] of [...this.pendingOps]) {
      if (gen !== this.gen) return;
      if (op.kind === 'set') {
        const wrote = await s.vigilSetOverride(keys.overrides, member, overrideJson(op.o), String(op.o.at));
        if (wrote === 1) await cmd.publish(keys.events, this.publishMsg({ kind: 'override', member, override: op.o }));
      } else {
        const deleted = await s.vigilDelField(keys.overrides, member, op.json, String(op.at));
        if (deleted === 1) {
          await cmd.publish(keys.events, this.publishMsg({ kind: 'override', member, override: null }));
          if (op.expired !== undefined) {
            await this.audit('override.expired', `node:${this.node.id}`, 'expired', overrideFields(op.expired));
          }
        }
      }
      if (this.pendingOps.get(member) === op) this.pendingOps.delete(member);
    }
  }

  /** Redis lost its data: put back every override we hold, unless a node already did (HSETNX). */
  private async restoreOverrides(gen: number): Promise<void> {
    const cmd = this.cmd;
    const keys = this.keys;
    if (cmd === undefined || keys === undefined) return;
    const now = this.now();
    const list = [...this.overrideMap.values()].filter((o) => !isExpired(o, now) && !this.pendingOps.has(o.member));
    if (list.length === 0) return;
    const p = cmd.pipeline();
    for (const o of list) p.hsetnx(keys.overrides, o.member, overrideJson(o));
    const res = checkExec(await p.exec());
    if (gen !== this.gen) return;
    for (const [i, o] of list.entries()) {
      if (res[i] !== 1) continue;
      await cmd.publish(keys.events, this.publishMsg({ kind: 'override', member: o.member, override: o }));
      await this.audit('override.restored', `node:${this.node.id}`, 'redis lost its data; restored from this node', overrideFields(o));
    }
  }

  private expireNow(): void {
    const now = this.now();
    for (const o of [...this.overrideMap.values()]) {
      if (!isExpired(o, now)) continue;
      const json = this.overrideRaw.get(o.member) ?? overrideJson(o);
      this.setLocal(o.member, undefined, undefined);
      this.touchLocal(o.member);
      const pending = this.pendingOps.get(o.member);
      if (pending?.kind === 'set') {
        // Never written: nobody else knows it, so the expiry is ours to log,
        // and what it replaced is gone too.
        this.pendingOps.set(o.member, { kind: 'del', json: '', at: o.at });
        void this.audit('override.expired', `node:${this.node.id}`, 'expired', overrideFields(o));
        continue;
      }
      void this.tryWrite(async (cmd, keys) => {
        const deleted = await this.scripts(cmd).vigilDelField(keys.overrides, o.member, json, '0');
        // Only the node whose delete took effect logs it, so the log has one entry per expiry.
        if (deleted === 1) {
          await cmd.publish(keys.events, this.publishMsg({ kind: 'override', member: o.member, override: null }));
          await this.audit('override.expired', `node:${this.node.id}`, 'expired', overrideFields(o));
        }
      }).then((written) => {
        if (!written && !this.pendingOps.has(o.member)) this.pendingOps.set(o.member, { kind: 'del', json, at: o.at, expired: o });
      });
    }
    this.armExpiry();
  }

  private armExpiry(): void {
    this.expiryTimer = expiryTimer(this.expiryTimer, this.closed ? [] : this.overrideMap.values(), this.now(), () => this.expireNow());
  }

  // ------------------------------------------------------------------ epochs

  async claimEpoch(service: string, hash: string): Promise<number> {
    const cmd = this.cmd;
    const keys = this.keys;
    const mine = this.epochs.get(service);
    const seen = this.highestServed(service);
    if (!this.closed && cmd !== undefined && keys !== undefined && cmd.status === 'ready') {
      // The floor matters only when Redis lost its counters: the count then
      // resumes from the highest epoch any node is known to use, and our own
      // last claim keeps its epoch if its hash is still the answer.
      const floor = Math.max(mine?.epoch ?? 0, seen);
      const floorHash = mine !== undefined && mine.epoch === floor ? mine.hash : '';
      try {
        const e = Number(await this.scripts(cmd).vigilClaimEpoch(keys.epochs, service, hash, String(floor), floorHash));
        if (Number.isSafeInteger(e) && e > 0) {
          this.epochs.record(service, e, hash);
          return e;
        }
      } catch (err) {
        this.debugErr('claimEpoch', err);
      }
    }
    // Without Redis: continue from the highest epoch seen anywhere, ours or served by others.
    return this.epochs.claim(service, hash, seen);
  }

  /** The highest epoch served for `service` by any node we know of, this one included. */
  private highestServed(service: string): number {
    let max = 0;
    for (const r of this.remotes.values()) max = Math.max(max, r.served.get(service) ?? 0);
    const own = toServed(parseJson(this.ownServed))?.get(service) ?? 0;
    return Math.max(max, own);
  }

  // ------------------------------------------------------------------- audit

  async audit(event: string, by: string, reason: string, fields: Record<string, string>): Promise<void> {
    if (this.closed) return;
    const base = { at: this.now(), event, node: this.node.id, by, reason, fields: { ...fields } };
    const cmd = this.cmd;
    const keys = this.keys;
    if (this.canWrite() && cmd !== undefined && keys !== undefined) {
      try {
        const entry = await this.appendAudit(cmd, keys, base);
        this.ring.push(entry);
        this.events.emit('audit', entry);
        return;
      } catch (err) {
        this.debugErr('audit append', err);
        this.scheduleRetry();
      }
    }
    const entry: AuditEntry = { id: `local-${++this.localAuditSeq}`, ...base };
    this.pendingAudit.push(entry);
    if (this.pendingAudit.length > PENDING_AUDIT_MAX) this.pendingAudit.splice(0, this.pendingAudit.length - PENDING_AUDIT_MAX);
    this.ring.push(entry);
    this.events.emit('audit', entry);
  }

  /** XADD, then tell the other nodes (with the stream id) so they can emit 'audit' without polling. */
  private async appendAudit(cmd: RedisClient, keys: Keys, e: Omit<AuditEntry, 'id'>): Promise<AuditEntry> {
    const args: string[] = ['at', String(e.at), 'event', e.event, 'node', e.node, 'by', e.by, 'reason', e.reason];
    for (const [k, v] of Object.entries(e.fields)) args.push(RESERVED_AUDIT.has(k) || k.startsWith('d.') ? `d.${k}` : k, v);
    const id = await cmd.xadd(keys.audit, 'MAXLEN', '~', String(AUDIT_MAXLEN), '*', ...args);
    if (typeof id !== 'string') throw new Error('XADD returned no id');
    const entry: AuditEntry = { id, ...e };
    cmd.publish(keys.events, this.publishMsg({ kind: 'audit', entry })).catch((err: unknown) => this.debugErr('audit publish', err));
    return entry;
  }

  private async flushPendingAudit(gen: number): Promise<void> {
    const cmd = this.cmd;
    const keys = this.keys;
    if (cmd === undefined || keys === undefined) return;
    while (this.pendingAudit.length > 0 && gen === this.gen) {
      const e = this.pendingAudit[0] as AuditEntry;
      const { id: _local, ...rest } = e;
      await this.appendAudit(cmd, keys, rest);
      this.pendingAudit.shift();
    }
  }

  async auditLog(count: number): Promise<readonly AuditEntry[]> {
    const n = Math.max(0, Math.floor(count));
    const cmd = this.cmd;
    const keys = this.keys;
    if (n > 0 && !this.closed && cmd !== undefined && keys !== undefined && cmd.status === 'ready' && this.pendingAudit.length === 0) {
      try {
        const rows = await cmd.xrevrange(keys.audit, '+', '-', 'COUNT', n);
        return rows.map(([id, flat]) => streamEntry(id, flat)).filter((e): e is AuditEntry => e !== undefined);
      } catch (err) {
        this.debugErr('audit read', err);
      }
    }
    return this.ring.newest(n);
  }

  // ------------------------------------------------------------------ events

  on<K extends keyof StoreEvents>(event: K, listener: (...args: StoreEvents[K]) => void): this {
    this.events.on(event, listener);
    return this;
  }

  off<K extends keyof StoreEvents>(event: K, listener: (...args: StoreEvents[K]) => void): this {
    this.events.off(event, listener);
    return this;
  }
}

function newRemote(id: string, pop: string, lastSeen: number, hb: number | undefined): Remote {
  return {
    id,
    pop,
    lastSeen,
    hb,
    rev: undefined,
    verdictRaw: new Map(),
    verdicts: new Map(),
    served: new Map(),
    servedRaw: '{}',
    frozen: undefined,
  };
}

/** Pipeline/transaction results, throwing the first command error. */
function checkExec(r: [Error | null, unknown][] | null): unknown[] {
  if (r === null) throw new Error('redis transaction aborted');
  return r.map(([err, v]) => {
    if (err !== null) throw err;
    return v;
  });
}

function asStringRecord(v: unknown): Record<string, string> {
  if (!isRecord(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

function streamEntry(id: string, flat: string[]): AuditEntry | undefined {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i] as string] = flat[i + 1] as string;
  const at = Number(f['at']);
  if (!Number.isFinite(at) || f['event'] === undefined) return undefined;
  const fields: Record<string, string> = {};
  for (const [k, v] of Object.entries(f)) {
    if (RESERVED_AUDIT.has(k)) continue;
    fields[k.startsWith('d.') ? k.slice(2) : k] = v;
  }
  return { id, at, event: f['event'], node: f['node'] ?? '', by: f['by'] ?? '', reason: f['reason'] ?? '', fields };
}

function toAuditEntry(v: unknown): AuditEntry | undefined {
  if (!isRecord(v)) return undefined;
  const { id, at, event, node, by, reason, fields } = v;
  if (typeof id !== 'string' || typeof at !== 'number' || typeof event !== 'string') return undefined;
  if (typeof node !== 'string' || typeof by !== 'string' || typeof reason !== 'string') return undefined;
  return { id, at, event, node, by, reason, fields: asStringRecord(fields) };
}
