// The soak's clients: a steady stream of UDP queries from several loopback
// addresses (each one a "resolver" to Vigil), each query with a timeout and
// one retry as a resolver would, and a trickle of pipelined TCP queries.
// Every response is judged (queries.ts); a query fails when no good answer
// came after the retry.

import dgram from 'node:dgram';
import { encodeQuery, queryPipelined } from '../../test/helpers/dnsclient.js';
import { answerKey, generationOf, judge, planFor, type GenerationWindow, type Kind, type Plan } from './queries.js';

export interface FailureExample {
  /** Milliseconds since the load started. */
  readonly atMs: number;
  readonly transport: 'udp' | 'tcp';
  readonly reason: string;
  readonly detail: string;
}

export class LoadStats {
  /** Queries started (UDP and TCP), not counting retries. */
  sent = 0;
  /** Queries that got a good answer (first try or retry). */
  ok = 0;
  /** Second tries after a timeout or a bad answer. */
  retried = 0;
  /** Answers that arrived after their try had timed out (ignored). */
  late = 0;
  /** UDP sends the pacer dropped because the process fell behind its schedule (not queries: never sent). */
  skipped = 0;
  tcpQueries = 0;
  readonly byKind = new Map<Kind, { sent: number; ok: number }>();
  readonly failures = new Map<string, number>();
  readonly examples: FailureExample[] = [];
  /** Per service: each distinct answer (sorted addresses) and how often it was served. */
  readonly serviceAnswers = new Map<string, Map<string, number>>();
  /** The newest generation seen in an answer. */
  maxGeneration = -1;

  constructor(private readonly t0: number) {}

  get failed(): number {
    let n = 0;
    for (const v of this.failures.values()) n += v;
    return n;
  }

  started(kind: Kind): void {
    this.sent++;
    const k = this.byKind.get(kind) ?? { sent: 0, ok: 0 };
    k.sent++;
    this.byKind.set(kind, k);
  }

  good(plan: Plan, raw: Buffer): void {
    this.ok++;
    this.byKind.get(plan.kind)!.ok++;
    if (plan.service !== undefined) {
      const m = this.serviceAnswers.get(plan.service) ?? new Map<string, number>();
      const key = answerKey(raw);
      m.set(key, (m.get(key) ?? 0) + 1);
      this.serviceAnswers.set(plan.service, m);
    }
    if (plan.kind === 'generation') {
      const gen = generationOf(raw);
      if (gen > this.maxGeneration) this.maxGeneration = gen;
    }
  }

  fail(transport: 'udp' | 'tcp', reason: string, detail: string): void {
    const key = `${transport}: ${reason}`;
    this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
    if (this.examples.length < 20) this.examples.push({ atMs: Date.now() - this.t0, transport, reason, detail });
  }
}

interface Pending {
  readonly plan: Plan;
  readonly id: number;
  readonly deadline: number;
  readonly confirmed: number;
  readonly tries: number;
  /** The last try's bad answer, reported if the retry fails too. */
  readonly lastProblem?: { reason: string; detail: string };
  done: boolean;
}

interface Client {
  readonly socket: dgram.Socket;
  readonly pending: Map<number, Pending>;
  /** Every try in send order; deadlines grow along it, so expiry pops from the front. */
  readonly queue: Pending[];
  head: number;
  nextId: number;
}

export interface UdpLoadOptions {
  readonly host: string;
  readonly port: number;
  /** Local addresses, one socket each (loopback: any 127.x.y.z). */
  readonly clients: readonly string[];
  /** Queries per second, spread evenly. */
  readonly rate: number;
  /** Per try. */
  readonly timeoutMs: number;
  readonly window: () => GenerationWindow;
}

/** Steady UDP load: `rate` queries/s round-robin over the client sockets until stop(). */
export class UdpLoad {
  private readonly clients: Client[] = [];
  private pacer: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private scheduled = 0;
  private index = 0;
  private started = 0;

  constructor(
    private readonly o: UdpLoadOptions,
    private readonly stats: LoadStats,
  ) {}

  async start(): Promise<void> {
    for (const address of this.o.clients) {
      const socket = dgram.createSocket('udp4');
      // A late burst of answers must not be dropped by our own receive buffer.
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind({ address, port: 0 }, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      try {
        socket.setRecvBufferSize(4 * 1024 * 1024);
      } catch {
        // Capped by net.core.rmem_max; the default still works at these rates.
      }
      const client: Client = { socket, pending: new Map(), queue: [], head: 0, nextId: Math.floor(Math.random() * 65536) };
      socket.on('message', (msg) => this.onMessage(client, msg));
      socket.on('error', (err) => this.stats.fail('udp', 'socket error', err.message));
      this.clients.push(client);
    }
    this.started = Date.now();
    const tickMs = 5;
    // At most 50 ms of queries at once: after a longer stall of this process,
    // the missed sends are skipped (and counted) rather than fired as a burst
    // that would measure our own backlog instead of Vigil.
    const maxBurst = Math.max(1, Math.ceil((this.o.rate * 50) / 1000));
    this.pacer = setInterval(() => {
      const due = Math.floor(((Date.now() - this.started) * this.o.rate) / 1000);
      let n = due - this.scheduled;
      this.scheduled = due;
      if (n > maxBurst) {
        this.stats.skipped += n - maxBurst;
        n = maxBurst;
      }
      for (let i = 0; i < n; i++) this.sendNew();
    }, tickMs);
    this.sweeper = setInterval(() => this.expire(Date.now()), 50);
  }

  /** Stops sending, lets every outstanding query finish (answer, retry or timeout), closes the sockets. */
  async stop(): Promise<void> {
    if (this.pacer !== undefined) clearInterval(this.pacer);
    this.pacer = undefined;
    const limit = Date.now() + 2 * this.o.timeoutMs + 2000;
    while (this.clients.some((c) => c.pending.size > 0) && Date.now() < limit) await new Promise((r) => setTimeout(r, 50));
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    // Still unanswered after the grace: failures, without a retry now that sending has stopped.
    for (const c of this.clients) {
      for (const p of c.pending.values()) this.stats.fail('udp', 'timeout', `${p.plan.qname} ${p.plan.qtype}: unanswered when the load stopped`);
      c.pending.clear();
    }
    await Promise.all(this.clients.map((c) => new Promise<void>((r) => c.socket.close(() => r()))));
  }

  private sendNew(): void {
    const plan = planFor(this.index);
    const client = this.clients[this.index % this.clients.length]!;
    this.index++;
    this.stats.started(plan.kind);
    this.send(client, plan, 1, undefined);
  }

  private send(client: Client, plan: Plan, tries: number, lastProblem: { reason: string; detail: string } | undefined): void {
    let id = client.nextId;
    while (client.pending.has(id)) id = (id + 1) & 0xffff;
    client.nextId = (id + 1) & 0xffff;
    const bytes = encodeQuery({ qname: plan.qname, qtype: plan.qtype, id, edns: id % 2 === 0 ? { udpPayload: 1232 } : false });
    const p: Pending = { plan, id, deadline: Date.now() + this.o.timeoutMs, confirmed: this.o.window().confirmed, tries, done: false, ...(lastProblem !== undefined ? { lastProblem } : {}) };
    client.pending.set(id, p);
    client.queue.push(p);
    client.socket.send(bytes, this.o.port, this.o.host, (err) => {
      if (err) this.settle(client, p, { reason: 'send error', detail: err.message });
    });
  }

  private onMessage(client: Client, msg: Buffer): void {
    if (msg.length < 2) {
      this.stats.fail('udp', 'malformed', `${msg.length}-octet datagram`);
      return;
    }
    const p = client.pending.get(msg.readUInt16BE(0));
    if (p === undefined || p.done) {
      this.stats.late++;
      return;
    }
    const problem = judge(msg, p.plan, { written: this.o.window().written, confirmed: p.confirmed });
    if (problem === undefined) {
      this.stats.good(p.plan, msg);
      this.finish(client, p);
    } else this.settle(client, p, problem);
  }

  /** A try that went wrong: retry once, then count the failure. */
  private settle(client: Client, p: Pending, problem: { reason: string; detail: string }): void {
    if (p.done) return;
    this.finish(client, p);
    if (p.tries < 2) {
      this.stats.retried++;
      this.send(client, p.plan, p.tries + 1, problem);
    } else this.stats.fail('udp', problem.reason, problem.detail);
  }

  private finish(client: Client, p: Pending): void {
    p.done = true;
    client.pending.delete(p.id);
  }

  private expire(now: number): void {
    for (const c of this.clients) {
      while (c.head < c.queue.length && c.queue[c.head]!.deadline <= now) {
        const p = c.queue[c.head++]!;
        if (p.done) continue;
        const timeout = { reason: 'timeout', detail: `${p.plan.qname} ${p.plan.qtype}: no answer within ${this.o.timeoutMs} ms` };
        // A timed-out retry after a wrong first answer is reported as the wrong answer: that is the finding.
        this.settle(c, p, p.tries >= 2 && p.lastProblem !== undefined && p.lastProblem.reason !== 'timeout' ? p.lastProblem : timeout);
      }
      if (c.head > 4096) {
        c.queue.splice(0, c.head);
        c.head = 0;
      }
    }
  }
}

export interface TcpLoadOptions {
  readonly host: string;
  readonly port: number;
  /** TCP queries per second, sent as pipelined batches on fresh connections. */
  readonly rate: number;
  readonly batch: number;
  readonly timeoutMs: number;
  readonly window: () => GenerationWindow;
}

/** Batches of pipelined queries on fresh TCP connections; a failed batch is retried once on a new connection. */
export class TcpLoad {
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private index = 7; // out of step with the UDP mix

  constructor(
    private readonly o: TcpLoadOptions,
    private readonly stats: LoadStats,
  ) {}

  start(): void {
    if (this.o.rate <= 0) return;
    const every = Math.max(10, Math.round((1000 * this.o.batch) / this.o.rate));
    this.timer = setInterval(() => {
      // Bounded: a stalled server must not pile up connections on our side.
      if (this.inFlight.size >= 8) {
        this.stats.skipped += this.o.batch;
        return;
      }
      const run = this.batch().finally(() => this.inFlight.delete(run));
      this.inFlight.add(run);
    }, every);
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await Promise.all(this.inFlight);
  }

  private async batch(): Promise<void> {
    let plans: Plan[] = [];
    for (let i = 0; i < this.o.batch; i++) {
      const plan = planFor(this.index++);
      plans.push(plan);
      this.stats.started(plan.kind);
      this.stats.tcpQueries++;
    }
    // The queries without a good answer go again, once, on a new connection.
    for (let attempt = 1; attempt <= 2 && plans.length > 0; attempt++) {
      if (attempt === 2) this.stats.retried += plans.length;
      const problems = await this.exchange(plans);
      const again: Plan[] = [];
      plans.forEach((plan, i) => {
        const problem = problems[i];
        if (problem === undefined) return;
        if (attempt === 2) this.stats.fail('tcp', problem.reason, problem.detail);
        else again.push(plan);
      });
      plans = again;
    }
  }

  /** One connection, `plans` pipelined on it: per plan, undefined (a good answer, counted) or what went wrong. */
  private async exchange(plans: readonly Plan[]): Promise<({ reason: string; detail: string } | undefined)[]> {
    const confirmed = this.o.window().confirmed;
    let responses: Buffer[];
    try {
      ({ responses } = await queryPipelined(
        this.o.port,
        plans.map((p, i) => ({ qname: p.qname, qtype: p.qtype, id: i + 1, edns: { udpPayload: 1232 } })),
        { host: this.o.host, timeoutMs: this.o.timeoutMs },
      ));
    } catch (err) {
      const problem = { reason: 'connection', detail: (err as Error).message };
      return plans.map(() => problem);
    }
    const byId = new Map(responses.map((r) => [r.length >= 2 ? r.readUInt16BE(0) : -1, r]));
    return plans.map((plan, i) => {
      const raw = byId.get(i + 1);
      if (raw === undefined) return { reason: 'malformed', detail: `no response with id ${i + 1}` };
      const problem = judge(raw, plan, { written: this.o.window().written, confirmed });
      if (problem === undefined) this.stats.good(plan, raw);
      return problem;
    });
  }
}
