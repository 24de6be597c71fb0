// UDP transport: one socket per listen address; each datagram is answered
// synchronously from the current snapshot. Nothing here knows DNS beyond
// "bytes in, bytes (or nothing) out".

import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import { respond } from '../answer/respond.js';
import type { Snapshot } from '../answer/snapshot.js';

export interface UdpListener {
  readonly socket: dgram.Socket;
  readonly address: { address: string; port: number };
  close(): Promise<void>;
}

export function listenUdp(host: string, port: number, current: () => Snapshot, log: Logger): Promise<UdpListener> {
  const socket = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', ipv6Only: isIPv6(host) });
  let lastErrorLog = 0;
  socket.on('message', (msg, rinfo) => {
    let out: Buffer | undefined;
    try {
      out = respond(msg, msg.length, current(), 'udp', rinfo.address);
    } catch (err) {
      // A bug, not bad input: respond() turns all bad input into FORMERR or a drop.
      // Log at most once a second so a packet that triggers it cannot flood the log.
      const now = Date.now();
      if (now - lastErrorLog > 1000) {
        lastErrorLog = now;
        log.error({ err, client: rinfo.address }, 'answering failed; query dropped');
      }
      return;
    }
    if (out !== undefined) socket.send(out, rinfo.port, rinfo.address);
  });
  socket.on('error', (err) => log.error({ err, host, port }, 'udp socket error'));
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: host, port, exclusive: true }, () => {
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
