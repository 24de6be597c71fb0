// The contract every checker fulfils, plus the small pieces all of them share:
// how a network error becomes a short reason, and how "expect" patterns match.
// Reasons are short, stable strings because they end up as metric labels and in
// the admin API; the vocabulary is listed in probes/README.md.

/** Outcome of one check. A checker never rejects: every failure is a result. */
export interface CheckResult {
  readonly ok: boolean;
  /** e.g. "http 200", "http 503", "timeout", "refused", "reset", "tls: <code>", "banner mismatch". */
  readonly reason: string;
  /** Wall time from starting the check to deciding it, in milliseconds. */
  readonly latencyMs: number;
}

/**
 * One ready-to-run check, built once from a typed spec and run many times.
 * The signal lets the scheduler cancel a check (shutdown, reconfig); the
 * checker's own timeout comes from its spec.
 */
export type Checker = (signal: AbortSignal) => Promise<CheckResult>;

/** A substring, or a regular expression tested against the decoded text. */
export type Matcher = string | RegExp;

/** Thrown when a checker is built from an invalid spec; never thrown by a running check. */
export class CheckerSpecError extends Error {
  override name = 'CheckerSpecError';
}

/** Reason given when the caller's signal aborts a check. */
export const ABORTED = 'aborted';
export const TIMEOUT = 'timeout';

// Codes OpenSSL reports for certificate verification failures. Node surfaces
// them verbatim as err.code, without an ERR_ prefix, so they need a list.
const CERT_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'OUT_OF_MEM',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
]);

function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Turns a socket/TLS/HTTP error into a reason. `duringTls` is true when the
 * error happened after TCP connect but before the TLS handshake finished:
 * OpenSSL alerts arrive with many different codes (EPROTO, ERR_SSL_*), and
 * the phase is the reliable signal that the handshake is what broke.
 */
export function classifyError(err: unknown, duringTls = false): string {
  const code = errorCode(err);
  switch (code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'ETIMEDOUT':
      return TIMEOUT;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'ENETDOWN':
      return 'unreachable';
    case 'EADDRNOTAVAIL':
      return 'no route';
  }
  if (code !== undefined) {
    if (CERT_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || duringTls) {
      return `tls: ${code}`;
    }
    // llhttp parse errors: the peer is not speaking HTTP/1.x.
    if (code.startsWith('HPE_')) return `protocol: ${code}`;
    return `error: ${code}`;
  }
  return duringTls ? `tls: ${errorMessage(err)}` : `error: ${errorMessage(err)}`;
}

/**
 * Tests a matcher against text. A global or sticky regex keeps state in
 * lastIndex between calls, which would make the same check pass and fail
 * alternately; it is reset first.
 */
export function matches(text: string, matcher: Matcher): boolean {
  if (typeof matcher === 'string') return text.includes(matcher);
  matcher.lastIndex = 0;
  return matcher.test(text);
}

export function validateTimeout(timeoutMs: unknown, what: string): number {
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new CheckerSpecError(`${what}: timeout_ms must be a positive number`);
  }
  return timeoutMs;
}

export function validatePort(port: unknown, what: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CheckerSpecError(`${what}: port must be an integer in 1..65535`);
  }
  return port;
}

/**
 * Shared lifecycle of one check: a single settle point, a timeout, the
 * caller's abort signal, and a cleanup hook that must release the socket.
 * Every checker funnels through this so that no path can resolve twice or
 * leave a timer or socket behind.
 */
export function runCheck(
  signal: AbortSignal,
  timeoutMs: number,
  body: (finish: (ok: boolean, reason: string) => void, onCleanup: (fn: () => void) => void) => void,
): Promise<CheckResult> {
  const started = performance.now();
  return new Promise<CheckResult>((resolve) => {
    let done = false;
    const cleanups: Array<() => void> = [];
    const finish = (ok: boolean, reason: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      // Cleanup runs after `done` is set so errors raised by destroying the
      // socket land in handlers that are already no-ops.
      for (const fn of cleanups) {
        try {
          fn();
        } catch {
          // A failing cleanup must not turn into an unhandled rejection.
        }
      }
      resolve({ ok, reason, latencyMs: performance.now() - started });
    };
    const onAbort = (): void => finish(false, ABORTED);
    const timer = setTimeout(() => finish(false, TIMEOUT), timeoutMs);
    if (signal.aborted) {
      finish(false, ABORTED);
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      body(finish, (fn) => {
        if (done) fn();
        else cleanups.push(fn);
      });
    } catch (err) {
      finish(false, classifyError(err));
    }
  });
}
