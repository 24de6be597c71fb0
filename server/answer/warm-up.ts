// Answers made-up questions about the snapshot's own names before the first
// real one arrives. V8 runs new code in its interpreter and compiles it only
// once it is hot; without this, the first queries after a start pay for that
// in the answering code. It does not warm Node's own dgram path: a fresh
// process still answers its first seconds slower, as the bare Node floor of
// bench/peers does (at 20k q/s, a first 10 s run averaged 0.2-0.3 ms against
// 0.06-0.09 ms later, for both). The answers go nowhere and are counted
// nowhere: respond() is pure, and no transport or observer is involved.

import { respond } from './respond.js';
import type { Snapshot } from './snapshot.js';
import { TYPE } from '../wire/constants.js';

/** Names per zone asked about, questions in all (a config of a thousand zones warms up as fast as one of ten), and how often each is asked. */
const NAMES_PER_ZONE = 32;
const MAX_QUESTIONS = 2048;
const ROUNDS = 20;

const OPT_RR = Buffer.from([0, 0, TYPE.OPT >> 8, TYPE.OPT & 0xff, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]); // payload 1232, DO

function question(id: number, nameKey: string, qtype: number, edns: boolean, upper: boolean): Buffer {
  const name = Buffer.from(nameKey, 'latin1');
  if (upper) for (let i = 0; i < name.length; i++) if (name[i]! >= 0x61 && name[i]! <= 0x7a) name[i] = name[i]! - 0x20;
  const msg = Buffer.alloc(12 + name.length + 4 + (edns ? OPT_RR.length : 0));
  msg.writeUInt16BE(id, 0);
  msg.writeUInt16BE(1, 4);
  if (edns) msg.writeUInt16BE(1, 10);
  name.copy(msg, 12);
  msg.writeUInt16BE(qtype, 12 + name.length);
  msg.writeUInt16BE(1, 14 + name.length);
  if (edns) OPT_RR.copy(msg, 16 + name.length);
  return msg;
}

/**
 * Asks, for up to NAMES_PER_ZONE names of every zone of the view `client`
 * falls in, plus a name that does not exist, A, AAAA, MX and TXT, with and
 * without EDNS, in lower and upper case (at most MAX_QUESTIONS), ROUNDS
 * times. Returns how many were answered (for tests); tens of ms in all.
 */
export function warmUp(snap: Snapshot, client = '127.0.0.1'): number {
  const view = snap.views[Math.max(0, snap.matchView(client))];
  if (view === undefined) return 0;
  const questions: Buffer[] = [];
  let id = 0;
  for (const zone of view.zones.values()) {
    if (questions.length >= MAX_QUESTIONS) break;
    const names: string[] = [`\u0007warm-up${zone.origin}`];
    for (const owner of zone.nodes.keys()) {
      if (names.length > NAMES_PER_ZONE) break;
      names.push(owner);
    }
    for (const name of names) {
      for (const qtype of [TYPE.A, TYPE.AAAA, TYPE.MX, TYPE.TXT]) {
        for (const edns of [false, true]) questions.push(question(id++ & 0xffff, name, qtype, edns, (id & 1) === 1));
      }
    }
  }
  let answered = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (const q of questions) if (respond(q, q.length, snap, 'udp', client) !== undefined) answered++;
  }
  return answered;
}
