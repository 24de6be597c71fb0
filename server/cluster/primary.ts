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
import { ConfigSender } from './zone-refs.js';

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

/** A worker that takes longer than this to apply a config no longer holds up the others' copies. */
const APPLY_TIMEOUT_MS = 60_000;

interface Entry {
  startedAt: number;
  listening: boolean;
  /** The config it was last sent (undefined until its hello): updates before that would be lost. */
  config: CompiledConfig | undefined;
  /** Waiting for its 'applied'. */
  applying: boolean;
  /** The generation of the last answers it was sent: `changed` lists are good only for the next one. */
  generation: number;
  sender: ConfigSender;
}

export class ServingWorkers {
  private readonly live = new Map<Worker, Entry>();
  private lastConfig: CompiledConfig | undefined;
  private lastAnswers: ReadonlyMap<string, ServiceAnswer> | undefined;
  /** Counts updates: a worker that got the previous one can take a list of changed keys and rebuild only those. */
  private generation = 0;
  /** The worker being sent a new config, one at a time (see update). */
  private delivering: { worker: Worker; timer: NodeJS.Timeout } | undefined;
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

  /**
   * The engine serves a new snapshot: every worker builds the same one. New
   * answers for the config a worker holds go to it at once. A new config
   * goes to one worker at a time, the next once that one serves it: a
   * worker cloning a large changed zone stops reading the shared socket
   * while it does, and the others read it meanwhile (with the previous
   * config until their turn). Workers still on the previous config get no
   * answers meant for the new one; they get the latest with their copy.
   */
  update(config: CompiledConfig, answers: ReadonlyMap<string, ServiceAnswer>, changed?: readonly string[]): void {
    const previous = this.generation++;
    this.lastConfig = config;
    this.lastAnswers = answers;
    for (const [w, entry] of this.live) {
      if (entry.config !== config || entry.applying) continue;
      const incremental = changed !== undefined && entry.generation === previous;
      entry.generation = this.generation;
      this.send(w, incremental ? { type: 'answers', answers, changed } : { type: 'answers', answers });
    }
    this.deliverNext();
  }

  private deliverNext(): void {
    if (this.delivering !== undefined || this.lastConfig === undefined || this.closing) return;
    for (const [w, entry] of this.live) {
      if (entry.config === undefined || entry.config === this.lastConfig || !w.isConnected()) continue;
      this.sendConfig(w, entry);
      const timer = setTimeout(() => {
        this.opts.log.warn({ worker: w.process.pid }, `serving worker has not applied the new config within ${APPLY_TIMEOUT_MS / 1000} s; sending it to the others`);
        this.applied(w);
      }, APPLY_TIMEOUT_MS);
      timer.unref();
      this.delivering = { worker: w, timer };
      return;
    }
  }

  private sendConfig(w: Worker, entry: Entry): void {
    const config = this.lastConfig!;
    entry.config = config;
    entry.applying = true;
    entry.generation = this.generation;
    this.send(w, { type: 'config', config: entry.sender.encode(config), answers: this.lastAnswers! });
  }

  /** w serves what it was sent (or gave up, or died): answers that came meanwhile, then the next worker's turn. */
  private applied(w: Worker): void {
    const entry = this.live.get(w);
    if (entry !== undefined && entry.applying) {
      entry.applying = false;
      if (entry.config === this.lastConfig) {
        entry.generation = this.generation;
        this.send(w, { type: 'answers', answers: this.lastAnswers! });
      }
    }
    if (this.delivering?.worker === w) {
      clearTimeout(this.delivering.timer);
      this.delivering = undefined;
    }
    this.deliverNext();
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
    const entry: Entry = { startedAt: Date.now(), listening: false, config: undefined, applying: false, generation: -1, sender: new ConfigSender() };
    this.live.set(w, entry);
    const { log } = this.opts;
    const listening = new Promise<void>((resolve, reject) => {
      let timeout = setTimeout(() => reject(new WorkerStartError(`serving worker ${w.process.pid} did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      timeout.unref();
      w.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'hello': {
            const { config, answers } = this.opts.state();
            this.lastConfig = config;
            this.lastAnswers = answers;
            this.send(w, {
              type: 'start',
              listen: this.opts.listen,
              cookieSecret: this.opts.cookieSecret,
              workers: this.opts.workers,
              logLevel: this.opts.log.level,
              querySample: this.opts.querySample,
            });
            // Not serving yet, so not one at a time: a starting worker takes the current config at once.
            this.sendConfig(w, entry);
            // From here its start takes as long as cloning the config does: seconds for a million records.
            clearTimeout(timeout);
            timeout = setTimeout(() => reject(new WorkerStartError(`serving worker ${w.process.pid} did not serve its config within ${APPLY_TIMEOUT_MS / 1000} s`)), APPLY_TIMEOUT_MS);
            timeout.unref();
            return;
          }
          case 'applied':
            log.debug({ worker: w.process.pid }, 'serving worker serves the new config');
            this.applied(w);
            return;
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
        this.applied(w);
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
