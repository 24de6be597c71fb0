// Rdata as the independent dns-packet library encodes it, to check ours against.

import dnsPacket from 'dns-packet';

// Omit over a union must distribute, or every member loses its own `data`.
export type AnswerWithoutName = dnsPacket.Answer extends infer A ? (A extends unknown ? Omit<A, 'name'> : never) : never;

/**
 * A response whose only answer is owned by the root: the 12-octet header,
 * 1-octet name and 10 octets of type, class, TTL and rdlength put the rdata at
 * offset 23. dns-packet never compresses.
 */
export function reference(answer: AnswerWithoutName): Buffer {
  const buf = dnsPacket.encode({ type: 'response', answers: [{ ...answer, name: '.' } as dnsPacket.Answer] });
  const rdlength = buf.readUInt16BE(21);
  if (buf.length !== 23 + rdlength) throw new Error('unexpected dns-packet layout');
  return buf.subarray(23, 23 + rdlength);
}
