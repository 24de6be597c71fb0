// The least DNS a timing client needs: one question encoded, the reply's ID,
// RCODE and answer count read back. Written out here rather than taken from
// server/wire so the measuring side shares no code with what it measures.

import { createSocket } from 'node:dgram';
import { performance } from 'node:perf_hooks';

export const QTYPE = { A: 1, NS: 2, SOA: 6, MX: 15, TXT: 16, AAAA: 28 } as const;

export class QueryTimeout extends Error {
  override name = 'QueryTimeout';
}

export function encodeQuery(id: number, name: string, qtype: number): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter((l) => l !== '');
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])]);
  const msg = Buffer.alloc(12 + qname.length + 4);
  msg.writeUInt16BE(id & 0xffff, 0);
  msg.writeUInt16BE(0x0000, 2); // QUERY, no RD: Vigil is authoritative only
  msg.writeUInt16BE(1, 4);
  qname.copy(msg, 12);
  msg.writeUInt16BE(qtype, 12 + qname.length);
  msg.writeUInt16BE(1, 14 + qname.length); // IN
  return msg;
}

export interface ReplyHeader {
  readonly id: number;
  readonly rcode: number;
  readonly answers: number;
}

export function readReply(msg: Buffer): ReplyHeader | undefined {
  if (msg.length < 12) return undefined;
  return { id: msg.readUInt16BE(0), rcode: msg.readUInt8(3) & 0x0f, answers: msg.readUInt16BE(6) };
}

/** One query over UDP, retried every `retryMs` until `timeoutMs`; resolves with the reply header and the ms it took. */
export function queryOnce(host: string, port: number, name: string, qtype: number, timeoutMs = 5000, retryMs = 500): Promise<ReplyHeader & { ms: number }> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    const id = Math.floor(Math.random() * 0x10000);
    const msg = encodeQuery(id, name, qtype);
    const start = performance.now();
    const send = (): void => sock.send(msg, port, host);
    const retry = setInterval(send, retryMs);
    const done = (err?: Error, r?: ReplyHeader): void => {
      clearInterval(retry);
      clearTimeout(limit);
      sock.close();
      if (err !== undefined) reject(err);
      else resolve({ ...r!, ms: performance.now() - start });
    };
    const limit = setTimeout(() => done(new QueryTimeout(`no answer to ${name} type ${qtype} from ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
    sock.on('message', (m) => {
      const r = readReply(m);
      if (r !== undefined && r.id === id) done(undefined, r);
    });
    sock.on('error', (err) => done(err));
    send();
  });
}
