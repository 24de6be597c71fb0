#!/usr/bin/env node
// The Node floor of bench/peers: what one Node process on one node:dgram
// socket can answer when answering costs nothing but the packet itself. It
// parses only the question, looks up a precomputed response and sends it.
// No server can be faster per process on Node's dgram path, so Vigil's q/s
// over this one measures what Vigil's own work costs.
//
//   node bench/peers/floor.mjs --prime HOST:PORT --queries FILE [--also "NAME TYPE"]... [--port P] [--host ADDR]
//
// The answers are not written by hand: at start-up every distinct question of
// the query file (a dnsperf file, "name type" a line) is asked once without
// EDNS and once with it (OPT, payload 4096, as dnsperf -e sends it) of a
// reference server, and the responses are kept whole. Only then does the
// floor bind its port, so a server that answers is a server that is primed.

import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';

const TYPES = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, HINFO: 13, MX: 15, TXT: 16, AAAA: 28,
  SRV: 33, NAPTR: 35, DS: 43, SSHFP: 44, DNSKEY: 48, TLSA: 52, SVCB: 64, HTTPS: 65, CAA: 257, ANY: 255,
};
const OPT = 41;
const REFUSED = 5;
const FORMERR = 1;

class FloorError extends Error {
  name = 'FloorError';
}

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 5399, prime: '', queries: [], also: [] };
  for (let i = 0; i < argv.length; i++) {
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new FloorError(`${argv[i - 1]} needs a value`);
      return v;
    };
    switch (argv[i]) {
      case '--host': opts.host = value(); break;
      case '--port': opts.port = Number(value()); break;
      case '--prime': opts.prime = value(); break;
      case '--queries': opts.queries.push(value()); break;
      case '--also': opts.also.push(value()); break;
      default: throw new FloorError(`unknown argument: ${argv[i]}`);
    }
  }
  const m = /^(.+):(\d+)$/.exec(opts.prime);
  if (m === null) throw new FloorError('--prime HOST:PORT is required (the reference server the answers are taken from)');
  opts.primeHost = m[1].replace(/^\[(.*)\]$/, '$1');
  opts.primePort = Number(m[2]);
  if (opts.queries.length === 0 && opts.also.length === 0) throw new FloorError('nothing to prime: give --queries FILE or --also "NAME TYPE"');
  return opts;
}

/** Wire-format question (QNAME, QTYPE, QCLASS IN) of one "name type" line. */
function questionBytes(line, where) {
  const [name, type] = line.trim().split(/\s+/);
  const upper = (type ?? '').toUpperCase();
  const qtype = TYPES[upper] ?? (/^TYPE\d+$/.test(upper) ? Number(upper.slice(4)) : undefined);
  if (name === undefined || qtype === undefined || qtype > 0xffff) throw new FloorError(`${where}: not "name type": ${line}`);
  const labels = name.replace(/\.$/, '').split('.').filter((l) => l !== '');
  const parts = [];
  for (const label of labels) {
    const b = Buffer.from(label, 'latin1');
    if (b.length > 63) throw new FloorError(`${where}: label longer than 63 octets in ${name}`);
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0, qtype >> 8, qtype & 0xff, 0, 1]));
  return Buffer.concat(parts);
}

function query(id, question, edns) {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header[2] = 0x01; // RD, as dnsperf sends it
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(edns ? 1 : 0, 10);
  // OPT: root owner, type 41, payload 4096 (dnsperf -e), no flags, no options.
  const opt = edns ? Buffer.from([0, 0, OPT, 0x10, 0x00, 0, 0, 0, 0, 0, 0]) : Buffer.alloc(0);
  return Buffer.concat([header, question, opt]);
}

/** Offset just past QTYPE/QCLASS of the first question, or -1 if it does not fit or uses a pointer. */
function questionEnd(msg) {
  let i = 12;
  const n = msg.length;
  while (i < n) {
    const len = msg[i];
    if (len === 0) return i + 5 <= n ? i + 5 : -1;
    if (len > 63) return -1;
    i += len + 1;
    if (i - 12 > 255) return -1; // longer than a name may be (RFC 1035 3.1)
  }
  return -1;
}

// The lookup key is built in one scratch buffer: the QNAME lowered in ASCII
// only (DNS case-insensitivity is ASCII, RFC 4343), QTYPE, QCLASS and one
// octet for "the query carries OPT". One string per query is the only
// allocation besides the response itself.
const scratch = Buffer.alloc(512);
function keyOf(msg, qend) {
  const n = qend - 12;
  for (let i = 0; i < n; i++) {
    const c = msg[12 + i];
    scratch[i] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
  }
  // OPT is the only additional record dnsperf sends; look for its root owner and type right after the question.
  const arcount = (msg[10] << 8) | msg[11];
  scratch[n] = arcount > 0 && msg.length >= qend + 11 && msg[qend] === 0 && msg[qend + 1] === 0 && msg[qend + 2] === OPT ? 1 : 0;
  return scratch.toString('latin1', 0, n + 1);
}

/** Asks every question of `questions` (Map key -> wire query) and resolves to Map key -> response. */
function prime(host, port, queries) {
  const family = host.includes(':') ? 'udp6' : 'udp4';
  const socket = dgram.createSocket(family);
  const answers = new Map();
  const todo = [...queries.entries()];
  const pending = new Map(); // id -> { key, bytes, sentAt, tries }
  const WINDOW = 64;
  const TIMEOUT_MS = 2000;
  const TRIES = 4;
  let nextId = 1;
  let next = 0;
  return new Promise((resolve, reject) => {
    let failed = false;
    const fail = (err) => {
      if (failed) return;
      failed = true;
      clearInterval(timer);
      socket.close();
      reject(err);
    };
    const send = (entry) => {
      entry.sentAt = Date.now();
      entry.tries++;
      socket.send(entry.bytes, port, host);
    };
    const fill = () => {
      while (pending.size < WINDOW && next < todo.length) {
        const [key, bytes] = todo[next++];
        const id = nextId;
        nextId = (nextId % 0xffff) + 1;
        const copy = Buffer.from(bytes);
        copy.writeUInt16BE(id, 0);
        const entry = { key, bytes: copy, sentAt: 0, tries: 0 };
        pending.set(id, entry);
        send(entry);
      }
      if (pending.size === 0 && next === todo.length) {
        clearInterval(timer);
        socket.close();
        resolve(answers);
      }
    };
    socket.on('error', fail);
    socket.on('message', (msg) => {
      if (msg.length < 12) return;
      const entry = pending.get(msg.readUInt16BE(0));
      if (entry === undefined) return;
      const qend = questionEnd(msg);
      const sent = entry.bytes;
      // The response's question must be the one asked, byte for byte: the
      // floor later overwrites it with the client's, which needs equal length.
      if (msg.readUInt16BE(4) !== 1 || qend === -1 || qend !== questionEnd(sent) || msg.compare(sent, 12, qend, 12, qend) !== 0) {
        fail(new FloorError(`${host}:${port} answered a different question than it was asked (id ${msg.readUInt16BE(0)})`));
        return;
      }
      pending.delete(msg.readUInt16BE(0));
      answers.set(entry.key, msg);
      fill();
    });
    const timer = setInterval(() => {
      const now = Date.now();
      for (const [id, entry] of pending) {
        if (now - entry.sentAt < TIMEOUT_MS) continue;
        if (entry.tries >= TRIES) {
          fail(new FloorError(`${host}:${port} did not answer a priming query ${TRIES} times (id ${id}); is the reference server running?`));
          return;
        }
        send(entry);
      }
    }, 200);
    fill();
  });
}

function refuse(msg, qend, rcode) {
  const end = qend === -1 ? 12 : qend;
  const out = Buffer.allocUnsafe(end);
  msg.copy(out, 0, 0, end);
  out[2] = 0x80 | (msg[2] & 0x79); // QR, the query's opcode and RD; AA and TC clear
  out[3] = rcode; // RA, Z, AD, CD clear
  out.writeUInt16BE(qend === -1 ? 0 : 1, 4);
  out.fill(0, 6, 12);
  return out;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const wanted = new Map(); // key -> wire query
  const add = (line, where) => {
    const question = questionBytes(line, where);
    for (const edns of [false, true]) {
      const q = query(0, question, edns);
      const key = keyOf(q, 12 + question.length);
      if (!wanted.has(key)) wanted.set(key, q);
    }
  };
  for (const file of opts.queries) {
    readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
      if (line.trim() !== '' && !line.startsWith('#')) add(line, `${file}:${i + 1}`);
    });
  }
  for (const line of opts.also) add(line, '--also');
  const table = await prime(opts.primeHost, opts.primePort, wanted);

  const socket = dgram.createSocket(opts.host.includes(':') ? 'udp6' : 'udp4');
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 12 || (msg[2] & 0x80) !== 0) return; // not a query: never answer a response
    const qend = questionEnd(msg);
    if (qend === -1 || ((msg[4] << 8) | msg[5]) !== 1) {
      socket.send(refuse(msg, qend, FORMERR), rinfo.port, rinfo.address);
      return;
    }
    const stored = table.get(keyOf(msg, qend));
    if (stored === undefined) {
      socket.send(refuse(msg, qend, REFUSED), rinfo.port, rinfo.address);
      return;
    }
    // A copy per response: dgram may still hold the buffer after send() returns.
    const out = Buffer.allocUnsafe(stored.length);
    stored.copy(out);
    out[0] = msg[0];
    out[1] = msg[1];
    out[2] = (stored[2] & 0xfe) | (msg[2] & 0x01);
    msg.copy(out, 12, 12, qend); // the client's question, letter case and all
    socket.send(out, rinfo.port, rinfo.address);
  });
  socket.on('error', (err) => {
    process.stderr.write(`floor: ${err.message}\n`);
    process.exit(1);
  });
  socket.bind(opts.port, opts.host, () => {
    process.stderr.write(
      `floor: ${table.size} responses (${table.size / 2} questions, without and with EDNS) from ${opts.prime} in ${Date.now() - started} ms; ` +
        `answering on ${opts.host}:${opts.port}, pid ${process.pid}\n`,
    );
  });
}

main().catch((err) => {
  process.stderr.write(`floor: ${err.message}\n`);
  process.exit(1);
});
