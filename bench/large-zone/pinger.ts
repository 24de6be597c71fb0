// A client in its own process that asks one question every few ms and notes
// when each answer comes back, so a server's stalls show up as gaps even when
// the server's own event loop is the thing that stalls. Driven over stdin:
//
//   node pinger.js --port P [--name example.test.] [--type SOA] [--every 10]
//   stdin "mark"  starts a measuring window (stats reset)
//   stdin "stop"  stops sending, waits --grace ms for late answers, prints one JSON line of PingStats, exits
//
// It prints "ready" once the first answer arrives.

import { createSocket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { encodeQuery, QTYPE, readReply } from './dnsquery.js';

export interface PingStats {
  readonly sent: number;
  readonly answered: number;
  readonly lost: number;
  /** Answered, but more than 1 s after the question: a stub resolver would have given up or retried. */
  readonly lateOver1s: number;
  /** Longest time without any answer in the window (from its start, between answers, up to "stop"). */
  readonly maxGapMs: number;
  readonly maxLatencyMs: number;
  readonly windowMs: number;
}

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    name: { type: 'string', default: 'example.test.' },
    type: { type: 'string', default: 'SOA' },
    every: { type: 'string', default: '10' },
    grace: { type: 'string', default: '2000' },
  },
});
const port = Number(values.port);
const qtype = QTYPE[values.type as keyof typeof QTYPE];
if (!Number.isInteger(port) || port <= 0 || qtype === undefined) {
  process.stderr.write('usage: pinger --port P [--name N] [--type SOA|A|AAAA|...] [--every MS] [--grace MS]\n');
  process.exit(2);
}
const every = Number(values.every);
const grace = Number(values.grace);

const sock = createSocket('udp4');
/** Send time of each question in the window, by ID; deleted when answered. */
const pending = new Map<number, number>();
let nextId = 0;
let windowStart = performance.now();
let lastAnswer = windowStart;
let sent = 0;
let answered = 0;
let late = 0;
let maxGap = 0;
let maxLatency = 0;
let ready = false;
let stopping = false;

sock.on('message', (m) => {
  const r = readReply(m);
  if (r === undefined) return;
  const now = performance.now();
  if (!ready) {
    ready = true;
    process.stdout.write('ready\n');
  }
  const at = pending.get(r.id);
  if (at === undefined) return;
  pending.delete(r.id);
  answered++;
  const latency = now - at;
  if (latency > maxLatency) maxLatency = latency;
  if (latency > 1000) late++;
  if (now - lastAnswer > maxGap) maxGap = now - lastAnswer;
  lastAnswer = now;
});

const timer = setInterval(() => {
  const id = nextId;
  nextId = (nextId + 1) & 0xffff;
  // 100 q/s wraps the 16-bit ID after 11 minutes; a reused ID still pending is counted lost.
  pending.set(id, performance.now());
  sent++;
  sock.send(encodeQuery(id, values.name, qtype), port, values.host);
}, every);

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const cmd = line.trim();
  if (cmd === 'mark') {
    windowStart = performance.now();
    lastAnswer = windowStart;
    pending.clear();
    sent = answered = late = 0;
    maxGap = maxLatency = 0;
  } else if (cmd === 'stop' && !stopping) {
    stopping = true;
    clearInterval(timer);
    const stoppedAt = performance.now();
    setTimeout(() => {
      const gapToStop = Math.max(0, stoppedAt - lastAnswer);
      const stats: PingStats = {
        sent,
        answered,
        lost: pending.size,
        lateOver1s: late,
        maxGapMs: Math.max(maxGap, gapToStop),
        maxLatencyMs: maxLatency,
        windowMs: stoppedAt - windowStart,
      };
      process.stdout.write(`${JSON.stringify(stats)}\n`);
      sock.close();
      process.exit(0);
    }, grace);
  }
});
// The parent went away without saying stop: do not linger.
lines.on('close', () => {
  if (!stopping) process.exit(0);
});
