// The in-process HealthStore: one node, no Redis. Also home to the small
// in-memory pieces (event plumbing, audit ring, epoch counter, override
// bookkeeping) that RedisStore reuses as its copy of the shared state, so
// the two stores behave the same wherever Redis is not involved.

import { EventEmitter } from 'node:events';
import type { AuditEntry, HealthStore, NodeIdentity, NodeReport, Override, StoreEvents, Verdict } from './types.js';

type Listener = (...args: unknown[]) => void;

/** Typed on/off/emit over a private EventEmitter, with 'change' coalesced to one per turn. */
export class StoreEmitter {
  private readonly ee = new EventEmitter();
  private changeQueued = false;

  constructor() {
    // Several consumers (engine, metrics, admin) may listen; none is a leak.
    this.ee.setMaxListeners(50);
  }

  on<K extends keyof StoreEvents>(event: K, listener: (...args: StoreEvents[K]) => void): void {
    this.ee.on(event, listener as unknown as Listener);
  }

  off<K extends keyof StoreEvents>(event: K, listener: (...args: StoreEvents[K]) => void): void {
    this.ee.off(event, listener as unknown as Listener);
  }

  emit<K extends keyof StoreEvents>(event: K, ...args: StoreEvents[K]): void {
    this.ee.emit(event, ...args);
  }

  /** Many updates in one turn (a resync, a burst of events) make one 'change'. */
  change(): void {
    if (this.changeQueued) return;
    this.changeQueued = true;
    setImmediate(() => {
      this.changeQueued = false;
      this.ee.emit('change');
    });
  }

  removeAll(): void {
    this.ee.removeAllListeners();
  }
}

/** The newest `capacity` audit entries, for auditLog() without Redis. */
export class AuditRing {
  private readonly entries: AuditEntry[] = [];
  constructor(private readonly capacity = 1000) {}

  // Trimmed in bulk, once it holds twice the capacity: dropping the oldest entry
  // at every push moves the whole array, a thousand entries per override
  // in a burst of a thousand.
  push(e: AuditEntry): void {
    this.entries.push(e);
    if (this.entries.length >= 2 * this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
  }

  /** Newest first; at most `capacity`. */
  newest(count: number): AuditEntry[] {
    const n = Math.max(0, Math.min(Math.floor(count), this.entries.length, this.capacity));
    return this.entries.slice(this.entries.length - n).reverse();
  }
}

/** Per-service epochs: the same hash keeps its epoch, a new hash takes the next one. */
export class EpochCounter {
  private readonly bySvc = new Map<string, { epoch: number; hash: string }>();

  get(service: string): { epoch: number; hash: string } | undefined {
    return this.bySvc.get(service);
  }

  /** Remember an epoch decided elsewhere (Redis), so a later local claim continues from it. */
  record(service: string, epoch: number, hash: string): void {
    this.bySvc.set(service, { epoch, hash });
  }

  /** `floor`: the highest epoch seen for this service elsewhere (other nodes' served epochs). */
  claim(service: string, hash: string, floor = 0): number {
    const cur = this.bySvc.get(service);
    if (cur !== undefined && cur.hash === hash) return cur.epoch;
    const epoch = Math.max(cur?.epoch ?? 0, floor) + 1;
    this.bySvc.set(service, { epoch, hash });
    return epoch;
  }
}

export function isExpired(o: Override, now: number): boolean {
  return o.expiresAt !== undefined && o.expiresAt <= now;
}

/** The earliest expiry among `overrides`, or undefined. */
export function nextExpiry(overrides: Iterable<Override>): number | undefined {
  let next: number | undefined;
  for (const o of overrides) {
    if (o.expiresAt !== undefined && (next === undefined || o.expiresAt < next)) next = o.expiresAt;
  }
  return next;
}

/**
 * One timer for the earliest expiry among `overrides`, replacing `previous`;
 * undefined when none expires. Both stores use it to notice lapses without polling.
 */
export function expiryTimer(previous: NodeJS.Timeout | undefined, overrides: Iterable<Override>, now: number, fire: () => void): NodeJS.Timeout | undefined {
  if (previous !== undefined) clearTimeout(previous);
  const next = nextExpiry(overrides);
  if (next === undefined) return undefined;
  const timer = setTimeout(fire, Math.min(Math.max(0, next - now), MAX_TIMER_MS));
  timer.unref();
  return timer;
}

/** Audit details as stored: flat strings, with the override's own fields when one is involved. */
export function overrideFields(o: Override): Record<string, string> {
  const f: Record<string, string> = { member: o.member, action: o.action, set_by: o.by, set_at: String(o.at) };
  if (o.expiresAt !== undefined) f['expires_at'] = String(o.expiresAt);
  return f;
}

/** setTimeout's limit; longer delays fire at once, so a far expiry is re-armed in steps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One node alone: nothing to replicate, so reports() is always empty and the
 * node is always "connected". Overrides, epochs and the audit log live in
 * memory and are lost at restart.
 */
export class LocalStore implements HealthStore {
  readonly node: NodeIdentity;
  readonly connected = true;
  readonly disconnectedSince: number | undefined = undefined;
  private readonly now: () => number;
  private readonly events = new StoreEmitter();
  private readonly ring = new AuditRing(1000);
  private readonly epochs = new EpochCounter();
  private readonly overrideMap = new Map<string, Override>();
  private seq = 0;
  private expiryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(node: NodeIdentity, opts: { now?: () => number } = {}) {
    this.node = node;
    this.now = opts.now ?? Date.now;
  }

  async start(): Promise<void> {
    this.armExpiry();
  }

  publishVerdicts(_verdicts: ReadonlyMap<string, Verdict>): void {
    // Nobody else reads them.
  }

  publishServed(_served: ReadonlyMap<string, number>): void {
    // Nobody else reads them.
  }

  reports(): readonly NodeReport[] {
    return [];
  }

  async claimEpoch(service: string, hash: string): Promise<number> {
    return this.epochs.claim(service, hash);
  }

  overrides(): readonly Override[] {
    const now = this.now();
    return [...this.overrideMap.values()].filter((o) => !isExpired(o, now));
  }

  async setOverride(o: Override): Promise<void> {
    const replaced = this.overrideMap.get(o.member);
    this.overrideMap.set(o.member, o);
    this.events.change();
    // The timer is for the earliest expiry: only an override with one can move it (a walk over all of them).
    if (o.expiresAt !== undefined || replaced?.expiresAt !== undefined) this.armExpiry();
    await this.audit('override.set', o.by, o.reason, overrideFields(o));
  }

  async clearOverride(member: string, by: string, reason: string): Promise<boolean> {
    const o = this.overrideMap.get(member);
    if (o === undefined) return false;
    if (isExpired(o, this.now())) {
      // Already lapsed: that is logged as an expiry, and there is nothing left to clear.
      this.expireNow();
      return false;
    }
    this.overrideMap.delete(member);
    this.events.change();
    if (o.expiresAt !== undefined) this.armExpiry();
    await this.audit('override.clear', by, reason, overrideFields(o));
    return true;
  }

  async audit(event: string, by: string, reason: string, fields: Record<string, string>): Promise<void> {
    const entry: AuditEntry = { id: `local-${++this.seq}`, at: this.now(), event, node: this.node.id, by, reason, fields: { ...fields } };
    this.ring.push(entry);
    this.events.emit('audit', entry);
  }

  async auditLog(count: number): Promise<readonly AuditEntry[]> {
    return this.ring.newest(count);
  }

  on<K extends keyof StoreEvents>(event: K, listener: (...args: StoreEvents[K]) => void): this {
    this.events.on(event, listener);
    return this;
  }

  off<K extends keyof StoreEvents>(event: K, listener: (...args: StoreEvents[K]) => void): this {
    this.events.off(event, listener);
    return this;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
  }

  /** Lapsed overrides leave the map with an "override.expired" entry, so the log says when they stopped. */
  private expireNow(): void {
    const now = this.now();
    for (const o of [...this.overrideMap.values()]) {
      if (!isExpired(o, now)) continue;
      this.overrideMap.delete(o.member);
      this.events.change();
      void this.audit('override.expired', `node:${this.node.id}`, 'expired', overrideFields(o));
    }
    this.armExpiry();
  }

  private armExpiry(): void {
    this.expiryTimer = expiryTimer(this.expiryTimer, this.closed ? [] : this.overrideMap.values(), this.now(), () => this.expireNow());
  }
}
