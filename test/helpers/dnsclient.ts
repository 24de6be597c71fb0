// A deliberately independent DNS test client. Queries are encoded and
// responses decoded with the `dns-packet` library, never with Vigil's own wire
// code, so a bug shared by our encoder and decoder cannot hide itself.

import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

export type Transport = 'udp' | 'tcp';

export interface EdnsOptions {
  /** Advertised UDP payload size; dns-packet would default to 4096, we default to 1232 like real resolvers. */
  udpPayload?: number;
  version?: number;
  /** DNSSEC OK (RFC 3225). */
  do?: boolean;
  /** Raw EDNS options as (code, data) pairs. */
  options?: readonly { code: number; data: Uint8Array }[];
}

export interface QuerySpec {
  qname: string;
  /** Mnemonic ("A", "TYPE65280") or number. */
  qtype: string | number;
  /** Mnemonic ("IN", "CH", "CLASS7") or number; default IN. */
  qclass?: string | number;
  id?: number;
  opcode?: number;
  rd?: boolean;
  ad?: boolean;
  cd?: boolean;
  /** Absent or false: no OPT record at all. */
  edns?: EdnsOptions | false;
}

export interface SendOptions {
  transport?: Transport;
  host?: string;
  timeoutMs?: number;
}

export interface DnsResponse {
  /** The query bytes as sent (without TCP framing). */
  query: Buffer;
  /** The response bytes as received (without TCP framing). */
  raw: Buffer;
  transport: Transport;
}

const TYPE_NUMBERS: Readonly<Record<string, number>> = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, HINFO: 13, MX: 15, TXT: 16, AAAA: 28, SRV: 33, NAPTR: 35,
  DNAME: 39, OPT: 41, DS: 43, SSHFP: 44, RRSIG: 46, NSEC: 47, DNSKEY: 48, NSEC3: 50, TLSA: 52,
  SVCB: 64, HTTPS: 65, SPF: 99, IXFR: 251, AXFR: 252, MAILB: 253, MAILA: 254, ANY: 255, URI: 256, CAA: 257,
};
const TYPE_MNEMONICS: ReadonlyMap<number, string> = new Map(Object.entries(TYPE_NUMBERS).map(([k, v]) => [v, k]));
const CLASS_NUMBERS: Readonly<Record<string, number>> = { IN: 1, CH: 3, HS: 4, NONE: 254, ANY: 255 };
const CLASS_MNEMONICS: ReadonlyMap<number, string> = new Map(Object.entries(CLASS_NUMBERS).map(([k, v]) => [v, k]));

export function typeNumber(t: string | number): number {
  if (typeof t === 'number') return t;
  const u = t.toUpperCase();
  const n = TYPE_NUMBERS[u] ?? (/^TYPE\d+$/.test(u) ? Number(u.slice(4)) : undefined);
  if (n === undefined || n > 0xffff) throw new Error(`unknown type ${t}`);
  return n;
}

export function typeMnemonic(n: number): string {
  return TYPE_MNEMONICS.get(n) ?? `TYPE${n}`;
}

export function classNumber(c: string | number): number {
  if (typeof c === 'number') return c;
  const u = c.toUpperCase();
  const n = CLASS_NUMBERS[u] ?? (/^CLASS\d+$/.test(u) ? Number(u.slice(5)) : undefined);
  if (n === undefined || n > 0xffff) throw new Error(`unknown class ${c}`);
  return n;
}

export function classMnemonic(n: number): string {
  return CLASS_MNEMONICS.get(n) ?? `CLASS${n}`;
}

let nextId = 0x4d2;

export function encodeQuery(q: QuerySpec): Buffer {
  const id = q.id ?? (nextId = (nextId * 7 + 13) & 0xffff);
  let flags = ((q.opcode ?? 0) & 0xf) << 11;
  if (q.rd === true) flags |= dnsPacket.RECURSION_DESIRED;
  if (q.ad === true) flags |= dnsPacket.AUTHENTIC_DATA;
  if (q.cd === true) flags |= dnsPacket.CHECKING_DISABLED;
  const additionals: dnsPacket.Answer[] = [];
  if (q.edns !== undefined && q.edns !== false) {
    additionals.push({
      type: 'OPT',
      name: '.',
      udpPayloadSize: q.edns.udpPayload ?? 1232,
      extendedRcode: 0,
      ednsVersion: q.edns.version ?? 0,
      flags: q.edns.do === true ? dnsPacket.DNSSEC_OK : 0,
      flag_do: q.edns.do === true,
      // dns-packet's option typings only model a few options; a generic (code, data) pair encodes fine.
      options: (q.edns.options ?? []).map((o) => ({ code: o.code, data: Buffer.from(o.data) })) as unknown as dnsPacket.PacketOpt[],
    });
  }
  // Encode with a placeholder question type and class, then patch the numbers in:
  // dns-packet cannot express arbitrary classes, and we want exact control.
  const buf = dnsPacket.encode({
    type: 'query',
    id,
    flags,
    questions: [{ name: q.qname, type: 'A', class: 'IN' }],
    additionals,
  });
  const qEnd = 12 + nameLength(buf, 12);
  buf.writeUInt16BE(typeNumber(q.qtype), qEnd);
  buf.writeUInt16BE(classNumber(q.qclass ?? 'IN'), qEnd + 2);
  return buf;
}

/** Length of an uncompressed name starting at `off` (queries we build never compress). */
function nameLength(buf: Buffer, off: number): number {
  let p = off;
  for (;;) {
    const len = buf[p];
    if (len === undefined) throw new Error('name runs past the end of the message');
    p += 1 + len;
    if (len === 0) return p - off;
  }
}

export async function query(port: number, q: QuerySpec | Uint8Array, opts: SendOptions = {}): Promise<DnsResponse> {
  const bytes = q instanceof Uint8Array ? Buffer.from(q) : encodeQuery(q);
  const transport = opts.transport ?? 'udp';
  const host = opts.host ?? '127.0.0.1';
  const timeoutMs = opts.timeoutMs ?? 2000;
  const raw = transport === 'udp' ? await sendUdp(host, port, bytes, timeoutMs) : await sendTcp(host, port, bytes, timeoutMs);
  return { query: bytes, raw, transport };
}

export function sendUdp(host: string, port: number, bytes: Uint8Array, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const id = bytes.length >= 2 ? (bytes[0]! << 8) | bytes[1]! : -1;
    const timer = setTimeout(() => finish(new Error(`UDP query to ${host}:${port} timed out after ${timeoutMs} ms`)), timeoutMs);
    function finish(err: Error | null, msg?: Buffer): void {
      clearTimeout(timer);
      sock.close();
      if (err !== null) reject(err);
      else resolve(msg!);
    }
    sock.on('error', (err) => finish(err));
    sock.on('message', (msg) => {
      // A stray datagram (a late answer to an earlier, timed-out query) must not be taken for ours.
      if (id >= 0 && msg.length >= 2 && msg.readUInt16BE(0) !== id) return;
      finish(null, msg);
    });
    sock.send(bytes, port, host, (err) => {
      if (err) finish(err);
    });
  });
}

export async function sendTcp(host: string, port: number, bytes: Uint8Array, timeoutMs: number): Promise<Buffer> {
  const msgs = await sendTcpStream(host, port, bytes, timeoutMs, () => true);
  return msgs[0]!;
}

/**
 * Sends one framed query and collects framed responses until `done` says the
 * last one has arrived (one for a normal query, several for AXFR).
 */
export function sendTcpStream(
  host: string,
  port: number,
  bytes: Uint8Array,
  timeoutMs: number,
  done: (msg: Buffer, all: readonly Buffer[]) => boolean,
  /** `bytes` already carries its own length prefixes. */
  preframed = false,
): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let pending = Buffer.alloc(0);
    const msgs: Buffer[] = [];
    let settled = false;
    const timer = setTimeout(() => finish(new Error(`TCP query to ${host}:${port} timed out after ${timeoutMs} ms`)), timeoutMs);
    function finish(err: Error | null): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err !== null) reject(err);
      else resolve(msgs);
    }
    sock.on('error', (err) => finish(err));
    sock.on('close', () => finish(new Error(`TCP connection to ${host}:${port} closed after ${msgs.length} complete responses`)));
    sock.on('connect', () => {
      if (preframed) {
        sock.write(bytes);
        return;
      }
      const frame = Buffer.alloc(2 + bytes.length);
      frame.writeUInt16BE(bytes.length, 0);
      frame.set(bytes, 2);
      sock.write(frame);
    });
    sock.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const len = pending.readUInt16BE(0);
        const msg = Buffer.from(pending.subarray(2, 2 + len));
        pending = pending.subarray(2 + len);
        msgs.push(msg);
        if (done(msg, msgs)) {
          finish(null);
          return;
        }
      }
    });
  });
}

/**
 * Several queries written back to back on one TCP connection (RFC 7766 6.2.1
 * pipelining); the responses, in arrival order, once all have come.
 */
export async function queryPipelined(port: number, qs: readonly QuerySpec[], opts: { host?: string; timeoutMs?: number } = {}): Promise<{ queries: Buffer[]; responses: Buffer[] }> {
  const queries = qs.map(encodeQuery);
  const frames = Buffer.concat(
    queries.map((q) => {
      const f = Buffer.alloc(2 + q.length);
      f.writeUInt16BE(q.length, 0);
      q.copy(f, 2);
      return f;
    }),
  );
  const responses = await sendTcpStream(opts.host ?? '127.0.0.1', port, frames, opts.timeoutMs ?? 2000, (_m, all) => all.length >= queries.length, true);
  return { queries, responses };
}

// ---------------------------------------------------------------------------
// Normalisation: a response reduced to what an authoritative server is judged
// on, in a form two servers' answers can be deep-compared in.

export interface NormalisedOpt {
  udpPayload: number;
  extendedRcode: number;
  version: number;
  /** The 16 EDNS flag bits (DO is 0x8000). */
  flags: number;
  /** "code:hex" per option, sorted. */
  options: string[];
}

export interface Normalised {
  /** The full rcode: header's 4 bits plus OPT's extended 8 bits (RFC 6891 section 6.1.3). */
  rcode: number;
  opcode: number;
  flags: { qr: boolean; aa: boolean; tc: boolean; rd: boolean; ra: boolean; z: boolean; ad: boolean; cd: boolean };
  /** "name class type" with the name's case kept, so 0x20 echoing is checked. */
  question: string[];
  /** "name(lowercased) ttl class type data", sorted: RRset and record order carry no meaning (RFC 2181 section 5). */
  answer: string[];
  authority: string[];
  /** Without the OPT record, which is in `opt`. */
  additional: string[];
  opt: NormalisedOpt | null;
}

interface LooseRecord {
  name: string;
  type: string;
  class?: string;
  ttl?: number;
  data?: unknown;
  udpPayloadSize?: number;
  extendedRcode?: number;
  ednsVersion?: number;
  flags?: number;
  options?: { code: number; data?: Buffer }[];
}

interface LoosePacket {
  questions?: { name: string; type: string; class: string }[];
  answers?: LooseRecord[];
  authorities?: LooseRecord[];
  additionals?: LooseRecord[];
}

export function normalise(raw: Uint8Array): Normalised {
  const buf = Buffer.from(raw);
  if (buf.length < 12) throw new Error(`response of ${buf.length} bytes is shorter than a header`);
  const hdr = buf.readUInt16BE(2);
  // dns-packet's typings do not cover every decoded field; we read what we need structurally.
  const p = dnsPacket.decode(buf) as unknown as LoosePacket;
  let opt: NormalisedOpt | null = null;
  const additional: string[] = [];
  for (const r of p.additionals ?? []) {
    if (r.type === 'OPT') {
      if (opt !== null) throw new Error('more than one OPT record');
      opt = {
        udpPayload: r.udpPayloadSize ?? 0,
        extendedRcode: r.extendedRcode ?? 0,
        version: r.ednsVersion ?? 0,
        flags: r.flags ?? 0,
        options: (r.options ?? []).map((o) => `${o.code}:${(o.data ?? Buffer.alloc(0)).toString('hex')}`).sort(),
      };
    } else additional.push(recordString(r));
  }
  return {
    rcode: (hdr & 0xf) | ((opt?.extendedRcode ?? 0) << 4),
    opcode: (hdr >> 11) & 0xf,
    flags: {
      qr: (hdr & 0x8000) !== 0,
      aa: (hdr & 0x0400) !== 0,
      tc: (hdr & 0x0200) !== 0,
      rd: (hdr & 0x0100) !== 0,
      ra: (hdr & 0x0080) !== 0,
      z: (hdr & 0x0040) !== 0,
      ad: (hdr & 0x0020) !== 0,
      cd: (hdr & 0x0010) !== 0,
    },
    question: (p.questions ?? []).map((q) => `${q.name}. ${mnemonicClass(q.class)} ${mnemonicType(q.type)}`),
    answer: (p.answers ?? []).map(recordString).sort(),
    authority: (p.authorities ?? []).map(recordString).sort(),
    additional: additional.sort(),
    opt,
  };
}

/** dns-packet spells unknown types UNKNOWN_n; RFC 3597 spells them TYPEn. */
function mnemonicType(t: string): string {
  return t.startsWith('UNKNOWN_') ? `TYPE${t.slice(8)}` : t;
}

function mnemonicClass(c: string): string {
  return c.startsWith('UNKNOWN_') ? `CLASS${c.slice(8)}` : c;
}

/**
 * Names in rdata are lowercased too: servers compress them against any earlier
 * spelling of the same suffix, including the client's 0x20-mixed question, so
 * their case is not stable (names compare case-insensitively, RFC 4343).
 */
function fqdn(n: unknown): string {
  const s = String(n).toLowerCase();
  return s === '.' ? s : `${s}.`;
}

/** RFC 1035 character-string presentation, escaping everything outside printable ASCII. */
function charString(b: Uint8Array | string): string {
  const bytes = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
  let s = '"';
  for (const c of bytes) {
    if (c === 0x22 || c === 0x5c) s += `\\${String.fromCharCode(c)}`;
    else if (c < 0x20 || c > 0x7e) s += `\\${c.toString().padStart(3, '0')}`;
    else s += String.fromCharCode(c);
  }
  return `${s}"`;
}

function rdataString(type: string, data: unknown): string {
  if (Buffer.isBuffer(data)) return `\\# ${data.length} ${data.toString('hex')}`;
  const d = data as Record<string, unknown>;
  switch (type) {
    case 'A':
    case 'AAAA':
      return String(data);
    case 'NS':
    case 'CNAME':
    case 'PTR':
    case 'DNAME':
      return fqdn(data);
    case 'MX':
      return `${String(d['preference'])} ${fqdn(d['exchange'])}`;
    case 'SRV':
      return `${String(d['priority'])} ${String(d['weight'])} ${String(d['port'])} ${fqdn(d['target'])}`;
    case 'SOA':
      return [fqdn(d['mname']), fqdn(d['rname']), d['serial'], d['refresh'], d['retry'], d['expire'], d['minimum']].map(String).join(' ');
    case 'TXT':
      return (data as Uint8Array[]).map(charString).join(' ');
    case 'CAA':
      return `${String(d['flags'])} ${String(d['tag'])} ${charString(String(d['value']))}`;
    case 'HINFO':
      return `${charString(String(d['cpu']))} ${charString(String(d['os']))}`;
    case 'DS':
      return `${String(d['keyTag'])} ${String(d['algorithm'])} ${String(d['digestType'])} ${(d['digest'] as Buffer).toString('hex')}`;
    default:
      return JSON.stringify(data, (_k, v: unknown) =>
        v !== null && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer'
          ? Buffer.from((v as { data: number[] }).data).toString('hex')
          : v,
      );
  }
}

function recordString(r: LooseRecord): string {
  return `${fqdn(r.name)} ${r.ttl ?? 0} ${mnemonicClass(r.class ?? 'IN')} ${mnemonicType(r.type)} ${rdataString(r.type, r.data)}`;
}

/** Header rcode plus the RR counts, straight from the bytes: what is left to compare of a truncated response. */
export function headerSummary(raw: Uint8Array): { flags: number; qd: number; an: number; ns: number; ar: number } {
  const b = Buffer.from(raw);
  return { flags: b.readUInt16BE(2), qd: b.readUInt16BE(4), an: b.readUInt16BE(6), ns: b.readUInt16BE(8), ar: b.readUInt16BE(10) };
}
