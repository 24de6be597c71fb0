// The health churn: once a period, every listed member is forced down, and the
// next period every one of them is cleared again, so each service's answer
// changes once per period. The flips go through the engine's override API, the
// same path an operator's `vigil force` takes, so they cost what a real burst of
// health changes costs the engine (consensus, answers, snapshot).
//
// A batch may be cut into slices spread over the period (--slices): one slice
// per period is a burst (a network partition seen by every probe at once), many
// slices look like probe verdicts trickling in.

import { performance } from 'node:perf_hooks';
import type { OverrideRequest } from '../../server/engine.js';

export interface FlipTarget {
  setOverride(req: OverrideRequest): Promise<unknown>;
  clearOverride(member: string, by: string, reason: string): Promise<boolean>;
}

export interface ChurnerOptions {
  readonly periodMs: number;
  readonly slices: number;
}

const BY = 'bench:churn';
const REASON = 'churn bench';

export class Churner {
  /** Wall time of each whole batch (every member flipped once), summed over its slices. */
  readonly batchMs: number[] = [];
  /** Slices that ended after the next one was due: the engine could not keep up with the period. */
  overruns = 0;
  private down = false;
  /** Members forced down right now, so stop() can put back exactly those. */
  private readonly forced = new Set<string>();
  private tick = 0;
  private t0 = 0;
  private batchSoFar = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private running = false;

  constructor(
    private readonly target: FlipTarget,
    private readonly members: readonly string[],
    private readonly opts: ChurnerOptions,
  ) {}

  start(): void {
    this.running = true;
    this.tick = 0;
    this.t0 = performance.now();
    this.schedule();
  }

  /** Stops flipping and, when the last batch left members down, clears them so the next run starts from all-up. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight;
    const left = [...this.forced];
    this.forced.clear();
    await Promise.all(left.map((m) => this.target.clearOverride(m, BY, REASON)));
    this.down = false;
    this.batchSoFar = 0;
  }

  private sliceMs(): number {
    return this.opts.periodMs / this.opts.slices;
  }

  private schedule(): void {
    if (!this.running) return;
    // Half a slice in: a run of D seconds then holds D batches, not D + 1.
    const due = this.t0 + (this.tick + 0.5) * this.sliceMs();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.inFlight = this.runSlice().finally(() => {
        this.inFlight = undefined;
      });
      void this.inFlight.then(() => this.schedule());
    }, Math.max(0, due - performance.now()));
  }

  private async runSlice(): Promise<void> {
    const slice = this.tick % this.opts.slices;
    const size = Math.ceil(this.members.length / this.opts.slices);
    const part = this.members.slice(slice * size, (slice + 1) * size);
    const start = performance.now();
    // Issued together and awaited together: a batch the engine is free to coalesce.
    if (this.down) {
      await Promise.all(part.map((m) => this.target.clearOverride(m, BY, REASON)));
      for (const m of part) this.forced.delete(m);
    } else {
      await Promise.all(part.map((member) => this.target.setOverride({ member, action: 'force_down', reason: REASON, by: BY })));
      for (const m of part) this.forced.add(m);
    }
    const end = performance.now();
    this.batchSoFar += end - start;
    this.tick++;
    if (end > this.t0 + (this.tick + 0.5) * this.sliceMs()) this.overruns++;
    if (slice === this.opts.slices - 1) {
      this.batchMs.push(this.batchSoFar);
      this.batchSoFar = 0;
      this.down = !this.down;
    }
  }
}
