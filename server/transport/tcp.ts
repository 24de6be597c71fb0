// TCP transport per RFC 7766: 2-byte length framing across partial reads,
// many queries per connection, pipelined queries answered in order as they
// are read (answering is synchronous, so "as they complete" is "in order"),
// an idle timeout, caps on connections (global and per client address) and on
// the bytes a connection may leave buffered in either direction.
//
// Zone transfers (AXFR/IXFR, server/xfr) are the one exception to "answer and
// move on": a transfer is many messages, written as the socket drains so a
// large zone neither trips the output cap nor sits encoded in memory. While
// one runs, the connection reads nothing more; queries already received wait
// and are answered, in order, when it ends. So one connection runs at most
// one transfer at a time, and a transfer counts as one query.

import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { newQueryInfo, respond, type QueryInfo } from '../answer/respond.js';
import type { Snapshot } from '../answer/snapshot.js';
import type { QueryObserver } from '../metrics/query-stats.js';
import type { TcpSettings } from '../../zones/zone.js';
import { ERROR_CLASS } from '../limits/rrl.js';
import { formatName } from '../wire/name.js';
import { typeName } from '../wire/constants.js';
import { isTransferQuery, planTransfer, type TransferPlan } from '../xfr/request.js';
import { PerClientLogLimit } from '../xfr/log-limit.js';

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

  const refusalLog = new PerClientLogLimit();
  const logPlan = (plan: TransferPlan, client: string): void => {
    const zone = formatName(plan.qname);
    const qtype = typeName(plan.qtype);
    if (plan.outcome === 'current') {
      log.info({ client, zone, qtype, serial: plan.serial }, 'zone transfer: the client is up to date');
    } else if (plan.outcome !== 'transfer' && refusalLog.allow(client, Date.now())) {
      log.warn({ client, zone, qtype, rcode: plan.rcode, reason: plan.reason }, 'zone transfer refused');
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
    /** A full transfer is being written; reading is paused until it ends. */
    let transferring = false;

    /** Sends a full transfer's messages as the socket drains, then goes back to the queries waiting in `pending`. */
    const transfer = (plan: TransferPlan): void => {
      transferring = true;
      socket.pause();
      const began = performance.now();
      const fields = { client, zone: formatName(plan.qname), qtype: typeName(plan.qtype), serial: plan.serial };
      let ended = false;
      /** `failed`: our own error (a record no message holds), logged at error; otherwise `err` is the client going away. */
      const end = (err?: Error | null, failed = false): void => {
        if (ended) return;
        ended = true;
        socket.off('close', onClose);
        socket.off('drain', pump);
        const { records, messages, bytes } = plan.stats;
        const ms = Math.round(performance.now() - began);
        if (err) {
          if (failed) log.error({ ...fields, records, messages, bytes, ms, err }, 'zone transfer failed; connection closed');
          else log.warn({ ...fields, records, messages, bytes, ms, err }, 'zone transfer aborted');
          socket.destroy();
          return;
        }
        log.info({ ...fields, records, messages, bytes, ms }, 'zone transfer sent');
        transferring = false;
        if (answered >= limits.maxQueriesPerConnection) {
          socket.end();
          return;
        }
        socket.resume();
        if (pending !== undefined) serve(observer !== undefined ? performance.now() : 0);
      };
      const onClose = (): void => end(new Error('connection closed before the transfer ended'));
      // One message ahead, so the last one is known and its write callback says when everything is out.
      let next: IteratorResult<Buffer, void>;
      const advance = (): boolean => {
        try {
          next = plan.messages.next();
          return true;
        } catch (err) {
          end(err instanceof Error ? err : new Error(String(err)), true);
          return false;
        }
      };
      const pump = (): void => {
        while (!ended && !next.done) {
          const framed = frame(next.value);
          if (!advance()) return;
          if (next.done) {
            socket.write(framed, (err) => end(err));
            return;
          }
          if (!socket.write(framed)) {
            socket.once('drain', pump);
            return;
          }
        }
      };
      socket.once('close', onClose);
      if (advance()) pump();
    };

    /** Answers every whole query in `pending`, in order, until a full transfer takes over the connection. */
    const serve = (startedAt: number): void => {
      let buf = pending ?? Buffer.alloc(0);
      pending = undefined;
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        if (isTransferQuery(msg, msg.length)) {
          let plan: TransferPlan | undefined;
          try {
            plan = planTransfer(msg, msg.length, current(), client);
          } catch (err) {
            log.error({ err, client }, 'answering a transfer query failed; connection closed');
            socket.destroy();
            return;
          }
          if (plan !== undefined) {
            answered++;
            logPlan(plan, client);
            if (observer !== undefined) {
              noteTransfer(info, plan);
              observed(client, startedAt);
            }
            if (plan.outcome === 'transfer') {
              pending = buf.length > 0 ? buf : undefined;
              transfer(plan);
              return;
            }
            // Refusals and up-to-date IXFR answers are one message, sent like any answer.
            const one = plan.messages.next();
            if (!one.done) socket.write(frame(one.value));
            if (answered >= limits.maxQueriesPerConnection) {
              socket.end();
              return;
            }
            if (socket.writableLength > limits.maxBufferedBytes) {
              socket.destroy();
              return;
            }
            continue;
          }
        }
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
        if (out !== undefined) socket.write(frame(out));
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
    };

    socket.on('data', (chunk: Buffer) => {
      pending = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      if (transferring) {
        // Reading is paused, but a chunk already on its way may still arrive: hold it, within the cap.
        if (pending.length > limits.maxBufferedBytes) socket.destroy();
        return;
      }
      // Pipelined queries in one chunk share its arrival time: waiting behind the others is part of their latency.
      serve(observer !== undefined ? performance.now() : 0);
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

/** The 2-octet length prefix of DNS over TCP (RFC 1035 4.2.2). */
function frame(msg: Buffer): Buffer {
  const framed = Buffer.allocUnsafe(msg.length + 2);
  framed.writeUInt16BE(msg.length, 0);
  msg.copy(framed, 2);
  return framed;
}

/** What observers (metrics, query log) see of a transfer query: one answered query with the plan's rcode. */
function noteTransfer(info: QueryInfo, plan: TransferPlan): void {
  info.outcome = 'answer';
  info.view = plan.view;
  info.qname = plan.qname;
  info.qtype = plan.qtype;
  info.rcode = plan.rcode;
  info.truncated = false;
  info.rrl = ERROR_CLASS;
  info.cookieValid = false;
  info.rrlAction = 'send';
}
