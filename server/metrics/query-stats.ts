// Per-query counting for /metrics. This runs once per query on the answering
// thread, so it touches only preallocated typed arrays: no labels, no maps,
// no strings. The prom-client side (registry.ts) turns these arrays into
// series when /metrics is scraped, which is rare next to queries.

import { performance } from 'node:perf_hooks';
import type { QueryInfo, Transport } from '../answer/respond.js';
import type { Snapshot } from '../answer/snapshot.js';
import { RCODE, TYPE } from '../wire/constants.js';

/**
 * Watches the answering path. The transports call it only when one is
 * configured; with none they do not even read the clock.
 */
export interface QueryObserver {
  /**
   * Called after each query is answered or dropped; `startedAt` is
   * performance.now() at receipt. `info` is reused for the next query as soon
   * as this returns: copy what you keep.
   */
  query(info: QueryInfo, transport: Transport, client: string, startedAt: number): void;
  tcpOpened?(): void;
  tcpClosed?(): void;
  /** A connection refused at accept time; `reason` is one of TCP_REJECT_REASONS. */
  tcpRejected?(reason: TcpRejectReason): void;
  /**
   * The server answers from `snapshot` from the next query on (called at
   * start and on every swap, in the same tick, before any query sees it), so
   * a view index in QueryInfo can be mapped to the right view.
   */
  snapshotChanged?(snapshot: Snapshot): void;
}

export const TCP_REJECT_REASONS = ['max_connections', 'max_connections_per_client'] as const;
export type TcpRejectReason = (typeof TCP_REJECT_REASONS)[number];

/** One observer that forwards every call to each of `observers`, in order. */
export function composeObservers(...observers: readonly QueryObserver[]): QueryObserver {
  if (observers.length === 1) return observers[0]!;
  const list = [...observers];
  const opened = list.filter((o) => o.tcpOpened !== undefined);
  const closed = list.filter((o) => o.tcpClosed !== undefined);
  const rejected = list.filter((o) => o.tcpRejected !== undefined);
  const swapped = list.filter((o) => o.snapshotChanged !== undefined);
  return {
    query(info, transport, client, startedAt) {
      for (let i = 0; i < list.length; i++) list[i]!.query(info, transport, client, startedAt);
    },
    tcpOpened() {
      for (const o of opened) o.tcpOpened!();
    },
    tcpClosed() {
      for (const o of closed) o.tcpClosed!();
    },
    tcpRejected(reason) {
      for (const o of rejected) o.tcpRejected!(reason);
    },
    snapshotChanged(snapshot) {
      for (const o of swapped) o.snapshotChanged!(snapshot);
    },
  };
}

// --- label spaces (bounded: every label value below is from a fixed list or a configured view name) ---

export const TRANSPORTS: readonly Transport[] = ['udp', 'tcp'];

/** Types with their own qtype label; every other type is "other". */
export const QTYPE_LABELS = [
  'A', 'AAAA', 'SRV', 'MX', 'NS', 'SOA', 'CNAME', 'TXT', 'CAA', 'PTR', 'ANY', 'HTTPS', 'SVCB', 'DS', 'DNSKEY', 'AXFR', 'IXFR', 'other',
] as const;
const QTYPE_NUMBERS: readonly number[] = [
  TYPE.A, TYPE.AAAA, TYPE.SRV, TYPE.MX, TYPE.NS, TYPE.SOA, TYPE.CNAME, TYPE.TXT, TYPE.CAA, TYPE.PTR, TYPE.ANY,
  65, // HTTPS (RFC 9460)
  64, // SVCB (RFC 9460)
  TYPE.DS, TYPE.DNSKEY, TYPE.AXFR, TYPE.IXFR,
];
const QTYPE_OTHER = QTYPE_LABELS.length - 1;

export const RCODE_LABELS = ['NOERROR', 'NXDOMAIN', 'REFUSED', 'FORMERR', 'SERVFAIL', 'NOTIMP', 'BADVERS', 'other'] as const;
const RCODE_NUMBERS: readonly number[] = [RCODE.NOERROR, RCODE.NXDOMAIN, RCODE.REFUSED, RCODE.FORMERR, RCODE.SERVFAIL, RCODE.NOTIMP, RCODE.BADVERS];
const RCODE_OTHER = RCODE_LABELS.length - 1;

/** Label of a query that matched no view (REFUSED by views, or not parsed far enough). */
export const NO_VIEW = 'none';

/**
 * Upper bounds (seconds) of the response-time histogram. An answer from
 * memory takes tens of microseconds; anything near 100 ms means the event
 * loop was blocked (GC, a reload compiling on this thread), which is what
 * the upper buckets are for.
 */
export const DURATION_BUCKETS: readonly number[] = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

// Lookup tables: one array read per label instead of a search.
const QTYPE_SLOT = new Uint8Array(65536).fill(QTYPE_OTHER);
QTYPE_NUMBERS.forEach((n, i) => (QTYPE_SLOT[n] = i));
/** Full rcodes are 12 bits (4 in the header, 8 in OPT). */
const RCODE_SLOT = new Uint8Array(4096).fill(RCODE_OTHER);
RCODE_NUMBERS.forEach((n, i) => (RCODE_SLOT[n] = i));

const NQ = QTYPE_LABELS.length;
const NR = RCODE_LABELS.length;
const NT = TRANSPORTS.length;
/** Cells per view row: qtype × rcode × transport. */
const ROW = NQ * NR * NT;
const NB = DURATION_BUCKETS.length;

export interface QueryCount {
  readonly view: string;
  readonly qtype: string;
  readonly rcode: string;
  readonly transport: Transport;
  readonly count: number;
}

export interface DurationCounts {
  /** Cumulative count per bound of DURATION_BUCKETS, then +Inf (= count). */
  readonly cumulative: readonly number[];
  readonly sum: number;
  readonly count: number;
}

/**
 * Counts since the last QueryStats.take(), in a form that crosses a process
 * boundary (cluster IPC): serving workers count locally and the primary,
 * which owns /metrics, adds them up with absorb().
 */
export interface QueryStatsDelta {
  readonly rows: readonly (readonly [string, Float64Array])[];
  readonly buckets: Float64Array;
  readonly durationSum: Float64Array;
  readonly durationCount: Float64Array;
  readonly truncated: Float64Array;
  readonly malformed: Float64Array;
  readonly dropped: Float64Array;
}

function addInto(into: Float64Array, from: Float64Array): void {
  const n = Math.min(into.length, from.length);
  for (let i = 0; i < n; i++) into[i]! += from[i]!;
}

/**
 * Hot-path counters. Counts are float64 (exact to 2^53, centuries of queries).
 * Rows are kept per view name, not per view index, so a reload that reorders
 * or renames views moves no count to the wrong view; a view removed by a
 * reload loses its row (its series leave /metrics).
 */
export class QueryStats implements QueryObserver {
  /** Row per view name; NO_VIEW is always there. */
  private readonly rows = new Map<string, Float64Array>([[NO_VIEW, new Float64Array(ROW)]]);
  private readonly noView: Float64Array;
  /** Row for each index of the current snapshot's views. */
  private byIndex: Float64Array[] = [];
  private viewNames: readonly string[] = [];

  private readonly buckets = new Float64Array(NT * (NB + 1));
  private readonly durationSum = new Float64Array(NT);
  private readonly durationCount = new Float64Array(NT);
  private readonly truncatedCount = new Float64Array(NT);
  private readonly malformedCount = new Float64Array(NT);
  private readonly droppedCount = new Float64Array(NT);

  private tcpOpen = 0;
  private tcpTotal = 0;
  private readonly tcpRejectedCount = new Float64Array(TCP_REJECT_REASONS.length);

  constructor() {
    this.noView = this.rows.get(NO_VIEW)!;
  }

  query(info: QueryInfo, transport: Transport, _client: string, startedAt: number): void {
    const t = transport === 'udp' ? 0 : 1;
    if (info.outcome === 'drop') {
      this.droppedCount[t]!++;
      return;
    }
    const seconds = (performance.now() - startedAt) / 1000;
    if (info.outcome === 'error') this.malformedCount[t]!++;
    if (info.truncated) this.truncatedCount[t]!++;
    const row = info.view >= 0 && info.view < this.byIndex.length ? this.byIndex[info.view]! : this.noView;
    row[(QTYPE_SLOT[info.qtype & 0xffff]! * NR + RCODE_SLOT[info.rcode & 0xfff]!) * NT + t]!++;
    let b = 0;
    while (b < NB && seconds > DURATION_BUCKETS[b]!) b++;
    this.buckets[t * (NB + 1) + b]!++;
    this.durationSum[t]! += seconds;
    this.durationCount[t]!++;
  }

  tcpOpened(): void {
    this.tcpOpen++;
    this.tcpTotal++;
  }

  tcpClosed(): void {
    this.tcpOpen--;
  }

  tcpRejected(reason: TcpRejectReason): void {
    const i = TCP_REJECT_REASONS.indexOf(reason);
    if (i >= 0) this.tcpRejectedCount[i]!++;
  }

  snapshotChanged(snapshot: Snapshot): void {
    this.setViews(snapshot.views.map((v) => v.name));
  }

  /** Maps view indices to names; cheap when the names are unchanged (every health-driven swap). */
  setViews(names: readonly string[]): void {
    if (names.length === this.viewNames.length && names.every((n, i) => n === this.viewNames[i])) return;
    for (const name of this.rows.keys()) if (name !== NO_VIEW && !names.includes(name)) this.rows.delete(name);
    this.byIndex = names.map((name) => {
      let row = this.rows.get(name);
      if (row === undefined) {
        row = new Float64Array(ROW);
        this.rows.set(name, row);
      }
      return row;
    });
    this.viewNames = [...names];
  }

  /** The counts since the previous take(), zeroing them; undefined when nothing was counted. */
  take(): QueryStatsDelta | undefined {
    let any = false;
    for (const c of this.durationCount) if (c > 0) any = true;
    for (const c of this.droppedCount) if (c > 0) any = true;
    if (!any) return undefined;
    const delta: QueryStatsDelta = {
      rows: [...this.rows].map(([name, row]) => [name, row.slice()] as const),
      buckets: this.buckets.slice(),
      durationSum: this.durationSum.slice(),
      durationCount: this.durationCount.slice(),
      truncated: this.truncatedCount.slice(),
      malformed: this.malformedCount.slice(),
      dropped: this.droppedCount.slice(),
    };
    for (const row of this.rows.values()) row.fill(0);
    for (const a of [this.buckets, this.durationSum, this.durationCount, this.truncatedCount, this.malformedCount, this.droppedCount]) a.fill(0);
    return delta;
  }

  /** Adds another process's counts; rows of views this process does not know (removed by a reload) are dropped. */
  absorb(delta: QueryStatsDelta): void {
    for (const [name, row] of delta.rows) {
      const mine = this.rows.get(name);
      if (mine !== undefined) addInto(mine, row);
    }
    addInto(this.buckets, delta.buckets);
    addInto(this.durationSum, delta.durationSum);
    addInto(this.durationCount, delta.durationCount);
    addInto(this.truncatedCount, delta.truncated);
    addInto(this.malformedCount, delta.malformed);
    addInto(this.droppedCount, delta.dropped);
  }

  // --- read side, at scrape time ---

  /** Every non-zero (view, qtype, rcode, transport) count. */
  queryCounts(): QueryCount[] {
    const out: QueryCount[] = [];
    for (const [view, row] of this.rows) {
      for (let q = 0; q < NQ; q++) {
        for (let r = 0; r < NR; r++) {
          for (let t = 0; t < NT; t++) {
            const count = row[(q * NR + r) * NT + t]!;
            if (count > 0) out.push({ view, qtype: QTYPE_LABELS[q]!, rcode: RCODE_LABELS[r]!, transport: TRANSPORTS[t]!, count });
          }
        }
      }
    }
    return out;
  }

  durations(transport: Transport): DurationCounts {
    const t = transport === 'udp' ? 0 : 1;
    const cumulative: number[] = [];
    let acc = 0;
    for (let b = 0; b <= NB; b++) {
      acc += this.buckets[t * (NB + 1) + b]!;
      cumulative.push(acc);
    }
    return { cumulative, sum: this.durationSum[t]!, count: this.durationCount[t]! };
  }

  truncated(transport: Transport): number {
    return this.truncatedCount[transport === 'udp' ? 0 : 1]!;
  }

  malformed(transport: Transport): number {
    return this.malformedCount[transport === 'udp' ? 0 : 1]!;
  }

  dropped(transport: Transport): number {
    return this.droppedCount[transport === 'udp' ? 0 : 1]!;
  }

  tcp(): { readonly open: number; readonly total: number; readonly rejected: ReadonlyMap<TcpRejectReason, number> } {
    return {
      open: this.tcpOpen,
      total: this.tcpTotal,
      rejected: new Map(TCP_REJECT_REASONS.map((r, i) => [r, this.tcpRejectedCount[i]!])),
    };
  }
}
