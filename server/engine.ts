// Ties the flow together: config → (health verdicts) → service answers →
// snapshot → listeners. Health changes and scheduled steps (failback ramps,
// settle windows) recompute the answers and swap in a new snapshot; nothing
// here runs per query.

import { pino, type Logger } from 'pino';
import { HealthMonitor } from '../probes/monitor.js';
import { healthKey } from '../probes/health/state.js';
import { computeServiceAnswer } from './answer/policy/compute.js';
import type { ServiceAnswer, ServiceRuntime } from './answer/policy/types.js';
import { buildSnapshot, serviceKey, type Snapshot } from './answer/snapshot.js';
import { startServer, type VigilServer } from './server.js';
import { formatName } from './wire/name.js';
import type { CompiledConfig } from '../zones/zone.js';
import type { CompiledService } from '../zones/service.js';

export interface MemberState {
  readonly name: string;
  readonly family: 'v4' | 'v6';
  readonly address: string;
  readonly status: string;
  readonly reason: string;
  readonly held: boolean;
  readonly since: number | null;
}

export interface ServiceState {
  readonly name: string;
  readonly views: readonly string[];
  readonly policy: string;
  readonly answer: string;
  readonly ttl: number;
  readonly degraded: boolean;
  readonly failedOpen: boolean;
  readonly members: readonly MemberState[];
}

export interface EngineOptions {
  readonly logger?: Logger;
  readonly now?: () => number;
}

/** Timers are capped so a far-off step does not overflow setTimeout, and floored so a past one does not spin. */
const MIN_DELAY_MS = 10;
const MAX_DELAY_MS = 3_600_000;

export class Engine {
  private config: CompiledConfig;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly monitor: HealthMonitor;
  private server: VigilServer | undefined;
  private readonly answers = new Map<string, ServiceAnswer>();
  private readonly runtimes = new Map<string, ServiceRuntime>();
  private timer: NodeJS.Timeout | undefined;
  private snapshot: Snapshot;

  constructor(config: CompiledConfig, opts: EngineOptions = {}) {
    this.config = config;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.now = opts.now ?? Date.now;
    this.monitor = new HealthMonitor({ logger: this.log });
    this.monitor.update(config.services);
    this.snapshot = this.recompute('start');
    this.monitor.on('change', () => {
      this.snapshot = this.recompute('health');
    });
  }

  /** Binds the listeners and starts answering. */
  async start(): Promise<VigilServer> {
    this.server = await startServer(this.config, { logger: this.log, snapshot: this.snapshot });
    return this.server;
  }

  /** Swaps in a new, already validated config; members whose id and probe are unchanged keep their health. */
  reload(next: CompiledConfig): void {
    this.config = next;
    const keep = new Set(next.services.map(serviceKey));
    for (const k of [...this.runtimes.keys()]) if (!keep.has(k)) this.runtimes.delete(k);
    for (const k of [...this.answers.keys()]) if (!keep.has(k)) this.answers.delete(k);
    this.monitor.update(next.services);
    this.snapshot = this.recompute('reload');
  }

  /** Lets a service held by `failback: manual` return to its better members. False when no such service. */
  approveFailback(name: string): boolean {
    const found = this.config.services.find((s) => formatName(s.name) === name || formatName(s.name) === `${name}.`);
    if (found === undefined) return false;
    this.monitor.approveFailback(found.name, this.now());
    return true;
  }

  current(): Snapshot {
    return this.snapshot;
  }

  state(): ServiceState[] {
    const health = this.monitor.snapshot();
    return this.config.services.map((s) => {
      const a = this.answers.get(serviceKey(s));
      const members: MemberState[] = [];
      for (const m of s.members) {
        for (const family of ['v4', 'v6'] as const) {
          const address = (family === 'v4' ? m.v4 : m.v6)[0];
          if (address === undefined) continue;
          const h = health.members.get(healthKey(m.id, family));
          members.push({
            name: m.name,
            family,
            address,
            status: h?.status ?? s.initialState,
            reason: h?.reason ?? 'no verdict yet',
            held: h?.held ?? false,
            since: h?.since ?? null,
          });
        }
      }
      return {
        name: formatName(s.name),
        views: s.views,
        policy: s.policy,
        answer: a?.summary ?? '',
        ttl: a?.ttl ?? s.ttl,
        degraded: a?.degraded ?? false,
        failedOpen: a?.failedOpen ?? false,
        members,
      };
    });
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.server?.close();
    await this.monitor.close();
  }

  private recompute(cause: 'start' | 'health' | 'reload' | 'schedule'): Snapshot {
    const now = this.now();
    const health = this.monitor.snapshot();
    let next: number | undefined;
    for (const service of this.config.services) {
      const key = serviceKey(service);
      const before = this.answers.get(key);
      const answer = computeServiceAnswer(service, health, this.runtimes.get(key) ?? {}, now);
      this.runtimes.set(key, answer.runtime);
      this.answers.set(key, answer);
      if (before?.summary !== answer.summary) this.logChange(service, before, answer, cause);
      if (answer.recomputeAt !== undefined && (next === undefined || answer.recomputeAt < next)) next = answer.recomputeAt;
    }
    const snapshot = buildSnapshot(this.config, this.answers);
    this.server?.swap(snapshot);
    this.schedule(next, now);
    return snapshot;
  }

  private schedule(at: number | undefined, now: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (at === undefined) return;
    const delay = Math.min(MAX_DELAY_MS, Math.max(MIN_DELAY_MS, at - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.snapshot = this.recompute('schedule');
    }, delay);
    this.timer.unref();
  }

  private logChange(service: CompiledService, before: ServiceAnswer | undefined, after: ServiceAnswer, cause: string): void {
    const fields = {
      service: formatName(service.name),
      views: service.views,
      policy: service.policy,
      from: before?.summary ?? null,
      to: after.summary,
      ttl: after.ttl,
      degraded: after.degraded,
      failedOpen: after.failedOpen,
      cause,
    };
    // Failing open hands out members known to be down: an operator must see it.
    if (after.failedOpen) this.log.warn(fields, 'answer changed: no member healthy, failing open');
    else this.log.info(fields, 'answer changed');
  }
}
