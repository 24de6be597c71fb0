// One dnsperf run as a child process, and its statistics block parsed into
// numbers. The child is handed back at once so the caller can kill it when the
// bench is interrupted; a dnsperf left behind would load the next run.

import { spawn, type ChildProcess } from 'node:child_process';

export interface DnsperfResult {
  readonly sent: number;
  readonly completed: number;
  readonly lost: number;
  readonly lostPct: number;
  readonly qps: number;
  readonly avgMs: number;
  readonly maxMs: number;
  /** With statsIntervalS: dnsperf's q/s over each interval, by the interval's end (Unix time, seconds). */
  readonly intervals: readonly { readonly at: number; readonly qps: number }[];
}

export interface DnsperfOptions {
  readonly port: number;
  readonly queryFile: string;
  readonly durationS: number;
  readonly clients: number;
  /** Pin dnsperf to this CPU with taskset; undefined runs it unpinned. */
  readonly cpu?: number;
  /** dnsperf -S: q/s every this many seconds (DnsperfResult.intervals). */
  readonly statsIntervalS?: number;
}

export class DnsperfFailed extends Error {
  override name = 'DnsperfFailed';
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
  }
}

function num(text: string, re: RegExp, what: string): number {
  const m = re.exec(text);
  if (m === null || m[1] === undefined) throw new DnsperfFailed(`dnsperf output has no "${what}"`, text);
  return Number(m[1]);
}

/** Reads dnsperf's "Statistics:" block (dnsperf 2.x wording). */
export function parseDnsperf(text: string): DnsperfResult {
  return {
    sent: num(text, /Queries sent:\s+(\d+)/, 'Queries sent'),
    completed: num(text, /Queries completed:\s+(\d+)/, 'Queries completed'),
    lost: num(text, /Queries lost:\s+(\d+)/, 'Queries lost'),
    lostPct: num(text, /Queries lost:\s+\d+ \(([\d.]+)%\)/, 'Queries lost (%)'),
    qps: num(text, /Queries per second:\s+([\d.]+)/, 'Queries per second'),
    avgMs: num(text, /Average Latency \(s\):\s+([\d.]+)/, 'Average Latency') * 1000,
    maxMs: num(text, /Average Latency \(s\):.*max ([\d.]+)\)/, 'max latency') * 1000,
    // -S lines: "1795454904.202317: 43848.599664".
    intervals: [...text.matchAll(/^(\d+\.\d+): ([\d.]+)$/gm)].map((m) => ({ at: Number(m[1]), qps: Number(m[2]) })),
  };
}

export interface DnsperfRun {
  readonly child: ChildProcess;
  readonly result: Promise<DnsperfResult>;
}

export function runDnsperf(opts: DnsperfOptions): DnsperfRun {
  const args = ['-s', '127.0.0.1', '-p', String(opts.port), '-d', opts.queryFile, '-l', String(opts.durationS), '-c', String(opts.clients)];
  if (opts.statsIntervalS !== undefined) args.push('-S', String(opts.statsIntervalS));
  const [cmd, argv] = opts.cpu !== undefined ? ['taskset', ['-c', String(opts.cpu), 'dnsperf', ...args]] : ['dnsperf', args];
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  // Lost queries print one "[Timeout]" line each; keep only the tail, where the statistics are.
  let out = '';
  const keep = (chunk: Buffer): void => {
    out += chunk.toString('utf8');
    if (out.length > 1_000_000) out = out.slice(-200_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const result = new Promise<DnsperfResult>((resolve, reject) => {
    child.once('error', (err) => reject(new DnsperfFailed(`cannot run ${cmd}: ${err.message}`, out)));
    child.once('close', (code, signal) => {
      if (code !== 0) {
        reject(new DnsperfFailed(`dnsperf exited with ${signal ?? `code ${code}`}`, out.slice(-4000)));
        return;
      }
      try {
        resolve(parseDnsperf(out));
      } catch (err) {
        reject(err);
      }
    });
  });
  return { child, result };
}
