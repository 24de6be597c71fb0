// UDP transport: one socket per listen address; each datagram is answered
// synchronously from the current snapshot. Nothing here knows DNS beyond
// "bytes in, bytes (or nothing) out", except Response Rate Limiting, which
// belongs here because only UDP sources can be forged (server/limits/README.md).

import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { newQueryInfo, respond } from '../answer/respond.js';
import type { Snapshot } from '../answer/snapshot.js';
import type { QueryObserver } from '../metrics/query-stats.js';
import { slipResponse, type ResponseRateLimiter } from '../limits/rrl.js';

export interface UdpListener {
  readonly socket: dgram.Socket;
  readonly address: { address: string; port: number };
  close(): Promise<void>;
}

export function listenUdp(
  host: string,
  port: number,
  current: () => Snapshot,
  log: Logger,
  observer?: QueryObserver,
  /** The rate limiter in force, read per datagram (a reload may turn it on, off or replace it); absent or undefined = no limit. */
  limiter?: () => ResponseRateLimiter | undefined,
  /**
   * Share the socket with the other processes of a node:cluster (the primary
   * binds it once and every worker reads from it; the kernel hands each
   * datagram to one of them). Otherwise the bind is exclusive to this process.
   */
  shared = false,
): Promise<UdpListener> {
  const socket = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', ipv6Only: isIPv6(host) });
  let lastErrorLog = 0;
  // A bug, not bad input: respond() turns all bad input into FORMERR or a drop.
  // Log at most once a second so a packet that triggers it cannot flood the log.
  const failed = (err: unknown, client: string, what: string): void => {
    const now = Date.now();
    if (now - lastErrorLog > 1000) {
      lastErrorLog = now;
      log.error({ err, client }, what);
    }
  };
  const info = newQueryInfo();
  socket.on('message', (msg, rinfo) => {
    const rrl = limiter?.();
    if (observer === undefined && rrl === undefined) {
      // With neither an observer nor a limiter nothing reads the clock or fills `info`.
      let out: Buffer | undefined;
      try {
        out = respond(msg, msg.length, current(), 'udp', rinfo.address);
      } catch (err) {
        failed(err, rinfo.address, 'answering failed; query dropped');
        return;
      }
      if (out !== undefined) socket.send(out, rinfo.port, rinfo.address);
      return;
    }
    const startedAt = performance.now();
    let out: Buffer | undefined;
    try {
      out = respond(msg, msg.length, current(), 'udp', rinfo.address, info);
    } catch (err) {
      failed(err, rinfo.address, 'answering failed; query dropped');
      info.outcome = 'drop';
      info.rcode = 0;
      info.truncated = false;
      info.rrlAction = 'send';
    }
    // A valid server cookie proves the source address, which is all RRL guards against.
    if (out !== undefined && rrl !== undefined && !info.cookieValid) {
      const action = rrl.check(rinfo.address, info.rrl.kind, info.rrl.key, startedAt);
      info.rrlAction = action;
      if (action === 'drop') {
        out = undefined;
        info.outcome = 'drop';
        info.rcode = 0;
        info.truncated = false;
      } else if (action === 'slip') {
        out = slipResponse(out);
        info.truncated = true;
      }
    }
    if (out !== undefined) socket.send(out, rinfo.port, rinfo.address);
    if (observer === undefined) return;
    try {
      observer.query(info, 'udp', rinfo.address, startedAt);
    } catch (err) {
      // Counting must never cost an answer or the process.
      failed(err, rinfo.address, 'query observer failed');
    }
  });
  socket.on('error', (err) => log.error({ err, host, port }, 'udp socket error'));
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: host, port, exclusive: !shared }, () => {
      socket.off('error', reject);
      // A deep receive queue absorbs bursts while the event loop is busy; the kernel caps it at rmem_max.
      try {
        socket.setRecvBufferSize(4 * 1024 * 1024);
      } catch {
        /* capped by the kernel; the default still works */
      }
      const a = socket.address();
      resolve({
        socket,
        address: { address: a.address, port: a.port },
        close: () => new Promise<void>((r) => socket.close(() => r())),
      });
    });
  });
}
