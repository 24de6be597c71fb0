// Runs fuzz inputs through parseQuery and respond() and checks what every
// answer must be, whatever the input: no exception; an answer exactly when
// the parser does not drop the packet; the query's ID, opcode, RD, CD and
// question echoed; QR set; an error's rcode as the parser decided; a message
// dns-packet (an independent decoder) reads to its last octet; within the
// transport's size limit; and bounded work, counted as reads of the input
// (no clocks: a linear parser reads each octet a small constant number of
// times, a looping one does not).
//
// Coverage is approximated by the set of distinct response signatures
// (transport, parse outcome, reason, rcode, flags, sections present); an input
// that produces a new one is kept and mutated further.

import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { parseQuery } from '../../server/wire/query.js';
import { respond, type Transport } from '../../server/answer/respond.js';
import { buildSnapshot, type Snapshot } from '../../server/answer/snapshot.js';
import { loadConfig } from '../../zones/load.js';
import { frames, mutate, Rng, type FuzzInput } from './mutator.js';

export type Responder = (msg: Uint8Array, length: number, snap: Snapshot, transport: Transport, client: string) => Buffer | undefined;

export interface Violation {
  readonly invariant: string;
  readonly detail: string;
}

export interface CheckResult {
  readonly signature: string;
  readonly violations: Violation[];
  /** Reads of the input's octets by parseQuery and respond() together. */
  readonly reads: number;
}

/**
 * Reads allowed per input octet, plus a constant: parseQuery reads each octet
 * about once; respond() parses again, folds a mixed-case name, copies the
 * question into the response with a loop, and on the slow path copies it
 * into the writer and names it for compression: up to about five reads of
 * each question octet. Linear work stays under 6 per octet; a loop that
 * rescans the input (quadratic) does not, even for short inputs.
 */
export const READS_PER_OCTET = 6;
export const READS_CONSTANT = 64;

const UDP_CLASSIC = 512;
const TCP_MAX = 65535;

/**
 * The snapshot fuzz runs answer from: the bundled example config, plus one
 * zone with answers too big for 512 octets (TXT and A RRsets, a delegation
 * with glue that must fit), without which truncation and the size limits
 * would never be exercised.
 */
export async function fuzzSnapshot(): Promise<Snapshot> {
  const examples = fileURLToPath(new URL('../../zones/examples/', import.meta.url));
  const raw = parseYaml(readFileSync(join(examples, 'vigil.yaml'), 'utf8')) as { zones: { file?: string }[] };
  for (const z of raw.zones) if (z.file !== undefined) z.file = join(examples, z.file);
  raw.zones.push({
    origin: 'big.test.',
    ttl: 300,
    records: [
      '@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300',
      '@ NS ns1',
      'ns1 A 192.0.2.1',
      ...Array.from({ length: 30 }, (_, i) => `txt TXT "${'t'.repeat(60)}${i}"`),
      ...Array.from({ length: 60 }, (_, i) => `many A 198.51.100.${i + 1}`),
      ...Array.from({ length: 60 }, (_, i) => `many AAAA 2001:db8::${(i + 1).toString(16)}`),
      ...Array.from({ length: 24 }, (_, i) => `deleg NS ns${i}.deleg`),
      ...Array.from({ length: 24 }, (_, i) => `ns${i}.deleg AAAA 2001:db8:1::${(i + 1).toString(16)}`),
      'alias CNAME many',
    ],
  } as { file?: string });
  const dir = mkdtempSync(join(tmpdir(), 'vigil-fuzz-'));
  try {
    writeFileSync(join(dir, 'vigil.yaml'), stringifyYaml(raw));
    const { config } = await loadConfig(join(dir, 'vigil.yaml'));
    return buildSnapshot(config);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A view of `buf` that counts reads of its elements. Everything else (length,
 * subarray, buffer) goes to the real buffer, so code under test behaves as
 * with the buffer itself.
 */
function counted(buf: Buffer): { view: Buffer; reads: () => number } {
  let n = 0;
  const view = new Proxy(buf, {
    get(target, prop) {
      if (typeof prop === 'string') {
        const c = prop.charCodeAt(0);
        if (c >= 0x30 && c <= 0x39) {
          n++;
          return target[Number(prop)];
        }
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { view, reads: () => n };
}

function hex(b: Uint8Array, max = 64): string {
  return Buffer.from(b.subarray(0, max)).toString('hex') + (b.length > max ? '…' : '');
}

/** Runs one message through parseQuery and `answer` over `transport` and checks every invariant. */
export function checkMessage(snap: Snapshot, msg: Buffer, transport: Transport, client = '192.0.2.1', answer: Responder = respond): CheckResult {
  const violations: Violation[] = [];
  const fail = (invariant: string, detail: string): void => {
    violations.push({ invariant, detail });
  };

  let parsed: ReturnType<typeof parseQuery>;
  const parseView = counted(msg);
  try {
    parsed = parseQuery(parseView.view, msg.length);
  } catch (err) {
    fail('parseQuery never throws', String(err));
    return { signature: `${transport}|parse-threw`, violations, reads: parseView.reads() };
  }
  const answerView = counted(msg);
  let out: Buffer | undefined;
  try {
    out = answer(answerView.view, msg.length, snap, transport, client);
  } catch (err) {
    fail('respond never throws', err instanceof Error ? (err.stack ?? err.message) : String(err));
    return { signature: `${transport}|respond-threw`, violations, reads: parseView.reads() + answerView.reads() };
  }
  const reads = parseView.reads() + answerView.reads();
  if (reads > READS_PER_OCTET * msg.length + READS_CONSTANT) {
    fail('bounded work', `${reads} reads of a ${msg.length}-octet input`);
  }

  const reason = parsed.kind === 'query' ? '' : parsed.reason.replace(/\d+/g, '#');
  if (parsed.kind === 'drop') {
    if (out !== undefined) fail('a dropped packet gets no answer', `${parsed.reason}, yet ${out.length} octets came back`);
    return { signature: `${transport}|drop|${reason}`, violations, reads };
  }
  if (out === undefined) {
    fail('every packet the parser accepts is answered', `${parsed.kind} ${reason}: no answer`);
    return { signature: `${transport}|${parsed.kind}|${reason}|silent`, violations, reads };
  }
  if (out.length < 12) {
    fail('an answer has a header', `${out.length} octets`);
    return { signature: `${transport}|${parsed.kind}|short`, violations, reads };
  }

  if (out.readUInt16BE(0) !== msg.readUInt16BE(0)) fail('ID echoed', `query ${msg.readUInt16BE(0)}, answer ${out.readUInt16BE(0)}`);
  if ((out[2]! & 0x80) === 0) fail('QR set', `flags ${out.readUInt16BE(2).toString(16)}`);
  if (((out[2]! >> 3) & 0x0f) !== parsed.opcode) fail('opcode echoed', `query ${parsed.opcode}, answer ${(out[2]! >> 3) & 0x0f}`);
  if (((out[2]! & 0x01) !== 0) !== parsed.rd) fail('RD copied', `query ${parsed.rd}`);
  if (((out[3]! & 0x10) !== 0) !== parsed.cd) fail('CD copied', `query ${parsed.cd}`);
  const rcode = out[3]! & 0x0f;
  if (parsed.kind === 'error' && rcode !== parsed.rcode) fail('an error answer carries the parser rcode', `${parsed.rcode} (${parsed.reason}), answer ${rcode}`);

  const qdcount = out.readUInt16BE(4);
  if (parsed.questionEnd > 0) {
    if (qdcount !== 1) fail('the question is echoed', `QDCOUNT ${qdcount}`);
    else if (!out.subarray(12, parsed.questionEnd).equals(msg.subarray(12, parsed.questionEnd))) {
      fail('the question is echoed as sent', `query ${hex(msg.subarray(12, parsed.questionEnd))}, answer ${hex(out.subarray(12, parsed.questionEnd))}`);
    }
  } else if (qdcount !== 0) fail('no question echoed when none parsed', `QDCOUNT ${qdcount}`);

  const edns = parsed.edns;
  const limit = transport === 'tcp' ? TCP_MAX : edns === undefined ? UDP_CLASSIC : Math.max(UDP_CLASSIC, Math.min(edns.payload, snap.udpPayload));
  if (out.length > limit) fail('within the size limit', `${out.length} octets over ${transport}, limit ${limit}`);
  const tc = (out[2]! & 0x02) !== 0;
  // Nothing in the example zones comes near 64 KiB: over TCP a truncated answer is a bug.
  if (tc && transport === 'tcp') fail('TCP answers are never truncated', `${out.length} octets`);

  let decoded: dnsPacket.Packet | undefined;
  try {
    decoded = dnsPacket.decode(out);
    if (dnsPacket.decode.bytes !== out.length) fail('dns-packet reads the whole answer', `${dnsPacket.decode.bytes} of ${out.length} octets`);
  } catch (err) {
    fail('dns-packet decodes the answer', `${String(err)}: ${hex(out, 128)}`);
  }
  let fullRcode = rcode;
  if (decoded !== undefined) {
    if (decoded.type !== 'response') fail('dns-packet sees a response', String(decoded.type));
    const opts = (decoded.additionals ?? []).filter((a): a is dnsPacket.OptAnswer => a.type === 'OPT');
    if ((opts.length === 1) !== (edns !== undefined)) fail('one OPT in the answer exactly when the query had one', `query ${edns !== undefined}, answer ${opts.length}`);
    fullRcode = ((opts[0]?.extendedRcode ?? 0) << 4) | rcode;
    // RFC 6891 6.1.3: an EDNS version we do not speak gets BADVERS (16), whatever the question.
    if (parsed.kind === 'query' && edns !== undefined && edns.version > 0 && fullRcode !== 16) fail('BADVERS for EDNS versions above 0', `rcode ${fullRcode}`);
  }

  const flags = `${out[2]! & 0x04 ? 'aa' : ''}${tc ? 'tc' : ''}`;
  const sections = `${out.readUInt16BE(6) > 0 ? 'an' : ''}${out.readUInt16BE(8) > 0 ? 'ns' : ''}${out.readUInt16BE(10) > (edns !== undefined ? 1 : 0) ? 'ar' : ''}`;
  const cookie = edns?.cookieLength === undefined ? '' : edns.cookieLength > 8 ? 'cookie+' : 'cookie';
  return {
    signature: `${transport}|${parsed.kind}|${reason}|rc${fullRcode}|${flags}|${sections}|${edns !== undefined ? `edns${edns.version > 0 ? 'v' : ''}` : ''}${cookie}`,
    violations,
    reads,
  };
}

/** Runs an input in its mode: one message over UDP or TCP, or each whole frame of a TCP stream. */
export function runInput(snap: Snapshot, input: FuzzInput, answer: Responder = respond): { signatures: string[]; violations: Violation[] } {
  const signatures: string[] = [];
  const violations: Violation[] = [];
  const msgs = input.mode === 'stream' ? frames(input.data) : [input.data];
  const transport: Transport = input.mode === 'udp' ? 'udp' : 'tcp';
  if (input.mode === 'stream') signatures.push(`stream|${Math.min(msgs.length, 3)} frames`);
  for (const m of msgs) {
    const r = checkMessage(snap, m, transport, '192.0.2.1', answer);
    signatures.push(r.signature);
    violations.push(...r.violations);
  }
  return { signatures, violations };
}

/** Name of a crash file: the input's hash, so one crash is saved once. */
export function crashName(data: Uint8Array): string {
  return `${createHash('sha256').update(data).digest('hex').slice(0, 16)}.bin`;
}

export interface Finding {
  readonly input: FuzzInput;
  readonly violations: Violation[];
}

/**
 * A fuzzing campaign: seeds, the inputs kept for reaching new signatures, and
 * the signatures seen. Deterministic for a seed (respond()'s own state is too,
 * for one sequence of calls in a fresh process).
 */
export class Campaign {
  readonly corpus: FuzzInput[];
  readonly signatures = new Set<string>();
  readonly findings: Finding[] = [];
  iterations = 0;
  /** Inputs added to the corpus for a new signature. */
  kept = 0;
  private readonly rng: Rng;

  constructor(
    private readonly snap: Snapshot,
    seeds: readonly FuzzInput[],
    seed: number,
    private readonly answer: Responder = respond,
  ) {
    this.rng = new Rng(seed);
    this.corpus = [...seeds];
    for (const s of seeds) this.run(s);
  }

  /** Runs one input in every transport it fits: a message over UDP and TCP, a stream as a stream. */
  private run(input: FuzzInput): boolean {
    const inputs: FuzzInput[] = input.mode === 'stream' ? [input] : [{ data: input.data, mode: 'udp' }, { data: input.data, mode: 'tcp' }];
    let novel = false;
    for (const i of inputs) {
      const r = runInput(this.snap, i, this.answer);
      for (const s of r.signatures) {
        if (!this.signatures.has(s)) {
          this.signatures.add(s);
          novel = true;
        }
      }
      if (r.violations.length > 0) this.findings.push({ input: i, violations: r.violations });
    }
    return novel;
  }

  /** One mutated input; kept when it reached something new. */
  step(): void {
    this.iterations++;
    const parent = this.rng.pick(this.corpus);
    const other = this.rng.pick(this.corpus);
    const child = mutate(this.rng, parent, other);
    if (this.run(child) && this.corpus.length < 20_000) {
      this.corpus.push(child);
      this.kept++;
    }
  }
}
