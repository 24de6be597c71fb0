// A structure-aware mutator for DNS queries. It knows where a query's parts
// are (header counts, question labels, records, the OPT and its options, TCP
// frame lengths) and breaks them the ways a hostile or buggy client would:
// wrong lengths, pointers that loop or point nowhere, counts that lie,
// options of every length, truncation, and pieces of two queries spliced.
// Plain random bytes rarely get past the header; these reach the parser's
// and the answerer's deeper paths.

/** How the harness feeds an input: one UDP or TCP message, or a TCP byte stream of length-framed messages. */
export type Mode = 'udp' | 'tcp' | 'stream';

export interface FuzzInput {
  readonly data: Buffer;
  readonly mode: Mode;
}

/** Deterministic PRNG (mulberry32): a seed reproduces a whole run. */
export class Rng {
  private a: number;
  constructor(seed: number) {
    this.a = seed >>> 0;
  }
  next(): number {
    this.a = (this.a + 0x6d2b79f5) | 0;
    let x = Math.imul(this.a ^ (this.a >>> 15), 1 | this.a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

/** Where the parts of a (possibly broken) query are. Found leniently: a walk that fails just stops. */
export interface Layout {
  /** Offsets of the question name's label-length octets (its final 0 included). */
  readonly labels: number[];
  /** Offset of QTYPE, or -1. */
  readonly qtypeAt: number;
  readonly records: { readonly start: number; readonly typeAt: number; readonly rdlenAt: number; readonly end: number }[];
  /** Offset of the OPT record's RDLENGTH, or -1. */
  readonly optRdlenAt: number;
  /** Offsets of each EDNS option's code. */
  readonly options: number[];
}

function skipName(b: Buffer, at: number): number {
  let i = at;
  for (let guard = 0; guard < 128; guard++) {
    if (i >= b.length) return -1;
    const len = b[i]!;
    if (len === 0) return i + 1;
    if ((len & 0xc0) === 0xc0) return i + 2 <= b.length ? i + 2 : -1;
    if (len > 63) return -1;
    i += 1 + len;
  }
  return -1;
}

export function layout(b: Buffer): Layout {
  const out = { labels: [] as number[], qtypeAt: -1, records: [] as Layout['records'][number][], optRdlenAt: -1, options: [] as number[] };
  if (b.length < 12) return out;
  let i = 12;
  for (let guard = 0; guard < 128 && i < b.length; guard++) {
    out.labels.push(i);
    const len = b[i]!;
    if (len === 0 || len > 63) {
      i = len === 0 ? i + 1 : -1;
      break;
    }
    i += 1 + len;
  }
  if (i < 0 || i + 4 > b.length) return out;
  out.qtypeAt = i;
  i += 4;
  const total = Math.min(64, b.readUInt16BE(6) + b.readUInt16BE(8) + b.readUInt16BE(10));
  for (let n = 0; n < total; n++) {
    const start = i;
    const after = skipName(b, i);
    if (after < 0 || after + 10 > b.length) break;
    const rdlen = b.readUInt16BE(after + 8);
    const end = after + 10 + rdlen;
    out.records.push({ start, typeAt: after, rdlenAt: after + 8, end: Math.min(end, b.length) });
    if (b.readUInt16BE(after) === 41 && out.optRdlenAt < 0) {
      out.optRdlenAt = after + 8;
      for (let o = after + 10; o + 4 <= Math.min(end, b.length); o += 4 + b.readUInt16BE(o + 2)) out.options.push(o);
    }
    if (end > b.length) break;
    i = end;
  }
  return out;
}

const INTERESTING_8 = [0, 1, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xff];
const INTERESTING_16 = [0, 1, 2, 7, 8, 9, 15, 16, 24, 40, 41, 0x7f, 0xff, 0x100, 511, 512, 513, 1232, 4096, 0x3fff, 0x7fff, 0xfffe, 0xffff];
/** Types we serve, the ones we refuse, meta types and strangers. */
const QTYPES = [1, 2, 5, 6, 12, 13, 15, 16, 28, 33, 39, 41, 43, 46, 48, 50, 64, 65, 99, 251, 252, 253, 254, 255, 256, 257, 65534, 65535, 0];
const QCLASSES = [1, 3, 4, 254, 255, 0, 2, 0xffff];
const OPTION_CODES = [3, 8, 9, 10, 11, 12, 14, 15, 0, 0xffff, 10, 10];

function interesting16(rng: Rng, current: number): number {
  if (rng.chance(0.3)) return (current + rng.pick([-1, 1, -8, 8, 16])) & 0xffff;
  return rng.chance(0.8) ? rng.pick(INTERESTING_16) : rng.int(0x10000);
}

function splice(a: Buffer, at: number, remove: number, insert: Uint8Array): Buffer {
  return Buffer.concat([a.subarray(0, at), insert, a.subarray(Math.min(a.length, at + remove))]);
}

/** Appends one EDNS option to the OPT record (adding an OPT if there is none), usually fixing RDLENGTH. */
function addOption(rng: Rng, b: Buffer, l: Layout): Buffer {
  const code = rng.pick(OPTION_CODES);
  const len = code === 10 ? rng.int(44) : rng.chance(0.8) ? rng.int(24) : rng.int(300);
  const opt = Buffer.alloc(4 + len);
  opt.writeUInt16BE(code, 0);
  opt.writeUInt16BE(rng.chance(0.9) ? len : interesting16(rng, len), 2);
  for (let i = 4; i < opt.length; i++) opt[i] = rng.int(256);
  if (l.optRdlenAt < 0) {
    const rr = Buffer.alloc(11);
    rr.writeUInt16BE(41, 1);
    rr.writeUInt16BE(rng.pick([512, 1232, 4096, 100, 65535]), 3);
    rr.writeUInt16BE(opt.length, 9);
    const out = Buffer.concat([b, rr, opt]);
    if (out.length >= 12) out.writeUInt16BE((out.readUInt16BE(10) + 1) & 0xffff, 10);
    return out;
  }
  const rdStart = l.optRdlenAt + 2;
  const rdlen = b.readUInt16BE(l.optRdlenAt);
  const at = Math.min(b.length, rdStart + rdlen);
  const out = splice(b, at, 0, opt);
  if (rng.chance(0.85)) out.writeUInt16BE((rdlen + opt.length) & 0xffff, l.optRdlenAt);
  return out;
}

type Mutation = (rng: Rng, b: Buffer, l: Layout, other: Buffer) => Buffer;

const MUTATIONS: readonly { name: string; weight: number; apply: Mutation }[] = [
  {
    name: 'bit flips',
    weight: 3,
    apply: (rng, b) => {
      const c = Buffer.from(b);
      for (let n = 1 + rng.int(4); n > 0 && c.length > 0; n--) c[rng.int(c.length)]! ^= 1 << rng.int(8);
      return c;
    },
  },
  {
    name: 'interesting byte',
    weight: 2,
    apply: (rng, b) => {
      const c = Buffer.from(b);
      if (c.length > 0) c[rng.int(c.length)] = rng.chance(0.7) ? rng.pick(INTERESTING_8) : rng.int(256);
      return c;
    },
  },
  {
    name: 'header count',
    weight: 3,
    apply: (rng, b) => {
      if (b.length < 12) return b;
      const c = Buffer.from(b);
      const at = 4 + 2 * rng.int(4);
      c.writeUInt16BE(interesting16(rng, c.readUInt16BE(at)), at);
      return c;
    },
  },
  {
    name: 'header flags',
    weight: 2,
    apply: (rng, b) => {
      if (b.length < 4) return b;
      const c = Buffer.from(b);
      if (rng.chance(0.5)) c[2] = (c[2]! & 0x87) | (rng.pick([0, 1, 2, 4, 5, 6, 15]) << 3);
      else c[2 + rng.int(2)] = rng.int(256);
      return c;
    },
  },
  {
    name: 'label length',
    weight: 3,
    apply: (rng, b, l) => {
      if (l.labels.length === 0) return b;
      const c = Buffer.from(b);
      const at = rng.pick(l.labels);
      c[at] = rng.chance(0.5) ? rng.pick([0, 1, 63, 64, 0x80, 0xc0, 0xff]) : (c[at]! + rng.pick([-1, 1, 2])) & 0xff;
      return c;
    },
  },
  {
    name: 'compression pointer',
    weight: 3,
    apply: (rng, b, l) => {
      // A pointer where a name (part) should be: to the header, to itself (a loop), forward, or past the end.
      const spots = [...l.labels, ...l.records.map((r) => r.start)];
      if (spots.length === 0) return b;
      const at = rng.pick(spots);
      const target = rng.pick([12, at, at + 2, b.length, 0, 0x3fff, rng.int(Math.max(1, b.length))]);
      const ptr = Buffer.from([0xc0 | ((target >> 8) & 0x3f), target & 0xff]);
      if (rng.chance(0.5)) return splice(b, at, 0, ptr);
      const c = Buffer.from(b);
      if (at + 1 < c.length) c.set(ptr, at);
      return c;
    },
  },
  {
    name: 'pointer loop',
    weight: 1,
    apply: (rng, b, l) => {
      // Two pointers aimed at each other, placed where the question or a record owner starts.
      const at = l.records.length > 0 && rng.chance(0.5) ? rng.pick(l.records).start : 12;
      const loop = Buffer.from([0xc0 | ((at + 2) >> 8), (at + 2) & 0xff, 0xc0 | (at >> 8), at & 0xff]);
      return splice(b, at, rng.int(3), loop);
    },
  },
  {
    name: 'qtype/qclass',
    weight: 2,
    apply: (rng, b, l) => {
      if (l.qtypeAt < 0) return b;
      const c = Buffer.from(b);
      if (rng.chance(0.6)) c.writeUInt16BE(rng.pick(QTYPES), l.qtypeAt);
      else c.writeUInt16BE(rng.pick(QCLASSES), l.qtypeAt + 2);
      return c;
    },
  },
  {
    name: 'record length field',
    weight: 3,
    apply: (rng, b, l) => {
      const fields = [...l.records.map((r) => r.rdlenAt), ...l.options.map((o) => o + 2)];
      if (fields.length === 0) return b;
      const at = rng.pick(fields);
      if (at + 2 > b.length) return b;
      const c = Buffer.from(b);
      c.writeUInt16BE(interesting16(rng, c.readUInt16BE(at)), at);
      return c;
    },
  },
  {
    name: 'OPT fields',
    weight: 2,
    apply: (rng, b, l) => {
      const opt = l.records.find((r) => r.rdlenAt === l.optRdlenAt);
      if (opt === undefined) return addOption(rng, b, l);
      const c = Buffer.from(b);
      const field = rng.int(4);
      if (field === 0) c.writeUInt16BE(interesting16(rng, c.readUInt16BE(opt.typeAt + 2)), opt.typeAt + 2); // payload size
      else if (field === 1) c[opt.typeAt + 5] = rng.pick([0, 1, 2, 255]); // version
      else if (field === 2) c[opt.typeAt + 4] = rng.int(256); // extended rcode
      else c[opt.typeAt + 6] = rng.pick([0, 0x80, 0x7f, 0xff]); // DO and Z
      return c;
    },
  },
  { name: 'add EDNS option', weight: 3, apply: (rng, b, l) => addOption(rng, b, l) },
  {
    name: 'second OPT or misplaced record',
    weight: 1,
    apply: (rng, b, l) => {
      if (b.length < 12) return b;
      const rr = rng.chance(0.5)
        ? Buffer.from([0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0])
        : Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
      const at = rng.chance(0.5) || l.records.length === 0 ? b.length : rng.pick(l.records).start;
      const out = splice(b, at, 0, rr);
      const count = 6 + 2 * rng.int(3);
      out.writeUInt16BE((out.readUInt16BE(count) + 1) & 0xffff, count);
      return out;
    },
  },
  {
    name: 'truncate',
    weight: 2,
    apply: (rng, b) => b.subarray(0, rng.int(b.length + 1)),
  },
  {
    name: 'insert or delete bytes',
    weight: 2,
    apply: (rng, b) => {
      const at = rng.int(b.length + 1);
      if (rng.chance(0.5)) return splice(b, at, 1 + rng.int(4), new Uint8Array(0));
      return splice(b, at, 0, Uint8Array.from({ length: 1 + rng.int(8) }, () => rng.int(256)));
    },
  },
  {
    name: 'splice',
    weight: 2,
    apply: (rng, b, _l, other) => {
      const head = b.subarray(0, rng.int(b.length + 1));
      return Buffer.concat([head, other.subarray(rng.int(other.length + 1))]);
    },
  },
  {
    name: 'long name',
    weight: 1,
    apply: (rng, b, l) => {
      // Labels up to and past the 255-octet limit.
      if (l.labels.length === 0) return b;
      const n = 1 + rng.int(5);
      const extra = Buffer.concat(Array.from({ length: n }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61 + rng.int(26))])));
      return splice(b, l.labels[0]!, 0, extra);
    },
  },
];

const TOTAL_WEIGHT = MUTATIONS.reduce((s, m) => s + m.weight, 0);

function pickMutation(rng: Rng): (typeof MUTATIONS)[number] {
  let r = rng.int(TOTAL_WEIGHT);
  for (const m of MUTATIONS) {
    r -= m.weight;
    if (r < 0) return m;
  }
  return MUTATIONS[0]!;
}

/** Splits a TCP stream into its frames the way the transport does; the tail that is not a whole frame is dropped. */
export function frames(stream: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i + 2 <= stream.length) {
    const len = stream.readUInt16BE(i);
    if (i + 2 + len > stream.length) break;
    out.push(stream.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  return out;
}

export function frame(msgs: readonly Uint8Array[]): Buffer {
  return Buffer.concat(msgs.flatMap((m) => [Buffer.from([m.length >> 8, m.length & 0xff]), m]));
}

/** One message mutated by 1..4 stacked mutations (havoc), `other` feeding splices. */
export function mutateMessage(rng: Rng, msg: Buffer, other: Buffer): Buffer {
  let b = msg;
  for (let n = 1 + rng.int(rng.chance(0.7) ? 2 : 4); n > 0; n--) {
    b = pickMutation(rng).apply(rng, b, layout(b), other);
    // Keep inputs near real query sizes: past 4 KiB nothing new is reached, only time spent.
    if (b.length > 4096) b = b.subarray(0, 4096);
  }
  return b;
}

/** A mutant of `input`: its messages mutated, and for a TCP stream sometimes its framing instead. */
export function mutate(rng: Rng, input: FuzzInput, other: FuzzInput): FuzzInput {
  const otherMsg = other.mode === 'stream' ? (frames(other.data)[0] ?? other.data) : other.data;
  if (input.mode !== 'stream') {
    const mode = rng.chance(0.05) ? rng.pick<Mode>(['udp', 'tcp']) : input.mode;
    return { data: mutateMessage(rng, input.data, otherMsg), mode };
  }
  const msgs = frames(input.data);
  if (msgs.length === 0 || rng.chance(0.3)) {
    // Break the framing itself: a length prefix that lies, a split, a stray byte between frames.
    const c = Buffer.from(input.data);
    if (c.length >= 2 && rng.chance(0.6)) c.writeUInt16BE(interesting16(rng, c.readUInt16BE(0)), 0);
    else if (c.length > 0) return { data: splice(c, rng.int(c.length), rng.int(2), Uint8Array.from([rng.int(256)])), mode: 'stream' };
    return { data: c, mode: 'stream' };
  }
  const k = rng.int(msgs.length);
  msgs[k] = mutateMessage(rng, msgs[k]!, otherMsg);
  if (rng.chance(0.2)) msgs.push(otherMsg);
  return { data: frame(msgs), mode: 'stream' };
}
