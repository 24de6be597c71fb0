// TCP transport per RFC 7766: 2-byte length framing across partial reads,
// many queries per connection, pipelined queries answered in order as they
// are read (answering is synchronous, so "as they complete" is "in order"),
// an idle timeout, caps on connections (global and per client address) and on
// the bytes a connection may leave buffered in either direction.

import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { newQueryInfo, respond } from '../answer/respond.js';
import type { Snapshot } from '../answer/snapshot.js';
import type { QueryObserver } from '../metrics/query-stats.js';
import type { TcpSettings } from '../../zones/zone.js';

export interface TcpListener {
  readonly server: net.Server;
  readonly address: { address: string; port: number };
  close(): Promise<void>;
}

export function listenTcp(
  host: string,
  port: number,
  current: () => Snapshot,
  limits: TcpSettings,
  log: Logger,
  observer?: QueryObserver,
): Promise<TcpListener> {
  const perClient = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  // One per listener: answering is synchronous, so no two queries ever hold it at once.
  const info = newQueryInfo();
  let lastObserverErrorLog = 0;
  const observed = (client: string, startedAt: number): void => {
    try {
      observer!.query(info, 'tcp', client, startedAt);
    } catch (err) {
      // Counting must never cost an answer or the process; log at most once a second.
      const now = Date.now();
      if (now - lastObserverErrorLog > 1000) {
        lastObserverErrorLog = now;
        log.error({ err, client }, 'query observer failed');
      }
    }
  };

  const server = net.createServer({ noDelay: true }, (socket) => {
    const client = socket.remoteAddress ?? '?';
    const open = perClient.get(client) ?? 0;
    if (sockets.size >= limits.maxConnections || open >= limits.maxConnectionsPerClient) {
      observer?.tcpRejected?.(sockets.size >= limits.maxConnections ? 'max_connections' : 'max_connections_per_client');
      socket.destroy();
      return;
    }
    perClient.set(client, open + 1);
    sockets.add(socket);
    observer?.tcpOpened?.();
    socket.once('close', () => {
      sockets.delete(socket);
      const n = (perClient.get(client) ?? 1) - 1;
      if (n <= 0) perClient.delete(client);
      else perClient.set(client, n);
      observer?.tcpClosed?.();
    });
    socket.on('error', () => socket.destroy());
    socket.setTimeout(limits.idleTimeoutMs, () => socket.destroy());

    let pending: Buffer | undefined;
    let answered = 0;
    socket.on('data', (chunk: Buffer) => {
      // Pipelined queries in one chunk share its arrival time: waiting behind the others is part of their latency.
      const startedAt = observer !== undefined ? performance.now() : 0;
      let buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        let out: Buffer | undefined;
        try {
          out = respond(msg, msg.length, current(), 'tcp', client, observer !== undefined ? info : undefined);
        } catch (err) {
          log.error({ err, client }, 'answering failed; connection closed');
          socket.destroy();
          if (observer !== undefined) {
            info.outcome = 'drop';
            info.rcode = 0;
            info.truncated = false;
            observed(client, startedAt);
          }
          return;
        }
        if (out !== undefined) {
          const framed = Buffer.allocUnsafe(out.length + 2);
          framed.writeUInt16BE(out.length, 0);
          out.copy(framed, 2);
          socket.write(framed);
        }
        if (observer !== undefined) observed(client, startedAt);
        answered++;
        if (answered >= limits.maxQueriesPerConnection) {
          socket.end();
          return;
        }
        // A client that sends but never reads would make us buffer without bound.
        if (socket.writableLength > limits.maxBufferedBytes) {
          socket.destroy();
          return;
        }
      }
      pending = buf.length > 0 ? buf : undefined;
      if (pending !== undefined && pending.length > limits.maxBufferedBytes) socket.destroy();
    });
  });
  server.on('error', (err) => log.error({ err, host, port }, 'tcp server error'));

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true, ipv6Only: net.isIPv6(host) }, () => {
      server.off('error', reject);
      const a = server.address() as net.AddressInfo;
      resolve({
        server,
        address: { address: a.address, port: a.port },
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}
