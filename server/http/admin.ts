// The admin API, kept deliberately small until the operations issue grows it:
//   GET  /state              services, members, health and current answers (JSON)
//   POST /reload             reload the config file (the same as SIGHUP)
//   POST /failback/<name>    approve the held failback of a `failback: manual` service
// Bound to loopback only: there is no authentication yet.

import http from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { ListenAddress } from '../../zones/zone.js';

export interface AdminHandlers {
  state(): unknown;
  reload(): Promise<{ ok: boolean; errors?: string }>;
  approveFailback(name: string): boolean;
}

export interface AdminServer {
  readonly address: { address: string; port: number };
  close(): Promise<void>;
}

export class AdminConfigError extends Error {
  override name = 'AdminConfigError';
}

function isLoopback(host: string): boolean {
  return host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function startAdmin(listen: ListenAddress, handlers: AdminHandlers, log: Logger): Promise<AdminServer> {
  if (!isLoopback(listen.host)) {
    return Promise.reject(new AdminConfigError(`admin.listen ${listen.host}: the admin API has no authentication yet and binds to loopback only`));
  }
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    // The body is never read; drain it so keep-alive clients are not stuck.
    req.resume();
    if (req.method === 'GET' && url.pathname === '/state') return send(res, 200, { services: handlers.state() });
    if (req.method === 'POST' && url.pathname === '/reload') {
      handlers.reload().then(
        (r) => send(res, r.ok ? 200 : 422, r),
        (err: unknown) => send(res, 500, { ok: false, errors: String(err) }),
      );
      return;
    }
    const fb = /^\/failback\/(.+)$/.exec(url.pathname);
    if (req.method === 'POST' && fb !== null) {
      const name = decodeURIComponent(fb[1]!);
      const ok = handlers.approveFailback(name);
      log.info({ service: name, ok }, 'failback approved by operator');
      return send(res, ok ? 200 : 404, ok ? { ok: true } : { ok: false, error: `no service named ${name}` });
    }
    send(res, 404, { ok: false, error: `no route ${req.method ?? ''} ${url.pathname}` });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listen.host, port: listen.port }, () => {
      server.off('error', reject);
      const a = server.address() as { address: string; port: number };
      resolve({
        address: { address: a.address, port: a.port },
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}
