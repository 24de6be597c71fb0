// The probe worker: a worker_threads entry that runs every probe loop, so
// that checks (sockets, TLS handshakes, timers by the thousand) never compete
// with the thread that answers DNS. It owns the per-member state (confirm +
// damping, health/member.ts) and reports every check result to the main
// thread, which publishes the HealthSnapshot (monitor.ts).
//
// Protocol (structured-clone messages, all fields plain data):
//   main → worker  { type: 'configure', probes: ProbeJob[] }   full desired set
//                  { type: 'stop' }                             stop loops, exit
//   worker → main  { type: 'ready' }                            once, at start
//                  { type: 'health', key, serial, health, changed, check? }
//
// The module is also imported (types, jobSignature) by the main thread; the
// loop machinery only starts in a worker started with WORKER_DATA, so that
// importing it from some other worker thread starts nothing.

import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { classifyError, type Checker } from './checkers/types.js';
import { httpChecker, type HttpCheckSpec } from './checkers/http.js';
import { tcpChecker, type TcpCheckSpec } from './checkers/tcp.js';
import { dnsChecker, type DnsCheckSpec } from './checkers/dns.js';
import { createMemberState, isSteady, memberReleaseAt, observeMember, tickMember, type MemberState } from './health/member.js';
import type { FamilyHealth, HealthStatus } from './health/state.js';
import type { Damping, Family, ProbeSpec } from '../zones/service.js';

/** One probe loop: one member, one family, the first address of that family. */
export interface ProbeJob {
  /** healthKey(memberId, family). */
  readonly key: string;
  /**
   * Chosen by the main thread, new whenever the job is new or changed; echoed
   * in every report so results of a replaced loop still in flight are dropped.
   */
  readonly serial: number;
  readonly memberId: string;
  readonly family: Family;
  readonly address: string;
  /** Regex params (expect_body, expect) travel as "/source/flags" strings. */
  readonly spec: ProbeSpec;
  readonly damping: Damping;
  readonly initial: HealthStatus;
  /** `since` of the initial status when it is carried over (a restarted worker); default: the loop's start. */
  readonly since?: number;
}

export interface CheckReport {
  readonly ok: boolean;
  readonly reason: string;
  readonly latencyMs: number;
  /** ms since the epoch. */
  readonly startedAt: number;
}

export type ToWorker = { readonly type: 'configure'; readonly probes: readonly ProbeJob[] } | { readonly type: 'stop' };

export type FromWorker =
  | { readonly type: 'ready' }
  | {
      readonly type: 'health';
      readonly key: string;
      readonly serial: number;
      readonly health: FamilyHealth;
      /** status or held changed with this report. */
      readonly changed: boolean;
      /** The check that produced it; absent when a damping hold ended on its own timer, or the probe could not be built. */
      readonly check?: CheckReport;
    };

/** JSON with sorted keys; regexes as "/source/flags". */
export function canonicalJson(v: unknown): string {
  if (v instanceof RegExp) return JSON.stringify(`/${v.source}/${v.flags}`);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** What decides whether a running loop (and its state) can be kept across a configure. */
export function jobSignature(job: Pick<ProbeJob, 'address' | 'spec' | 'damping'>): string {
  return canonicalJson({ address: job.address, spec: job.spec, damping: job.damping });
}

/** Params that are a substring, or a regex when written "/regex/flags" (as in the config). */
const MATCHER_PARAMS = ['expect_body', 'expect'] as const;

function toMatcher(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const m = /^\/(.+)\/([dgimsuvy]*)$/s.exec(v);
  return m ? new RegExp(m[1]!, m[2]) : v;
}

/** Builds the job's checker: address + timeout_ms + the spec's params; throws CheckerSpecError. */
export function buildChecker(job: ProbeJob): Checker {
  const params: Record<string, unknown> = { ...job.spec.params };
  for (const k of MATCHER_PARAMS) if (k in params) params[k] = toMatcher(params[k]);
  const spec = { ...params, address: job.address, timeout_ms: job.spec.timeoutMs };
  switch (job.spec.type) {
    case 'http':
    case 'https':
      return httpChecker({ ...(spec as unknown as HttpCheckSpec), scheme: job.spec.type });
    case 'tcp':
      return tcpChecker(spec as unknown as TcpCheckSpec);
    case 'dns':
      return dnsChecker(spec as unknown as DnsCheckSpec);
    case 'none':
      throw new Error('probe type none has no checker');
  }
}

/** setTimeout cannot wait longer than 2^31 − 1 ms; longer waits are re-armed. */
const MAX_TIMER_MS = 3_600_000;

type Post = (msg: FromWorker) => void;

/** Anything kept per key across configures. */
interface Running {
  readonly signature: string;
  stop(): void;
}

class ProbeLoop implements Running {
  private state: MemberState;
  private readonly checker: Checker;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private releaseTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly job: ProbeJob,
    readonly signature: string,
    checker: Checker,
    private readonly post: Post,
  ) {
    this.checker = checker;
    this.state = createMemberState({ probe: job.spec, damping: job.damping, initial: job.initial }, job.since ?? Date.now());
  }

  start(): void {
    // The first check is due at once.
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.releaseTimer !== undefined) clearTimeout(this.releaseTimer);
    this.timer = this.releaseTimer = undefined;
    // Settles a check in flight at once (reason "aborted", then ignored) and releases its socket.
    this.abort.abort();
  }

  private async run(): Promise<void> {
    this.timer = undefined;
    if (this.stopped) return;
    const startedAt = Date.now();
    // Pacing uses the monotonic clock: a wall-clock step must not stall a loop.
    const startedMono = performance.now();
    let result: { ok: boolean; reason: string; latencyMs: number };
    try {
      result = await this.checker(this.abort.signal);
    } catch (err) {
      // Checkers never reject by contract; a bug there must not end the loop.
      result = { ok: false, reason: classifyError(err), latencyMs: Date.now() - startedAt };
    }
    if (this.stopped) return;
    const o = observeMember(this.state, result, startedAt);
    this.state = o.state;
    this.post({
      type: 'health',
      key: this.job.key,
      serial: this.job.serial,
      health: o.health,
      changed: o.changed,
      check: { ok: result.ok, reason: result.reason, latencyMs: result.latencyMs, startedAt },
    });
    // Jitter spreads the steady checks of many members; it never touches a
    // recheck, which would stretch the confirmation window.
    let delay = o.nextCheckInMs;
    const jitter = this.job.spec.jitterMs;
    if (jitter > 0 && isSteady(o.state)) delay = Math.max(0, delay + (Math.random() * 2 - 1) * jitter);
    // Paced start-to-start, but never overlapping: a check that overran its
    // slot is followed at once by the next.
    const wait = Math.max(0, startedMono + delay - performance.now());
    this.timer = setTimeout(() => void this.run(), wait);
    this.armRelease();
  }

  /** A hold ends at a computed time, not at the next check: a timer for it. */
  private armRelease(): void {
    if (this.releaseTimer !== undefined) clearTimeout(this.releaseTimer);
    this.releaseTimer = undefined;
    const at = memberReleaseAt(this.state);
    if (at === undefined || this.stopped) return;
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, at - Date.now()));
    this.releaseTimer = setTimeout(() => {
      this.releaseTimer = undefined;
      if (this.stopped) return;
      const u = tickMember(this.state, Date.now());
      if (u.state !== this.state) {
        this.state = u.state;
        this.post({ type: 'health', key: this.job.key, serial: this.job.serial, health: u.health, changed: u.changed });
      }
      this.armRelease();
    }, wait);
  }
}

/** A probe that could not be built: reported once, keeping its initial status (never fail closed on a config bug). */
class BrokenProbe implements Running {
  constructor(readonly signature: string) {}
  stop(): void {}
}

/** A 'none' probe: reported up once, never checked. */
class Unprobed implements Running {
  constructor(readonly signature: string) {}
  stop(): void {}
}

/** All loops of this worker, keyed by healthKey. */
export class ProbeRunner {
  private readonly loops = new Map<string, Running>();

  constructor(private readonly post: Post) {}

  configure(jobs: readonly ProbeJob[]): void {
    const wanted = new Map<string, ProbeJob>();
    for (const j of jobs) wanted.set(j.key, j);
    for (const [key, running] of this.loops) {
      const j = wanted.get(key);
      if (j === undefined || jobSignature(j) !== running.signature) {
        running.stop();
        this.loops.delete(key);
      }
    }
    for (const job of wanted.values()) {
      if (!this.loops.has(job.key)) this.loops.set(job.key, this.startJob(job));
    }
  }

  stop(): void {
    for (const running of this.loops.values()) running.stop();
    this.loops.clear();
  }

  get size(): number {
    return this.loops.size;
  }

  private startJob(job: ProbeJob): Running {
    const signature = jobSignature(job);
    const now = Date.now();
    if (job.spec.type === 'none') {
      this.post({ type: 'health', key: job.key, serial: job.serial, health: { status: 'up', since: now, reason: 'not probed', held: false }, changed: job.initial !== 'up' });
      return new Unprobed(signature);
    }
    let checker: Checker;
    try {
      checker = buildChecker(job);
    } catch (err) {
      const reason = `bad probe: ${err instanceof Error ? err.message : String(err)}`;
      this.post({ type: 'health', key: job.key, serial: job.serial, health: { status: job.initial, since: now, reason, held: false }, changed: false });
      return new BrokenProbe(signature);
    }
    const loop = new ProbeLoop(job, signature, checker, this.post);
    loop.start();
    return loop;
  }
}

function serve(port: MessagePort): void {
  const runner = new ProbeRunner((msg) => port.postMessage(msg));
  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'configure') runner.configure(msg.probes);
    else if (msg.type === 'stop') {
      runner.stop();
      // Nothing else holds the event loop: with the port closed the thread ends.
      port.close();
    }
  });
  port.postMessage({ type: 'ready' } satisfies FromWorker);
}

/** workerData of the probe worker; see the note at the top. */
export const WORKER_DATA = { role: 'vigil-probe-worker' } as const;

if (parentPort !== null && (workerData as { role?: unknown } | null)?.role === WORKER_DATA.role) serve(parentPort);
