// Drill clients: each one, in a loop, resolves the service name through its
// own resolver and sends an HTTP GET to the first address it got, as a
// browser or an API client would. Every attempt is recorded, including those
// refused by a dead backend, which that backend cannot log itself.
//
// A fresh c-ares channel per lookup: c-ares keeps a query cache per channel,
// and the drill must see exactly what the resolver's cache holds, with no
// client-side cache in between.

import http from 'node:http';
import { Resolver } from 'node:dns/promises';
import { sleep } from './net.js';

export type Outcome = 'ok' | 'http-error' | 'dns-error';

export interface Attempt {
  /** ms epoch when the HTTP request was sent (or the lookup started, for a DNS error). */
  readonly at: number;
  readonly client: number;
  readonly resolver: number;
  /** The address the resolver answered (first record); undefined for a DNS error. */
  readonly address: string | undefined;
  readonly outcome: Outcome;
  readonly error: string | undefined;
}

export interface ClientSpec {
  readonly id: number;
  /** 1-based index of its resolver. */
  readonly resolver: number;
  /** "address:port" of its resolver. */
  readonly server: string;
}

function get(address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: address, port, path: '/', agent: false, timeout: 2000, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode ?? '?'}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

const errorCode = (err: unknown): string => {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.message : String(err);
};

export class ClientFleet {
  readonly attempts: Attempt[] = [];
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  /** Clients that have had a successful request to each address. */
  private readonly reached = new Map<string, Set<number>>();

  constructor(
    readonly name: string,
    readonly port: number,
  ) {}

  /** Starts one client's loop after `delayMs`; it runs until stop(). */
  start(spec: ClientSpec, delayMs: number): void {
    this.loops.push(this.loop(spec, delayMs));
  }

  get clients(): number {
    return this.loops.length;
  }

  /** How many distinct clients have had a successful request to `address`. */
  reachedCount(address: string): number {
    return this.reached.get(address)?.size ?? 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  private async loop(spec: ClientSpec, delayMs: number): Promise<void> {
    await sleep(delayMs);
    while (!this.stopped) {
      const started = Date.now();
      const r = new Resolver({ timeout: 2000, tries: 1 });
      r.setServers([spec.server]);
      let address: string | undefined;
      try {
        address = (await r.resolve4(this.name))[0];
      } catch (err) {
        this.attempts.push({ at: started, client: spec.id, resolver: spec.resolver, address: undefined, outcome: 'dns-error', error: errorCode(err) });
      }
      if (address !== undefined) {
        const sent = Date.now();
        try {
          await get(address, this.port);
          this.attempts.push({ at: sent, client: spec.id, resolver: spec.resolver, address, outcome: 'ok', error: undefined });
          let set = this.reached.get(address);
          if (set === undefined) this.reached.set(address, (set = new Set()));
          set.add(spec.id);
        } catch (err) {
          this.attempts.push({ at: sent, client: spec.id, resolver: spec.resolver, address, outcome: 'http-error', error: errorCode(err) });
        }
      }
      // 100-200 ms apart, jittered so clients of one resolver do not march in step.
      if (!this.stopped) await sleep(100 + Math.random() * 100);
    }
  }
}
