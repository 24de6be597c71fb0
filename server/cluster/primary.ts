// The primary's side of a cluster (server/cluster/README.md): forks the
// serving workers, hands each the config and service answers of every
// snapshot the engine serves, restarts a worker that dies, and folds their
// reports into this process's metrics and drain tracker.

import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { CompiledConfig } from '../../zones/zone.js';
import type { ServiceAnswer } from '../answer/policy/types.js';
import type { CookieSecret } from '../wire/cookie.js';
import type { DrainTracker } from '../drain/tracker.js';
import type { VigilMetrics } from '../metrics/registry.js';
import type { FromWorker, ToWorker } from './messages.js';

export interface ServingWorkersOptions {
  readonly workers: number;
  readonly listen: readonly { readonly host: string; readonly port: number }[];
  readonly cookieSecret: CookieSecret | undefined;
  readonly logLevel: string;
  readonly querySample: number;
  /** What the current snapshot is built from: sent to every worker that starts. */
  readonly state: () => { config: CompiledConfig; answers: ReadonlyMap<string, ServiceAnswer> };
  readonly metrics: VigilMetrics;
  readonly drain: DrainTracker;
  readonly log: Logger;
}

export class WorkerStartError extends Error {
  override name = 'WorkerStartError';
}

/** A worker that dies is replaced after this, doubling while they keep dying, up to RESTART_MAX_MS. */
const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;
/** A worker that lived this long was healthy: the next restart starts from RESTART_MIN_MS again. */
const HEALTHY_AFTER_MS = 60_000;
const START_TIMEOUT_MS = 30_000;

export class ServingWorkers {
  /** configured: it has had its start, config and answers; updates before that would be lost (it sends hello first). */
  private readonly live = new Map<Worker, { startedAt: number; listening: boolean; configured: boolean }>();
  private lastConfig: CompiledConfig | undefined;
  private closing = false;
  private restartDelay = RESTART_MIN_MS;
  private restartTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: ServingWorkersOptions) {}

  /** Forks every worker and resolves when all of them serve; rejects (and stops them) if one cannot. */
  async start(): Promise<void> {
    // 'advanced': structured clone, so the compiled config's Maps and Uint8Arrays cross intact.
    cluster.setupPrimary({ serialization: 'advanced' });
    const started = Array.from({ length: this.opts.workers }, () => this.fork());
    try {
      await Promise.all(started);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Not ready while a worker is missing or not yet serving (GET /readyz). */
  ready(): string[] {
    const serving = [...this.live.values()].filter((w) => w.listening).length;
    return serving < this.opts.workers ? [`${serving} of ${this.opts.workers} serving workers up`] : [];
  }

  /** The engine serves a new snapshot: every worker builds the same one. */
  update(config: CompiledConfig, answers: ReadonlyMap<string, ServiceAnswer>): void {
    const sendConfig = config !== this.lastConfig;
    this.lastConfig = config;
    for (const [w, entry] of this.live) {
      if (!entry.configured) continue;
      if (sendConfig) this.send(w, { type: 'config', config });
      this.send(w, { type: 'answers', answers });
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const t of this.restartTimers) clearTimeout(t);
    const exits = [...this.live.keys()].map((w) => new Promise<void>((resolve) => {
      if (w.isDead()) return resolve();
      w.once('exit', () => resolve());
      // Closing the channel is the worker's signal to exit; a kill is the fallback.
      w.disconnect();
      setTimeout(() => w.isDead() || w.kill('SIGKILL'), 2000).unref();
    }));
    await Promise.all(exits);
  }

  private send(w: Worker, m: ToWorker): void {
    if (w.isConnected()) w.send(m);
  }

  private fork(): Promise<void> {
    const w = cluster.fork();
    const entry = { startedAt: Date.now(), listening: false, configured: false };
    this.live.set(w, entry);
    const { log } = this.opts;
    const listening = new Promise<void>((resolve, reject) => {
      const timeout = setTimeout(() => reject(new WorkerStartError(`serving worker ${w.process.pid} did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      timeout.unref();
      w.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'hello': {
            const { config, answers } = this.opts.state();
            this.send(w, {
              type: 'start',
              listen: this.opts.listen,
              cookieSecret: this.opts.cookieSecret,
              workers: this.opts.workers,
              logLevel: this.opts.log.level,
              querySample: this.opts.querySample,
            });
            this.send(w, { type: 'config', config });
            this.send(w, { type: 'answers', answers });
            entry.configured = true;
            return;
          }
          case 'listening':
            entry.listening = true;
            clearTimeout(timeout);
            log.debug({ worker: w.process.pid }, 'serving worker up');
            resolve();
            return;
          case 'failed':
            clearTimeout(timeout);
            reject(new WorkerStartError(`serving worker ${w.process.pid} could not listen: ${m.error}`));
            return;
          case 'report':
            this.absorb(m);
            return;
        }
      });
      w.once('exit', (code, signal) => {
        clearTimeout(timeout);
        this.live.delete(w);
        reject(new WorkerStartError(`serving worker ${w.process.pid} exited (${signal ?? code}) before it served`));
        if (this.closing) return;
        log.error({ worker: w.process.pid, code, signal }, `serving worker exited; restarting it in ${this.restartDelay} ms`);
        const delay = Date.now() - entry.startedAt > HEALTHY_AFTER_MS ? RESTART_MIN_MS : this.restartDelay;
        this.restartDelay = Math.min(RESTART_MAX_MS, delay * 2);
        const t = setTimeout(() => {
          this.restartTimers.delete(t);
          if (!this.closing) this.fork().catch((err: unknown) => log.error({ err }, 'serving worker restart failed'));
        }, delay);
        this.restartTimers.add(t);
      });
    });
    return listening;
  }

  private absorb(m: Extract<FromWorker, { type: 'report' }>): void {
    const { metrics, drain } = this.opts;
    if (m.stats !== undefined) metrics.queries.absorb(m.stats);
    for (const s of m.services) {
      drain.observe(s.label, s.client, s.first);
      if (s.last !== s.first) drain.observe(s.label, s.client, s.last);
    }
    for (const [label, n] of m.failedOpen) metrics.failedOpenAnswer(label, n);
    if (m.rrlDropped > 0) metrics.rrlResponse('dropped', m.rrlDropped);
    if (m.rrlSlipped > 0) metrics.rrlResponse('slipped', m.rrlSlipped);
  }
}
