// HTTP and HTTPS checks with node:http / node:https only.
// The address is always an IP (the member), while Host and SNI carry the
// service name: a probe must hit one specific backend, not whatever the name
// resolves to, and it must not depend on the DNS it is feeding.

import { request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest, type RequestOptions as HttpsRequestOptions } from 'node:https';
import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import {
  CheckerSpecError,
  classifyError,
  matches,
  runCheck,
  validatePort,
  validateTimeout,
  type Checker,
  type Matcher,
} from './types.js';

/** A single status code, or an inclusive [low, high] range. */
export type StatusSpec = number | readonly [number, number];

export interface HttpCheckSpec {
  readonly scheme: 'http' | 'https';
  /** IP address of the member to probe. */
  readonly address: string;
  /** Default 80 for http, 443 for https. */
  readonly port?: number;
  /** Default GET. */
  readonly method?: string;
  /** Default "/". */
  readonly path?: string;
  /** Host header, sent verbatim (include ":port" yourself if the backend needs it). Default: address[:port]. */
  readonly host?: string;
  /** TLS SNI and the name the certificate must match. Default: `host` without port, unless that is an IP. */
  readonly servername?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Statuses that count as healthy. Default [[200, 399]]: redirects are not followed, a 3xx is a live backend. */
  readonly expect_status?: readonly StatusSpec[];
  /** Substring or regex that must occur in the first 64 KiB of the body (decoded as UTF-8). */
  readonly expect_body?: Matcher;
  /** Default true. false accepts any certificate (self-signed backends). */
  readonly tls_verify?: boolean;
  /** Extra trust anchors (PEM) for private CAs, used instead of the system store. */
  readonly ca?: string | Buffer;
  /** Covers connect, TLS handshake, response headers and body read. */
  readonly timeout_ms: number;
}

/** Cap on body bytes read for expect_body: enough for a health page, bounded memory per probe. */
export const MAX_BODY_BYTES = 64 * 1024;

const DEFAULT_STATUS: readonly StatusSpec[] = [[200, 399]];
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function statusOk(status: number, allowed: readonly StatusSpec[]): boolean {
  for (const s of allowed) {
    if (typeof s === 'number' ? status === s : status >= s[0] && status <= s[1]) return true;
  }
  return false;
}

function validateStatus(list: readonly StatusSpec[]): void {
  if (list.length === 0) throw new CheckerSpecError('http check: expect_status must not be empty');
  for (const s of list) {
    const [lo, hi] = typeof s === 'number' ? [s, s] : s;
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 100 || hi > 599 || lo > hi) {
      throw new CheckerSpecError(`http check: bad expect_status entry ${JSON.stringify(s)}`);
    }
  }
}

function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end > 0 ? host.slice(1, end) : host;
  }
  const colon = host.indexOf(':');
  // More than one colon and no brackets: a bare IPv6 literal, not host:port.
  return colon >= 0 && host.indexOf(':', colon + 1) < 0 ? host.slice(0, colon) : host;
}

/** Builds an HTTP(S) checker; throws CheckerSpecError on an invalid spec. */
export function httpChecker(spec: HttpCheckSpec): Checker {
  const what = `http check ${spec.address}`;
  if (spec.scheme !== 'http' && spec.scheme !== 'https') throw new CheckerSpecError(`${what}: scheme must be http or https`);
  if (isIP(spec.address) === 0) throw new CheckerSpecError(`${what}: address must be an IP address`);
  const https = spec.scheme === 'https';
  const port = validatePort(spec.port ?? (https ? 443 : 80), what);
  const timeoutMs = validateTimeout(spec.timeout_ms, what);
  const method = (spec.method ?? 'GET').toUpperCase();
  if (!TOKEN.test(method)) throw new CheckerSpecError(`${what}: bad method ${JSON.stringify(spec.method)}`);
  const path = spec.path ?? '/';
  if (!path.startsWith('/') || /[\s\x00-\x1f\x7f]/.test(path)) throw new CheckerSpecError(`${what}: path must start with / and contain no whitespace`);
  const allowed = spec.expect_status ?? DEFAULT_STATUS;
  validateStatus(allowed);
  const expectBody = spec.expect_body;
  if (expectBody !== undefined && method === 'HEAD') throw new CheckerSpecError(`${what}: expect_body needs a method that returns a body, not HEAD`);

  const headers: OutgoingHttpHeaders = { 'user-agent': 'vigil-probe', accept: '*/*' };
  for (const [k, v] of Object.entries(spec.headers ?? {})) {
    if (!TOKEN.test(k) || /[\r\n]/.test(v)) throw new CheckerSpecError(`${what}: bad header ${JSON.stringify(k)}`);
    headers[k.toLowerCase()] = v;
  }
  if (spec.host !== undefined) headers.host = spec.host;

  let servername: string | undefined = spec.servername;
  if (servername === undefined && spec.host !== undefined) {
    const h = stripPort(spec.host);
    // RFC 6066 forbids IP literals in SNI, and Node warns when given one.
    if (isIP(h) === 0) servername = h;
  }
  if (servername !== undefined && isIP(servername) !== 0) throw new CheckerSpecError(`${what}: servername must be a DNS name`);

  const options: HttpsRequestOptions = {
    host: spec.address,
    port,
    method,
    path,
    headers,
    // A fresh connection per check: a pooled socket would hide connect
    // failures and could outlive the probe.
    agent: false,
  };
  if (https) {
    options.rejectUnauthorized = spec.tls_verify ?? true;
    if (servername !== undefined) options.servername = servername;
    if (spec.ca !== undefined) options.ca = spec.ca;
  }
  const send = https ? httpsRequest : httpRequest;

  return (signal) =>
    runCheck(signal, timeoutMs, (finish, onCleanup) => {
      let tlsPhase = false;
      let res: IncomingMessage | undefined;
      const req: ClientRequest = send(options);
      onCleanup(() => {
        res?.destroy();
        req.destroy();
      });
      req.on('socket', (socket: Socket) => {
        if (!https) return;
        socket.once('connect', () => {
          tlsPhase = true;
        });
        socket.once('secureConnect', () => {
          tlsPhase = false;
        });
      });
      req.on('error', (err) => finish(false, classifyError(err, tlsPhase)));
      req.on('response', (response) => {
        res = response;
        const status = response.statusCode ?? 0;
        response.on('error', (err) => finish(false, classifyError(err)));
        if (!statusOk(status, allowed)) return finish(false, `http ${status}`);
        if (expectBody === undefined) return finish(true, `http ${status}`);
        const decoder = new StringDecoder('utf8');
        let text = '';
        let seen = 0;
        const conclude = (): void => {
          text += decoder.end();
          if (matches(text, expectBody)) finish(true, `http ${status}`);
          else finish(false, 'body mismatch');
        };
        response.on('data', (chunk: Buffer) => {
          const room = MAX_BODY_BYTES - seen;
          const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
          seen += part.length;
          text += decoder.write(part);
          if (matches(text, expectBody)) finish(true, `http ${status}`);
          else if (seen >= MAX_BODY_BYTES) conclude();
        });
        response.on('end', conclude);
      });
      req.end();
    });
}
