// The operations listener: what a scraper and an orchestrator ask.
//   GET /metrics   Prometheus text exposition
//   GET /healthz   200 while the process can answer HTTP at all (liveness)
//   GET /readyz    200 once zones are loaded and probes run, else 503 with the reasons (readiness)
// Nothing here changes state and nothing is secret, so it binds wherever the
// config says, unauthenticated; the admin API is the one that needs a token.

import http from 'node:http';
import type { Logger } from 'pino';
import type { VigilMetrics } from '../metrics/registry.js';

export type Readiness = boolean | { readonly ready: boolean; readonly reasons: readonly string[] };

export interface OpsDeps {
  readonly metrics: VigilMetrics;
  readonly ready: () => Readiness;
}

export interface OpsServer {
  readonly address: { address: string; port: number };
  close(): Promise<void>;
}

export class OpsListenError extends Error {
  override name = 'OpsListenError';
  constructor(
    readonly host: string,
    readonly port: number,
    cause: unknown,
  ) {
    super(`metrics listener on ${host}:${port}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

const ROUTES = new Set(['/metrics', '/healthz', '/readyz']);

function text(res: http.ServerResponse, status: number, body: string, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export function startOps(listen: { host: string; port: number }, deps: OpsDeps, log: Logger): Promise<OpsServer> {
  const server = http.createServer((req, res) => {
    // No route reads a body; drain it so keep-alive clients are not stuck.
    req.resume();
    const path = new URL(req.url ?? '/', 'http://ops').pathname;
    if (!ROUTES.has(path)) return text(res, 404, `no route ${path}\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 405, `${req.method ?? ''} not allowed; use GET\n`, { allow: 'GET, HEAD' });
    if (path === '/healthz') return text(res, 200, 'ok\n');
    if (path === '/readyz') {
      let r: Readiness;
      try {
        r = deps.ready();
      } catch (err) {
        log.error({ err }, 'readiness check failed');
        return text(res, 503, `not ready: readiness check failed: ${String(err)}\n`);
      }
      const ready = typeof r === 'boolean' ? r : r.ready;
      const reasons = typeof r === 'boolean' ? [] : r.reasons;
      return ready ? text(res, 200, 'ready\n') : text(res, 503, `not ready\n${reasons.map((x) => `${x}\n`).join('')}`);
    }
    deps.metrics.render().then(
      (body) => text(res, 200, body, { 'content-type': deps.metrics.contentType }),
      (err: unknown) => {
        log.error({ err }, 'rendering metrics failed');
        text(res, 500, 'rendering metrics failed\n');
      },
    );
  });
  // Scrapers keep connections open; do not let an idle one hold close() up, nor a slow one hold a socket forever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.on('clientError', (_err, socket) => socket.destroy());

  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new OpsListenError(listen.host, listen.port, err)));
    server.listen({ host: listen.host, port: listen.port }, () => {
      server.removeAllListeners('error');
      server.on('error', (err) => log.error({ err }, 'metrics listener error'));
      const a = server.address() as { address: string; port: number };
      resolve({
        address: { address: a.address, port: a.port },
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      });
    });
  });
}
