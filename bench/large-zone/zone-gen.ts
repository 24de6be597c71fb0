// A large, deterministic master file: `big.test.` with exactly N records, most
// of them A and AAAA, some MX, TXT and CNAME, as a hosting provider's zone
// looks. The same N always gives the same bytes, so runs compare.

import { closeSync, openSync, writeSync } from 'node:fs';

export interface ZoneCounts {
  readonly total: number;
  readonly byType: Readonly<Record<string, number>>;
  readonly names: number;
  readonly bytes: number;
}

export const BIG_ORIGIN = 'big.test.';

/** The host name of record group k (h0 … hN): every group starts with its A record. */
export function hostName(k: number): string {
  return `h${k}.${BIG_ORIGIN}`;
}

class TooFewRecords extends Error {
  override name = 'TooFewRecords';
}

/** Writes the zone to `file`; `records` counts every record, SOA and NS included. */
export function writeBigZone(file: string, records: number): ZoneCounts & { readonly lastHost: number } {
  const head = [
    `$ORIGIN ${BIG_ORIGIN}`,
    '$TTL 3600',
    '@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300',
    '@ IN NS ns1',
    '@ IN NS ns2',
    'ns1 IN A 192.0.2.1',
    'ns2 IN A 192.0.2.2',
  ];
  const fixed = head.length - 2;
  if (records < fixed + 1) throw new TooFewRecords(`--records must be at least ${fixed + 1} (SOA, NS, glue and one host)`);
  const byType: Record<string, number> = { SOA: 1, NS: 2, A: 2, AAAA: 0, MX: 0, TXT: 0, CNAME: 0 };
  let count = fixed;
  let names = 3;
  let bytes = 0;
  let lastHost = 0;

  const fd = openSync(file, 'w');
  try {
    let chunk = `${head.join('\n')}\n`;
    const flush = (): void => {
      bytes += writeSync(fd, chunk);
      chunk = '';
    };
    const add = (type: string, line: string): boolean => {
      if (count >= records) return false;
      chunk += `${line}\n`;
      count++;
      byType[type] = (byType[type] ?? 0) + 1;
      return true;
    };
    for (let k = 0; count < records; k++) {
      // 10.x.y.z and 2001:db8::k are unique per host, so no RRset merges identical records.
      if (!add('A', `h${k} IN A 10.${(k >>> 16) & 255}.${(k >>> 8) & 255}.${k & 255}`)) break;
      names++;
      lastHost = k;
      if (k % 3 === 0) add('AAAA', `h${k} IN AAAA 2001:db8::${(k >>> 16).toString(16)}:${(k & 0xffff).toString(16)}`);
      if (k % 10 === 5) add('TXT', `h${k} IN TXT "host ${k}" "v=bench1"`);
      if (k % 20 === 0) add('MX', `h${k} IN MX 10 h${k + 1}`);
      if (k % 25 === 7 && add('CNAME', `c${k} IN CNAME h${k}`)) names++;
      if (chunk.length > 1 << 20) flush();
    }
    flush();
  } finally {
    closeSync(fd);
  }
  return { total: count, byType, names, bytes, lastHost };
}
