// Memory of the Vigil process over the soak: resident set size from
// /proc/PID/status (what the kernel charges the process, heap and all) every
// sample, and the V8 heap in use from Vigil's own metrics endpoint; then the
// growth after warm-up, a trend, and per-minute summaries.

import { readFileSync } from 'node:fs';

export interface MemorySample {
  /** Milliseconds since the soak started. */
  readonly atMs: number;
  readonly rssBytes: number;
  /** vigil_nodejs_heap_size_used_bytes; undefined when the scrape failed. */
  readonly heapUsedBytes: number | undefined;
  /** vigil_nodejs_heap_size_total_bytes: what V8 has reserved for its heap. */
  readonly heapTotalBytes: number | undefined;
  /** vigil_nodejs_external_memory_bytes (Buffers and other memory outside the V8 heap). */
  readonly externalBytes: number | undefined;
}

export class ProcessGone extends Error {
  override name = 'ProcessGone';
  constructor(readonly pid: number) {
    super(`process ${pid} is gone (no /proc/${pid}/status)`);
  }
}

/** VmRSS of `pid` in bytes. */
export function readRss(pid: number): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    throw new ProcessGone(pid);
  }
  const m = /^VmRSS:\s+([0-9]+) kB$/m.exec(status);
  if (m === null) throw new ProcessGone(pid);
  return Number(m[1]) * 1024;
}

/** The value of one sample line `name{labels} value` (labels matched as written) in Prometheus text. */
export function metricValue(text: string, name: string, labels = ''): number | undefined {
  const want = labels === '' ? name : `${name}{${labels}}`;
  for (const line of text.split('\n')) {
    if (line.startsWith(want + ' ')) return Number(line.slice(want.length + 1).trim().split(' ')[0]);
  }
  return undefined;
}

export interface MemoryVerdict {
  /** RSS at the first sample at or after the warm-up. */
  readonly baselineRss: number;
  /** Highest RSS after the warm-up. */
  readonly peakRss: number;
  /** peakRss − baselineRss: what the soak bounds. */
  readonly growthBytes: number;
  /** Least-squares slope of RSS after the warm-up, in bytes per minute (a leak shows as a steady slope). */
  readonly slopeBytesPerMin: number;
  readonly samplesAfterWarmup: number;
}

/** Growth after the first `warmupShare` of `durationMs`; undefined with fewer than two samples after it. */
export function memoryVerdict(samples: readonly MemorySample[], durationMs: number, warmupShare: number): MemoryVerdict | undefined {
  const after = samples.filter((s) => s.atMs >= durationMs * warmupShare);
  if (after.length < 2) return undefined;
  const baselineRss = after[0]!.rssBytes;
  const peakRss = Math.max(...after.map((s) => s.rssBytes));
  const n = after.length;
  const mx = after.reduce((a, s) => a + s.atMs, 0) / n;
  const my = after.reduce((a, s) => a + s.rssBytes, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const s of after) {
    sxy += (s.atMs - mx) * (s.rssBytes - my);
    sxx += (s.atMs - mx) ** 2;
  }
  const slopePerMs = sxx === 0 ? 0 : sxy / sxx;
  return { baselineRss, peakRss, growthBytes: peakRss - baselineRss, slopeBytesPerMin: slopePerMs * 60_000, samplesAfterWarmup: n };
}

export interface MemoryBucket {
  /** Bucket start, ms since the soak started. */
  readonly fromMs: number;
  readonly rss: { readonly min: number; readonly max: number; readonly last: number };
  readonly heapUsed: { readonly min: number; readonly max: number; readonly last: number } | undefined;
}

/** Min, max and last RSS (and heap in use) per `bucketMs` (a minute in the bench). */
export function memoryBuckets(samples: readonly MemorySample[], bucketMs: number): MemoryBucket[] {
  const groups = new Map<number, MemorySample[]>();
  for (const s of samples) {
    const k = Math.floor(s.atMs / bucketMs);
    groups.set(k, [...(groups.get(k) ?? []), s]);
  }
  const stat = (xs: number[]): { min: number; max: number; last: number } => ({ min: Math.min(...xs), max: Math.max(...xs), last: xs[xs.length - 1]! });
  return [...groups.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([k, g]) => {
      const heaps = g.map((s) => s.heapUsedBytes).filter((h): h is number => h !== undefined);
      return { fromMs: k * bucketMs, rss: stat(g.map((s) => s.rssBytes)), heapUsed: heaps.length > 0 ? stat(heaps) : undefined };
    });
}

export const MiB = 1024 * 1024;
export const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;
