import t from 'tap';
import { parseMasterFile, parseMasterFileCollect, ZoneFileError, ZoneFileErrors, type MasterFileOptions } from '../zones/masterfile.js';
import { formatRdata } from '../zones/rdata-text.js';
import { formatName, parseName } from '../server/wire/name.js';
import { DnsError } from '../server/wire/errors.js';
import { TYPE } from '../server/wire/constants.js';
import type { ZoneRecord } from '../zones/record.js';
import { reference } from './helpers/reference-rdata.js';

const ORIGIN = parseName('example.test.');
const OPTS: MasterFileOptions = { origin: ORIGIN, file: 'example.zone' };


/** Compact view of a record for assertions. */
function show(r: ZoneRecord): string {
  return `${r.where.line} ${formatName(r.owner)} ${r.ttl} ${r.type} ${formatRdata(r.type, r.rdata)}`;
}

function parse(text: string, opts: Partial<MasterFileOptions> = {}): ZoneRecord[] {
  return parseMasterFile(text, { ...OPTS, ...opts });
}

function errorsOf(text: string, opts: Partial<MasterFileOptions> = {}): string[] {
  return parseMasterFileCollect(text, { ...OPTS, ...opts }).errors.map((e) => e.message);
}

t.test('one record per line, owners lowercased, class IN', async (t) => {
  const rs = parse('WWW.Example.TEST. 300 IN A 192.0.2.1\n');
  t.equal(rs.length, 1);
  const r = rs[0]!;
  t.equal(r.owner, parseName('www.example.test.'));
  t.equal(r.type, TYPE.A);
  t.equal(r.class, 1);
  t.equal(r.ttl, 300);
  t.same(Buffer.from(r.rdata), Buffer.from([192, 0, 2, 1]));
  t.same(r.where, { file: 'example.zone', line: 1 });
});

t.test('names in rdata keep their case', async (t) => {
  const [r] = parse('$TTL 60\n@ MX 10 Mail.Example.TEST.\n');
  t.same(Buffer.from(r!.rdata), reference({ type: 'MX', data: { preference: 10, exchange: 'Mail.Example.TEST' } }));
});

t.test('TTL and class are optional and may come in either order', async (t) => {
  const rs = parse(['$TTL 1h', 'a 300 IN A 192.0.2.1', 'b IN 300 A 192.0.2.2', 'c A 192.0.2.3', 'd 5m A 192.0.2.4', 'e in a 192.0.2.5', 'f CLASS1 60 A 192.0.2.6'].join('\n'));
  t.same(
    rs.map((r) => [formatName(r.owner), r.ttl]),
    [
      ['a.example.test.', 300],
      ['b.example.test.', 300],
      ['c.example.test.', 3600],
      ['d.example.test.', 300],
      ['e.example.test.', 3600],
      ['f.example.test.', 60],
    ],
  );
});

t.test('@, relative names and $ORIGIN', async (t) => {
  const rs = parse(
    [
      '$TTL 60',
      '@ NS ns1',
      'www CNAME @',
      '$ORIGIN sub', // relative to example.test.
      '@ A 192.0.2.1',
      'host A 192.0.2.2',
      'alias CNAME host',
      '$ORIGIN Other.TEST.',
      'x PTR y',
      '@ A 192.0.2.3',
    ].join('\n'),
  );
  t.same(rs.map(show), [
    '2 example.test. 60 2 ns1.example.test.',
    '3 www.example.test. 60 5 example.test.',
    '5 sub.example.test. 60 1 192.0.2.1',
    '6 host.sub.example.test. 60 1 192.0.2.2',
    '7 alias.sub.example.test. 60 5 host.sub.example.test.',
    '9 x.other.test. 60 12 y.Other.TEST.',
    '10 other.test. 60 1 192.0.2.3',
  ]);
});

t.test('an omitted owner repeats the previous one', async (t) => {
  const rs = parse(['$TTL 60', 'www A 192.0.2.1', '    A 192.0.2.2', '\tAAAA 2001:db8::1', '\t300 IN TXT x', '$TTL 30', ' A 192.0.2.3'].join('\n'));
  t.same(
    rs.map((r) => [formatName(r.owner), r.type, r.ttl, r.where.line]),
    [
      ['www.example.test.', 1, 60, 2],
      ['www.example.test.', 1, 60, 3],
      ['www.example.test.', 28, 60, 4],
      ['www.example.test.', 16, 300, 5],
      ['www.example.test.', 1, 30, 7],
    ],
  );
  t.same(errorsOf(' A 192.0.2.1', { defaultTtl: 1 }), ['example.zone:1: no owner name: the first record must start with one']);
});

t.test('parentheses, comments, blank lines and CRLF', async (t) => {
  const text = [
    '; leading comment',
    '',
    '$TTL 60 ; trailing comment on a directive',
    '@ IN SOA ns1 hostmaster ( ; comment inside',
    '        2024010101 ; serial',
    '',
    '        1h  ; refresh',
    '        15m 1w',
    '        5m )',
    '   ',
    'txt TXT "semi;colon" ( "paren(" ")" ) ; real comment "with quotes"',
    'multi ( A',
    '  192.0.2.9 )',
  ].join('\r\n');
  const rs = parse(text);
  t.same(rs.map(show), [
    '4 example.test. 60 6 ns1.example.test. hostmaster.example.test. 2024010101 3600 900 604800 300',
    '11 txt.example.test. 60 16 "semi;colon" "paren(" ")"',
    '12 multi.example.test. 60 1 192.0.2.9',
  ]);
});

t.test('quoted strings and escapes', async (t) => {
  const rs = parse(['$TTL 60', 'a TXT "a\\"b" "back\\\\slash" "\\065\\066C" "tab\\009" unq\\"uoted', 'b TXT "" ""', 'c TXT "one"two', 'd\\.e A 192.0.2.1'].join('\n'));
  t.same(Buffer.from(rs[0]!.rdata), reference({ type: 'TXT', data: ['a"b', 'back\\slash', 'ABC', 'tab\t', 'unq"uoted'] }));
  t.same(Buffer.from(rs[1]!.rdata), reference({ type: 'TXT', data: [Buffer.alloc(0), Buffer.alloc(0)] }));
  t.same(Buffer.from(rs[2]!.rdata), reference({ type: 'TXT', data: ['one', 'two'] }), 'a quote starts a new field, as in BIND');
  t.equal(rs[3]!.owner, '\x03d.e' + ORIGIN, 'escaped dot in an owner');
});

t.test('TTL rules', async (t) => {
  // $TTL applies to later records only and can change.
  t.same(
    parse('$TTL 1h\na A 192.0.2.1\n$TTL 2m\nb A 192.0.2.2\nc 7 A 192.0.2.3').map((r) => r.ttl),
    [3600, 120, 7],
  );
  // No $TTL: the SOA takes its own MINIMUM, later records too (BIND's legacy rule).
  t.same(
    parse('@ SOA ns1 hm 1 2 3 4 600\n@ NS ns1\nwww 30 A 192.0.2.1\nx A 192.0.2.2').map((r) => r.ttl),
    [600, 600, 30, 600],
  );
  // An explicit SOA TTL does not replace MINIMUM as the fallback.
  t.same(parse('@ 100 SOA ns1 hm 1 2 3 4 1h\nx A 192.0.2.2').map((r) => r.ttl), [100, 3600]);
  // $TTL beats the SOA rule.
  t.same(parse('@ SOA ns1 hm 1 2 3 4 600\n$TTL 5\nx A 192.0.2.2').map((r) => r.ttl), [600, 5]);
  // The caller's default works like an initial $TTL.
  t.same(parse('x A 192.0.2.2\n$TTL 9\ny A 192.0.2.3', { defaultTtl: 77 }).map((r) => r.ttl), [77, 9]);
  // Nothing to go on before the SOA.
  t.same(errorsOf('x A 192.0.2.2\n@ SOA ns1 hm 1 2 3 4 600'), ['example.zone:1: no TTL: give one on the record, set $TTL, or start the zone with its SOA']);
  t.same(errorsOf('$TTL 2147483648\n$TTL 1h30\n$TTL\n$TTL 1 2\n$TTL "5"'), [
    'example.zone:1: bad TTL "2147483648": more than 2147483647 seconds',
    'example.zone:2: bad TTL "1h30": the last number needs a unit (s, m, h, d or w)',
    'example.zone:3: $TTL takes exactly one argument',
    'example.zone:4: $TTL takes exactly one argument',
    'example.zone:5: $TTL argument must not be quoted',
  ]);
  t.same(errorsOf('x 1y A 192.0.2.1\ny 5 6 A 192.0.2.1', { defaultTtl: 1 }), [
    'example.zone:1: bad TTL "1y": unknown unit "y" (use s, m, h, d or w)',
    'example.zone:2: TTL given twice ("5" and "6")',
  ]);
});

t.test('only class IN is served', async (t) => {
  t.same(errorsOf('a CH TXT x\nb 60 HS A 192.0.2.1\nc CLASS3 A 192.0.2.1\nd ANY A 192.0.2.1\ne IN CH A 192.0.2.1', { defaultTtl: 1 }), [
    'example.zone:1: class CH is not supported: Vigil serves only class IN',
    'example.zone:2: class HS is not supported: Vigil serves only class IN',
    'example.zone:3: class CLASS3 is not supported: Vigil serves only class IN',
    'example.zone:4: class ANY is not supported: Vigil serves only class IN',
    'example.zone:5: class given twice ("IN" and "CH")',
  ]);
});

t.test('directives', async (t) => {
  t.same(errorsOf('$INCLUDE other.zone\n$GENERATE 1-3 h$ A 192.0.2.$\n$FOO bar\n$ORIGIN\n$ORIGIN a..b\n  $TTL 5', { defaultTtl: 1 }), [
    'example.zone:1: $INCLUDE is not supported: list each file as its own zone source in the configuration',
    'example.zone:2: $GENERATE is not supported: write the records out',
    'example.zone:3: unknown directive $FOO',
    'example.zone:4: $ORIGIN takes exactly one argument',
    'example.zone:5: bad $ORIGIN "a..b": empty label in name "a..b"',
    'example.zone:6: no owner name: the first record must start with one',
  ]);
  t.same(errorsOf('x A 192.0.2.1\n  $TTL 5', { defaultTtl: 1 }), ['example.zone:2: directive $TTL must start at the beginning of a line']);
  t.same(parse('$ttl 5\n$origin foo.\n@ a 192.0.2.1').map(show), ['3 foo. 5 1 192.0.2.1'], 'directive names are case-insensitive');
});

t.test('record syntax errors carry file and line', async (t) => {
  const text = [
    '$TTL 60',
    'ok A 192.0.2.1',
    'bad1 A 192.0.2.256',
    'bad2 MX 70000 mx',
    'bad3 FOO 1',
    'bad4',
    'bad5 60 IN',
    '"quoted" A 192.0.2.1',
    'a..b A 192.0.2.1',
    'bad6 TXT "never closed',
    'ok2 A 192.0.2.2',
    'bad7 SOA ns1 hm (',
    '   1 2 3 4 )) ',
    'bad8 A ( 192.0.2.1',
    '',
    'x "A" 192.0.2.1',
    'bad9 TLSA 3 1 1 abcd',
    'bad10 OPT \\# 0',
    'bad11 TYPE99999 \\# 0',
  ].join('\n');
  const { records, errors } = parseMasterFileCollect(text, OPTS);
  t.same(records.map((r) => formatName(r.owner)), ['ok.example.test.', 'ok2.example.test.']);
  t.same(
    errors.map((e) => e.message),
    [
      'example.zone:3: A: bad address "192.0.2.256": not a dotted-quad IPv4 address',
      'example.zone:4: MX: bad preference "70000": must be a number from 0 to 65535',
      'example.zone:5: unknown record type "FOO" (write TYPEnnn with RFC 3597 \\# rdata for types without a mnemonic)',
      'example.zone:6: missing record type',
      'example.zone:7: missing record type',
      'example.zone:8: owner name "quoted" must not be quoted',
      'example.zone:9: bad owner name "a..b": empty label in name "a..b"',
      'example.zone:10: unterminated quoted string (a string cannot span lines; write a newline as \\010)',
      'example.zone:12: unbalanced ")" with no "(" open',
      'example.zone:14: "(" opened on line 14 is never closed',
    ],
  );
  // The unclosed "(" swallows the rest of the file, so check the tail separately.
  t.same(errorsOf(['$TTL 60', 'x "A" 192.0.2.1', 'bad9 TLSA 3 1 1 abcd', 'bad10 OPT \\# 0', 'bad11 TYPE99999 \\# 0'].join('\n')), [
    'example.zone:2: record type "A" must not be quoted',
    'example.zone:3: TLSA: Vigil has no presentation format for this type; write its rdata in RFC 3597 generic form (\\# <length> <hex>)',
    'example.zone:4: OPT is a reserved or meta type and cannot appear in zone data',
    'example.zone:5: bad type "TYPE99999": TYPEnnn needs a number from 0 to 65535',
  ]);
  for (const e of errors) {
    t.type(e, ZoneFileError);
    t.type(e, DnsError);
    t.equal(e.file, 'example.zone');
    t.match(e.message, new RegExp(`^example\\.zone:${e.line}: ${e.detail.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
  }
});

t.test('a malformed owner is reported once, not again for each omitted owner after it', async (t) => {
  t.same(errorsOf('$TTL 5\na..b A 192.0.2.1\n  A 192.0.2.2\n  A 192.0.2.999\nok A 192.0.2.3\n  A 192.0.2.4'), [
    'example.zone:2: bad owner name "a..b": empty label in name "a..b"',
    'example.zone:4: A: bad address "192.0.2.999": not a dotted-quad IPv4 address',
  ]);
  const { records } = parseMasterFileCollect('$TTL 5\na..b A 192.0.2.1\n  A 192.0.2.2\nok A 192.0.2.3\n  A 192.0.2.4', OPTS);
  t.same(records.map((r) => r.where.line), [4, 5]);
});

t.test('parseMasterFile throws every error at once', async (t) => {
  const text = '$TTL 5\nbad1 A 1\nok A 192.0.2.1\nbad2 A 2\n';
  const err = t.throws(() => parse(text)) as unknown;
  t.type(err, ZoneFileErrors);
  t.type(err, DnsError);
  const errs = err as ZoneFileErrors;
  t.equal(errs.errors.length, 2);
  t.same(errs.errors.map((e) => e.line), [2, 4]);
  t.equal(errs.file, 'example.zone');
  t.equal(
    errs.message,
    '2 errors in example.zone:\n  example.zone:2: A: bad address "1": not a dotted-quad IPv4 address\n  example.zone:4: A: bad address "2": not a dotted-quad IPv4 address',
  );
  const many = Array.from({ length: 60 }, (_, i) => `b${i} A x`).join('\n');
  const big = t.throws(() => parse(many, { defaultTtl: 1 })) as ZoneFileErrors;
  t.equal(big.errors.length, 60);
  t.match(big.message, /^60 errors in example\.zone:\n/);
  t.match(big.message, /\n {2}\.\.\. and 10 more$/);
});

t.test('firstLine: one-line records embedded in YAML', async (t) => {
  const [r] = parse('www 300 IN A 192.0.2.1', { file: 'vigil.yaml', firstLine: 42 });
  t.same(r!.where, { file: 'vigil.yaml', line: 42 });
  t.equal(r!.owner, parseName('www.example.test.'));
  t.same(errorsOf('www 300 IN A 192.0.2', { file: 'vigil.yaml', firstLine: 42 }), ['vigil.yaml:42: A: bad address "192.0.2": not a dotted-quad IPv4 address']);
  t.same(errorsOf('\n\nwww IN A 192.0.2.1', { file: 'vigil.yaml', firstLine: 10 }), ['vigil.yaml:12: no TTL: give one on the record, set $TTL, or start the zone with its SOA']);
  t.same(parse('', { file: 'vigil.yaml' }), []);
  t.same(parse('  ; only a comment\n\n', { file: 'vigil.yaml' }), []);
});

t.test('a byte order mark is not part of the first owner', async (t) => {
  t.same(parse('\uFEFFwww 1 A 192.0.2.1').map((r) => formatName(r.owner)), ['www.example.test.']);
});

t.test('a realistic zone', async (t) => {
  const longText = 'v=DKIM1; k=rsa; p=' + 'A'.repeat(400);
  const text = [
    '; example.test, hand-written',
    '$ORIGIN example.test.',
    '$TTL 1h',
    '@   IN  SOA ns1.example.test. hostmaster.example.test. (',
    '            2024060101 ; serial',
    '            2h         ; refresh',
    '            30m        ; retry',
    '            2w         ; expire',
    '            5m )       ; negative caching TTL',
    '        IN  NS  ns1',
    '        IN  NS  ns2.example.net.',
    '        IN  MX  10 Mail ; case kept in rdata',
    '        IN  CAA 0 issue "ca.example.net"',
    'ns1     IN  A   192.0.2.53',
    '        IN  AAAA 2001:db8::53',
    'www 300     A   192.0.2.80 ; web',
    '    IN 300  AAAA 2001:db8::80',
    'txt     TXT "a\\"b" "c;d" \\065',
    'dkim._domainkey TXT ( "' + longText.slice(0, 200) + '"',
    '                      "' + longText.slice(200) + '" )',
    'sip._udp SRV 10 60 5060 sip.example.test.',
    'x       TYPE65534 \\# 4 0a000001',
    '$ORIGIN 2.0.192.in-addr.arpa.',
    '$TTL 1d',
    '80      PTR www.example.test.',
    '53      PTR ns1.example.test.',
    '',
  ].join('\r\n');
  const rs = parse(text, { origin: parseName('wrong.origin.') });
  const expected: Array<[number, string, number, number, Buffer]> = [
    [4, 'example.test.', 3600, TYPE.SOA, reference({ type: 'SOA', data: { mname: 'ns1.example.test', rname: 'hostmaster.example.test', serial: 2024060101, refresh: 7200, retry: 1800, expire: 1209600, minimum: 300 } })],
    [10, 'example.test.', 3600, TYPE.NS, reference({ type: 'NS', data: 'ns1.example.test' })],
    [11, 'example.test.', 3600, TYPE.NS, reference({ type: 'NS', data: 'ns2.example.net' })],
    [12, 'example.test.', 3600, TYPE.MX, reference({ type: 'MX', data: { preference: 10, exchange: 'Mail.example.test' } })],
    [13, 'example.test.', 3600, TYPE.CAA, reference({ type: 'CAA', data: { flags: 0, tag: 'issue', value: 'ca.example.net' } })],
    [14, 'ns1.example.test.', 3600, TYPE.A, reference({ type: 'A', data: '192.0.2.53' })],
    [15, 'ns1.example.test.', 3600, TYPE.AAAA, reference({ type: 'AAAA', data: '2001:db8::53' })],
    [16, 'www.example.test.', 300, TYPE.A, reference({ type: 'A', data: '192.0.2.80' })],
    [17, 'www.example.test.', 300, TYPE.AAAA, reference({ type: 'AAAA', data: '2001:db8::80' })],
    [18, 'txt.example.test.', 3600, TYPE.TXT, reference({ type: 'TXT', data: ['a"b', 'c;d', 'A'] })],
    [19, 'dkim._domainkey.example.test.', 3600, TYPE.TXT, reference({ type: 'TXT', data: [longText.slice(0, 200), longText.slice(200)] })],
    [21, 'sip._udp.example.test.', 3600, TYPE.SRV, reference({ type: 'SRV', data: { priority: 10, weight: 60, port: 5060, target: 'sip.example.test' } })],
    [22, 'x.example.test.', 3600, 65534, Buffer.from([10, 0, 0, 1])],
    [25, '80.2.0.192.in-addr.arpa.', 86400, TYPE.PTR, reference({ type: 'PTR', data: 'www.example.test' })],
    [26, '53.2.0.192.in-addr.arpa.', 86400, TYPE.PTR, reference({ type: 'PTR', data: 'ns1.example.test' })],
  ];
  t.equal(rs.length, expected.length);
  rs.forEach((r, i) => {
    const [line, owner, ttl, type, rdata] = expected[i]!;
    t.same([r.where.line, formatName(r.owner), r.ttl, r.type, r.class], [line, owner, ttl, type, 1], `record ${i} header`);
    t.same(Buffer.from(r.rdata), rdata, `record ${i} rdata (${formatRdata(r.type, r.rdata)})`);
    t.same(r.where.file, 'example.zone');
  });
});

t.test('a large file parses completely, with line numbers kept', async (t) => {
  // No timing here (speed is measured in bench/, never asserted in tests); a
  // quadratic lexer would still show up as this file hitting tap's timeout.
  const n = 50_000;
  const lines = ['$TTL 300', '@ SOA ns1 hm 1 2 3 4 5'];
  for (let i = 0; i < n; i++) lines.push(`h${i} IN A 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}\n  TXT "record ${i}"`);
  const rs = parse(lines.join('\n'));
  t.equal(rs.length, 2 * n + 1);
  t.equal(rs[rs.length - 1]!.where.line, 2 * n + 2);
  t.equal(formatName(rs[rs.length - 1]!.owner), `h${n - 1}.example.test.`);
});
