// The admin API: JSON in and out, what the `vigil` CLI subcommands talk to.
//   GET    /state                     node, replication, services, members (with every node's vote), answers, epochs
//   GET    /drain[?service=NAME]      the drain tracker: how far each answer change has reached resolvers
//   GET    /audit[?count=N]           newest audit entries (overrides, consensus changes)
//   POST   /overrides                 {member, action: drain|force_up|force_down, reason, by?, for?}
//   DELETE /overrides/<member>[?by=&reason=]
//   POST   /reload                    reload the config file (the same as SIGHUP)
//   POST   /failback/<service>        approve the held failback of a `failback: manual` service
// With a token configured every request needs `Authorization: Bearer <token>`;
// off loopback the config refuses to start without one.

import http from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import { Ajv } from 'ajv';
import type { Logger } from 'pino';
import type { ListenAddress } from '../../zones/zone.js';
import type { Override, OverrideAction } from '../../probes/replication/types.js';
import { parseDuration } from '../../zones/compile.js';

export interface OverrideBody {
  readonly member: string;
  readonly action: OverrideAction;
  readonly reason: string;
  readonly by: string;
  readonly forMs?: number;
}

export interface AdminHandlers {
  state(): unknown;
  drain(service: string | undefined): unknown;
  audit(count: number): Promise<unknown>;
  /** Rejects with an error whose name is "UnknownMember" for a member no service has. */
  setOverride(body: OverrideBody): Promise<Override>;
  clearOverride(member: string, by: string, reason: string): Promise<boolean>;
  reload(): Promise<{ ok: boolean; errors?: string }>;
  approveFailback(name: string): boolean;
}

export interface AdminSettings {
  readonly listen: ListenAddress;
  /** Required off loopback (the config loader enforces it). */
  readonly token?: string;
}

export interface AdminServer {
  readonly address: { address: string; port: number };
  close(): Promise<void>;
}

export class AdminConfigError extends Error {
  override name = 'AdminConfigError';
}

const MAX_BODY = 64 * 1024;

export const OVERRIDE_BODY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['member', 'action', 'reason'],
  properties: {
    member: { type: 'string', minLength: 1, maxLength: 512 },
    action: { enum: ['drain', 'force_up', 'force_down'] },
    reason: { type: 'string', minLength: 1, maxLength: 500 },
    by: { type: 'string', minLength: 1, maxLength: 100 },
    for: { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$' },
  },
} as const;

const validateOverride = new Ajv({ allErrors: true }).compile<{ member: string; action: OverrideAction; reason: string; by?: string; for?: string }>(OVERRIDE_BODY_SCHEMA);

function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.');
}

class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

// Hashing first makes the comparison length-independent as well as constant-time.
function sameToken(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, `body larger than ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new HttpError(400, `body is not JSON: ${(e as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

async function route(req: http.IncomingMessage, url: URL, h: AdminHandlers, log: Logger): Promise<[number, unknown]> {
  const method = req.method ?? 'GET';
  const path = url.pathname;
  const who = `api@${req.socket.remoteAddress ?? '?'}`;
  if (method === 'GET' && path === '/state') return [200, h.state()];
  if (method === 'GET' && path === '/drain') return [200, h.drain(url.searchParams.get('service') ?? undefined)];
  if (method === 'GET' && path === '/audit') {
    const count = Number(url.searchParams.get('count') ?? '50');
    if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new HttpError(400, 'count must be an integer from 1 to 10000');
    return [200, { entries: await h.audit(count) }];
  }
  if (method === 'POST' && path === '/overrides') {
    const body = await readBody(req);
    if (!validateOverride(body)) {
      const detail = (validateOverride.errors ?? []).map((e) => `${e.instancePath || 'body'} ${e.message ?? ''}${e.params && 'allowedValues' in e.params ? ` (${(e.params['allowedValues'] as string[]).join(', ')})` : ''}${e.params && 'additionalProperty' in e.params ? ` "${String(e.params['additionalProperty'])}"` : ''}`);
      throw new HttpError(400, detail.join('; '));
    }
    const forMs = body.for !== undefined ? parseDuration(body.for) : undefined;
    try {
      const override = await h.setOverride({ member: body.member, action: body.action, reason: body.reason, by: body.by ?? who, ...(forMs !== undefined ? { forMs } : {}) });
      return [200, { ok: true, override }];
    } catch (err) {
      if ((err as Error).name === 'UnknownMember') throw new HttpError(404, (err as Error).message);
      throw err;
    }
  }
  const ov = /^\/overrides\/(.+)$/.exec(path);
  if (method === 'DELETE' && ov !== null) {
    const member = decodeURIComponent(ov[1]!);
    const ok = await h.clearOverride(member, url.searchParams.get('by') ?? who, url.searchParams.get('reason') ?? 'cleared through the admin API');
    return ok ? [200, { ok: true }] : [404, { ok: false, error: `no override for ${member}` }];
  }
  if (method === 'POST' && path === '/reload') {
    req.resume();
    const r = await h.reload();
    return [r.ok ? 200 : 422, r];
  }
  const fb = /^\/failback\/(.+)$/.exec(path);
  if (method === 'POST' && fb !== null) {
    req.resume();
    const name = decodeURIComponent(fb[1]!);
    const ok = h.approveFailback(name);
    log.info({ service: name, ok, by: who }, 'failback approved by operator');
    return ok ? [200, { ok: true }] : [404, { ok: false, error: `no service named ${name}` }];
  }
  req.resume();
  throw new HttpError(404, `no route ${method} ${path}`);
}

export function startAdmin(settings: AdminSettings, handlers: AdminHandlers, log: Logger): Promise<AdminServer> {
  const { listen, token } = settings;
  if (!isLoopback(listen.host) && token === undefined) {
    return Promise.reject(new AdminConfigError(`admin.listen ${listen.host}: off loopback the admin API needs a token (admin.token_file or $VIGIL_ADMIN_TOKEN)`));
  }
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (token !== undefined) {
      const auth = req.headers.authorization ?? '';
      const m = /^Bearer (.+)$/.exec(auth);
      if (m === null || !sameToken(m[1]!, token)) {
        req.resume();
        res.setHeader('www-authenticate', 'Bearer');
        return send(res, 401, { ok: false, error: 'missing or wrong bearer token' });
      }
    }
    route(req, url, handlers, log).then(
      ([status, body]) => send(res, status, body),
      (err: unknown) => {
        if (err instanceof HttpError) return send(res, err.status, { ok: false, error: err.message });
        log.error({ err, path: url.pathname }, 'admin request failed');
        send(res, 500, { ok: false, error: String(err) });
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listen.host, port: listen.port }, () => {
      server.off('error', reject);
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
