// TCP connect checks, optionally with a send/expect exchange for line
// protocols (SMTP "220", Redis "+PONG", ...). A bare connect only proves the
// kernel accepted; the banner proves the daemon behind it is answering.

import { connect, isIP, type Socket } from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { CheckerSpecError, classifyError, matches, runCheck, validatePort, validateTimeout, type Checker, type Matcher } from './types.js';

export interface TcpCheckSpec {
  /** IP address of the member to probe. */
  readonly address: string;
  readonly port: number;
  /** Written right after connect (e.g. "PING\r\n"). */
  readonly send?: string;
  /** Substring or regex expected in the first bytes received (decoded as UTF-8). */
  readonly expect?: Matcher;
  /** Covers connect and, with `expect`, waiting for the banner. */
  readonly timeout_ms: number;
}

/** How much of the peer's first output is examined; a banner is one short line. */
export const MAX_BANNER_BYTES = 4096;

/** Builds a TCP checker; throws CheckerSpecError on an invalid spec. */
export function tcpChecker(spec: TcpCheckSpec): Checker {
  const what = `tcp check ${spec.address}`;
  if (isIP(spec.address) === 0) throw new CheckerSpecError(`${what}: address must be an IP address`);
  const port = validatePort(spec.port, what);
  const timeoutMs = validateTimeout(spec.timeout_ms, what);
  const { send, expect } = spec;

  return (signal) =>
    runCheck(signal, timeoutMs, (finish, onCleanup) => {
      const socket: Socket = connect({ host: spec.address, port });
      onCleanup(() => socket.destroy());
      socket.on('error', (err) => finish(false, classifyError(err)));
      socket.once('connect', () => {
        if (expect === undefined) {
          // Wait for the write to reach the kernel: destroying the socket
          // first would drop it, and the peer may count on seeing it (e.g. a
          // QUIT that keeps its logs free of aborted sessions).
          if (send !== undefined) socket.write(send, () => finish(true, 'connected'));
          else finish(true, 'connected');
          return;
        }
        if (send !== undefined) socket.write(send);
        const decoder = new StringDecoder('utf8');
        let text = '';
        let seen = 0;
        socket.on('data', (chunk: Buffer) => {
          const room = MAX_BANNER_BYTES - seen;
          const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
          seen += part.length;
          text += decoder.write(part);
          if (matches(text, expect)) finish(true, 'banner ok');
          else if (seen >= MAX_BANNER_BYTES) finish(false, 'banner mismatch');
        });
        socket.once('end', () => {
          text += decoder.end();
          if (matches(text, expect)) finish(true, 'banner ok');
          else finish(false, seen === 0 ? 'closed' : 'banner mismatch');
        });
      });
    });
}
