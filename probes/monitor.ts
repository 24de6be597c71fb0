// The main-thread side of health checking. HealthMonitor turns compiled
// services into probe jobs, hands them to the probe worker (worker.ts), and
// publishes what comes back as an immutable HealthSnapshot. The DNS thread
// only ever receives small messages from here: no sockets, no probe timers.
//
// One job per member per address family that has at least one address; the
// job probes the FIRST address of that family (health is kept per member and
// family, not per address: list one address per member to probe each).
//
// The monitor never fails closed: if the worker dies, the last known health
// stays published while a new worker is started, seeded with it.

import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { pino, type Logger } from 'pino';
import type { CompiledService, Family, ProbeSpec } from '../zones/service.js';
import { healthKey, type FamilyHealth, type HealthSnapshot, type HealthStatus } from './health/state.js';
import { WORKER_DATA, jobSignature, type CheckReport, type FromWorker, type ProbeJob, type ToWorker } from './worker.js';

export type { CheckReport, ProbeJob } from './worker.js';

/** A change of a member's published status or hold, as carried by 'change'. */
export interface HealthTransition {
  readonly memberId: string;
  readonly family: Family;
  /** The previous published status, or the job's initial status before the first verdict. */
  readonly from: HealthStatus;
  readonly to: HealthStatus;
  readonly reason: string;
  readonly held: boolean;
}

/** One check result, for metrics. */
export interface CheckEvent {
  readonly key: string;
  readonly memberId: string;
  readonly family: Family;
  readonly address: string;
  readonly type: ProbeSpec['type'];
  readonly health: FamilyHealth;
  readonly check: CheckReport;
}

export interface HealthMonitorEvents {
  /**
   * The snapshot changed in a way answers care about: a member's status,
   * hold or nextChangeAt, an entry appeared or was dropped, or a failback
   * was approved. Coalesced: at most once per event-loop turn.
   */
  change: [snapshot: HealthSnapshot, transitions: readonly HealthTransition[]];
  /** Every check result, whether or not it changed anything. */
  check: [event: CheckEvent];
}

export interface HealthMonitorOptions {
  readonly logger?: Logger;
}

/** Restart delays after the worker dies: doubling from the first, capped; reset after a worker ran this long. */
const RESTART_FIRST_MS = 100;
const RESTART_MAX_MS = 10_000;
const RESTART_RESET_AFTER_MS = 30_000;
/** How long close() waits for the worker to stop by itself before terminating it. */
const STOP_GRACE_MS = 1_000;

// Compiled to dist/probes/worker.js, run from sources (tap's TS loader) as
// probes/worker.ts: load the sibling with this module's own extension.
const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);

interface Entry {
  readonly job: ProbeJob;
  readonly signature: string;
  /**
   * Key of the entry whose loop probes for this one. Members that probe the
   * same address the same way (the same backend behind two services, or in
   * two views) share one loop: one set of checks, one verdict, the same
   * moment of change for every service that uses it.
   */
  readonly lead: string;
}

/** The spec as it travels: regexes as "/source/flags" (structured clone keeps RegExp, but JSON signatures do not). */
function wireSpec(spec: ProbeSpec): ProbeSpec {
  const params: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(spec.params)) params[k] = v instanceof RegExp ? `/${v.source}/${v.flags}` : v;
  return { ...spec, params };
}

function sameHealth(a: FamilyHealth | undefined, b: FamilyHealth): boolean {
  return a !== undefined && a.status === b.status && a.held === b.held && a.nextChangeAt === b.nextChangeAt;
}

/** Every field the same: the published health need not change at all. */
function sameVerdict(a: FamilyHealth | undefined, b: FamilyHealth): boolean {
  return sameHealth(a, b) && a!.since === b.since && a!.reason === b.reason;
}

export class HealthMonitor extends EventEmitter<HealthMonitorEvents> {
  private readonly log: Logger;
  private entries = new Map<string, Entry>();
  private serial = 0;
  /** Working copy; snapshot() freezes it into a new object when dirty. */
  private readonly members = new Map<string, FamilyHealth>();
  private readonly approved = new Map<string, number>();
  private current: HealthSnapshot = Object.freeze({ members: new Map(), failbackApproved: new Map() });
  private dirty = false;

  private pending: HealthTransition[] = [];
  private changePending = false;
  private flushImmediate: NodeJS.Immediate | undefined;

  private worker: Worker | undefined;
  private workerStartedAt = 0;
  private restarts = 0;
  /** Lead key → every job its loop serves (itself first). */
  private sharing = new Map<string, ProbeJob[]>();
  private restartTimer: NodeJS.Timeout | undefined;
  private readyPromise: Promise<void> = Promise.resolve();
  private resolveReady: (() => void) | undefined;
  private closed = false;

  constructor(opts: HealthMonitorOptions = {}) {
    super();
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'probes' });
  }

  /**
   * Sets the services to watch. Members whose id, address and probe are
   * unchanged keep their loop and health; changed ones start over (their
   * entry disappears until the new loop's first result, so the service's
   * initialState applies); removed ones are dropped. The worker is started on
   * the first update that has something to probe.
   */
  update(services: readonly CompiledService[]): void {
    if (this.closed) throw new Error('HealthMonitor is closed');
    const next = new Map<string, Entry>();
    const leads = new Map<string, string>();
    const names = new Set<string>();
    for (const service of services) {
      names.add(service.name);
      for (const m of service.members) {
        for (const family of ['v4', 'v6'] as const) {
          const address = (family === 'v4' ? m.v4 : m.v6)[0];
          if (address === undefined) continue;
          const key = healthKey(m.id, family);
          // A member listed in two services probes the same thing (the config checks it): once is enough.
          if (next.has(key)) continue;
          const spec = wireSpec(m.probe);
          const signature = jobSignature({ address, spec, damping: service.damping });
          const old = this.entries.get(key);
          const serial = old !== undefined && old.signature === signature ? old.job.serial : ++this.serial;
          const job: ProbeJob = { key, serial, memberId: m.id, family, address, spec, damping: service.damping, initial: service.initialState };
          const lead = leads.get(signature) ?? key;
          leads.set(signature, lead);
          next.set(key, { job, signature, lead });
        }
      }
    }

    let changed = false;
    for (const [key, old] of this.entries) {
      if (next.get(key)?.signature !== old.signature && this.members.delete(key)) changed = true;
    }
    for (const name of [...this.approved.keys()]) {
      if (!names.has(name) && this.approved.delete(name)) changed = true;
    }
    this.entries = next;
    // Built once per update so a check result reaches its members without a scan of every entry.
    const sharing = new Map<string, ProbeJob[]>();
    for (const { job, lead } of next.values()) {
      const list = sharing.get(lead);
      if (list === undefined) sharing.set(lead, [job]);
      else list.push(job);
    }
    this.sharing = sharing;

    // Never probed: up at once, here, without a worker for configs that probe nothing.
    const now = Date.now();
    for (const { job } of next.values()) {
      if (job.spec.type !== 'none' || this.members.has(job.key)) continue;
      const health: FamilyHealth = Object.freeze({ status: 'up', since: now, reason: 'not probed', held: false });
      this.members.set(job.key, health);
      changed = true;
      if (job.initial !== 'up') this.pending.push({ memberId: job.memberId, family: job.family, from: job.initial, to: 'up', reason: health.reason, held: false });
    }

    const probed = this.probedJobs();
    if (this.worker !== undefined) this.post({ type: 'configure', probes: probed });
    else if (probed.length > 0 && this.restartTimer === undefined) this.spawn();

    if (changed) this.markChanged();
  }

  /** The current health; a new object whenever something in it changed. */
  snapshot(): HealthSnapshot {
    if (this.dirty) {
      this.current = Object.freeze({ members: new Map(this.members), failbackApproved: new Map(this.approved) });
      this.dirty = false;
    }
    return this.current;
  }

  /** Records an operator's approval of a held-back failback and emits 'change' at once. */
  approveFailback(serviceName: string, now: number = Date.now()): void {
    this.approved.set(serviceName, now);
    this.markChanged();
    this.flush();
  }

  /** True while probes can run: the worker is up, or nothing needs probing. False while a crashed worker awaits its restart. */
  get running(): boolean {
    return !this.closed && (this.worker !== undefined || this.probedJobs().length === 0);
  }

  /** Resolves when the worker has started (at once when nothing is probed). */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** Stops every probe and ends the worker thread. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    if (this.flushImmediate !== undefined) clearImmediate(this.flushImmediate);
    this.restartTimer = this.flushImmediate = undefined;
    this.resolveReady?.();
    this.resolveReady = undefined;
    const w = this.worker;
    this.worker = undefined;
    if (w === undefined) return;
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    // Graceful first: the worker aborts its checks (closing their sockets) and ends.
    try {
      w.postMessage({ type: 'stop' } satisfies ToWorker);
    } catch {
      // Already gone.
    }
    let grace: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      grace = setTimeout(() => resolve(true), STOP_GRACE_MS);
    });
    const late = await Promise.race([exited.then(() => false), timedOut]);
    clearTimeout(grace);
    if (late) {
      await w.terminate();
      await exited;
    }
  }

  /** One job per distinct probe: followers ride on their lead's loop. */
  private probedJobs(): ProbeJob[] {
    const jobs: ProbeJob[] = [];
    for (const { job, lead } of this.entries.values()) if (job.spec.type !== 'none' && lead === job.key) jobs.push(job);
    return jobs;
  }

  private post(msg: ToWorker): void {
    this.worker?.postMessage(msg);
  }

  private spawn(): void {
    if (this.resolveReady === undefined) {
      this.readyPromise = new Promise<void>((resolve) => {
        this.resolveReady = resolve;
      });
    }
    const w = new Worker(WORKER_URL, { name: 'vigil-probes', workerData: WORKER_DATA });
    this.worker = w;
    this.workerStartedAt = Date.now();
    w.on('message', (msg: FromWorker) => {
      if (w === this.worker) this.onMessage(msg);
    });
    w.on('error', (err) => {
      if (w === this.worker) this.log.error({ err }, 'probe worker failed');
    });
    w.on('exit', (code) => {
      if (w === this.worker) this.onExit(code);
    });
    // After a crash, seed the new loops with what was known: members stay as
    // they were instead of starting over from the service's initial state.
    const probes = this.probedJobs().map((job) => {
      const known = this.members.get(job.key);
      return known === undefined ? job : { ...job, initial: known.status, since: known.since };
    });
    w.postMessage({ type: 'configure', probes } satisfies ToWorker);
  }

  private onExit(code: number): void {
    this.worker = undefined;
    if (this.closed) return;
    if (Date.now() - this.workerStartedAt >= RESTART_RESET_AFTER_MS) this.restarts = 0;
    const delay = Math.min(RESTART_MAX_MS, RESTART_FIRST_MS * 2 ** this.restarts);
    this.restarts++;
    this.log.error({ code, restartInMs: delay }, 'probe worker exited; keeping the last known health and restarting it');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.closed && this.worker === undefined) this.spawn();
    }, delay);
  }

  private onMessage(msg: FromWorker): void {
    if (msg.type === 'ready') {
      this.resolveReady?.();
      this.resolveReady = undefined;
      return;
    }
    const leadEntry = this.entries.get(msg.key);
    // A result from a loop that has since been replaced or removed.
    if (leadEntry === undefined || leadEntry.job.serial !== msg.serial) return;
    for (const job of this.sharing.get(msg.key) ?? [leadEntry.job]) this.apply(job, msg);
  }

  private apply(job: ProbeJob, msg: Extract<FromWorker, { type: 'health' }>): void {
    const prev = this.members.get(job.key);
    const health = msg.health;
    // Most checks confirm what is known. Keeping the published object then keeps
    // snapshot() the same object, and so the consensus the engine computed from
    // it: thousands of members checked every second must not make every
    // recompute (a heartbeat of another node, an override) start from scratch.
    if (!sameVerdict(prev, health)) {
      this.members.set(job.key, health);
      this.dirty = true;
    }
    const from = prev?.status ?? job.initial;
    const wasHeld = prev?.held ?? false;
    if (from !== health.status || wasHeld !== health.held) {
      const t: HealthTransition = { memberId: job.memberId, family: job.family, from, to: health.status, reason: health.reason, held: health.held };
      this.pending.push(t);
      const fields = { member: job.memberId, family: job.family, address: job.address, from, to: health.status, reason: health.reason, held: health.held, check: job.spec.type };
      if (from !== health.status) this.log.info(fields, 'member status changed');
      else this.log.info(fields, health.held ? 'member held down by flap damping' : 'member no longer held by flap damping');
    }
    if (!sameHealth(prev, health)) this.markChanged();
    if (msg.check !== undefined && this.listenerCount('check') > 0) {
      this.emit('check', { key: job.key, memberId: job.memberId, family: job.family, address: job.address, type: job.spec.type, health, check: msg.check });
    }
  }

  private markChanged(): void {
    this.dirty = true;
    this.changePending = true;
    if (this.flushImmediate === undefined && !this.closed) this.flushImmediate = setImmediate(() => this.flush());
  }

  private flush(): void {
    if (this.flushImmediate !== undefined) clearImmediate(this.flushImmediate);
    this.flushImmediate = undefined;
    if (!this.changePending) return;
    this.changePending = false;
    const transitions = this.pending;
    this.pending = [];
    this.emit('change', this.snapshot(), transitions);
  }
}
