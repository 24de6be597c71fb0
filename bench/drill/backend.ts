// An HTTP backend that keeps its own request log. The drill reads where
// traffic went from these logs, not from what the clients believe they did.
// Vigil's health probes ask PROBE_PATH; they are counted apart so they never
// pass for user traffic.

import http from 'node:http';
import type { Socket } from 'node:net';

export const PROBE_PATH = '/health';

export class LoggingBackend {
  /** Arrival times (ms epoch) of client requests, in order. */
  readonly log: number[] = [];
  probes = 0;
  private server: http.Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(
    readonly name: string,
    readonly host: string,
    public port = 0,
  ) {}

  get running(): boolean {
    return this.server !== undefined;
  }

  async start(): Promise<void> {
    const server = http.createServer((req, res) => {
      if (req.url === PROBE_PATH) this.probes++;
      else this.log.push(Date.now());
      res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
      res.end(`${this.name}\n`);
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.host, port: this.port, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /**
   * Kills the backend as a crash would: the listening socket closes at once
   * (new connections are refused) and open connections are destroyed.
   * Resolves when the server has fully closed.
   */
  async kill(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s === undefined) return;
    const closed = new Promise<void>((r) => s.close(() => r()));
    for (const sock of this.sockets) sock.destroy();
    s.closeAllConnections();
    await closed;
  }

  /** Client requests logged in [from, to). */
  countBetween(from: number, to: number): number {
    let n = 0;
    for (const t of this.log) if (t >= from && t < to) n++;
    return n;
  }
}
