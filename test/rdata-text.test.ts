import t from 'tap';
import { formatRdata, parseIPv6, parseRdata, parseTtl, typeFromText, type RdataInput } from '../zones/rdata-text.js';
import { parseName } from '../server/wire/name.js';
import { DnsError } from '../server/wire/errors.js';
import { TYPE } from '../server/wire/constants.js';
import { reference } from './helpers/reference-rdata.js';

const ORIGIN = parseName('example.test.');
const q = (text: string): RdataInput => ({ text, quoted: true });


function ours(type: number, fields: readonly RdataInput[]): Buffer {
  return Buffer.from(parseRdata(type, fields, ORIGIN));
}

t.test('A and AAAA match dns-packet', async (t) => {
  t.same(ours(TYPE.A, ['192.0.2.1']), reference({ type: 'A', data: '192.0.2.1' }));
  t.same(ours(TYPE.A, ['0.0.0.0']), reference({ type: 'A', data: '0.0.0.0' }));
  t.same(ours(TYPE.A, ['255.255.255.255']), reference({ type: 'A', data: '255.255.255.255' }));
  for (const addr of [
    '2001:db8::1',
    '::',
    '::1',
    '1::',
    'fe80::',
    '2001:DB8:0:0:8:800:200C:417A',
    '2001:db8:0:1:1:1:1:1',
    '1:2:3:4:5:6:7::',
    '::ffff:192.0.2.128',
    '64:ff9b::198.51.100.7',
    '1:2:3:4:5:6:192.0.2.1',
    'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
  ]) {
    t.same(ours(TYPE.AAAA, [addr]), reference({ type: 'AAAA', data: addr }), addr);
  }
  // dns-packet's codec gets a "::" standing for a single leading group wrong
  // (it yields 0:0:2:...:7), so this one is checked against literal bytes.
  t.same(ours(TYPE.AAAA, ['::2:3:4:5:6:7:8']), Buffer.from('00000002000300040005000600070008', 'hex'));
  t.same(ours(TYPE.AAAA, ['1:2:3::5:6:7:8']), Buffer.from('00010002000300000005000600070008', 'hex'));
});

t.test('IPv6 parser rejects malformed addresses', async (t) => {
  for (const bad of ['1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', ':::', '12345::', 'fe80::1%eth0', '::1.2.3', '::1.2.3.4.5', 'g::1', '1.2.3.4', '']) {
    t.throws(() => parseIPv6(bad), DnsError, bad);
    t.throws(() => parseRdata(TYPE.AAAA, [bad], ORIGIN), /AAAA: bad address/, bad);
  }
  t.throws(() => parseRdata(TYPE.AAAA, ['::1', '::2'], ORIGIN), /AAAA: unexpected extra field "::2"/);
});

t.test('A rejects malformed addresses', async (t) => {
  for (const bad of ['1.2.3', '1.2.3.256', '1.2.3.4.5', '01.2.3.4', 'a.b.c.d', '::1', '']) {
    t.throws(() => parseRdata(TYPE.A, [bad], ORIGIN), /^A: bad address/, bad);
  }
  t.throws(() => parseRdata(TYPE.A, [], ORIGIN), /A: missing address/);
  t.throws(() => parseRdata(TYPE.A, [q('192.0.2.1')], ORIGIN), /must not be quoted/);
});

t.test('single-name types match dns-packet and keep case', async (t) => {
  for (const [type, name] of [
    [TYPE.NS, 'NS'],
    [TYPE.CNAME, 'CNAME'],
    [TYPE.PTR, 'PTR'],
  ] as const) {
    t.same(ours(type, ['Ns1.Example.TEST.']), reference({ type: name, data: 'Ns1.Example.TEST' }), `${name} absolute`);
    t.same(ours(type, ['host']), reference({ type: name, data: 'host.example.test' }), `${name} relative`);
    t.same(ours(type, ['@']), reference({ type: name, data: 'example.test' }), `${name} @`);
    t.same(ours(type, ['.']), reference({ type: name, data: '.' }), `${name} root`);
  }
  // Escapes are the name parser's job; check the bytes directly.
  t.same(ours(TYPE.CNAME, ['a\\.b.test.']), Buffer.from('\x03a.b\x04test\x00', 'latin1'));
  t.same(ours(TYPE.PTR, ['\\065.test.']), Buffer.from('\x01A\x04test\x00', 'latin1'));
  t.throws(() => parseRdata(TYPE.NS, ['a..b.'], ORIGIN), /NS: bad target name "a\.\.b\.": empty label/);
  t.throws(() => parseRdata(TYPE.CNAME, ['x'.repeat(64) + '.'], ORIGIN), /CNAME: bad target name/);
  t.throws(() => parseRdata(TYPE.NS, [q('ns1.example.test.')], ORIGIN), /NS: bad target name .*must not be quoted/);
  t.throws(() => parseRdata(TYPE.NS, ['a.', 'b.'], ORIGIN), /NS: unexpected extra field "b\."/);
});

t.test('DNAME and HINFO match dns-packet', async (t) => {
  t.same(ours(TYPE.DNAME, ['Target.example.']), reference({ type: 'DNAME', data: 'Target.example' }));
  t.same(ours(TYPE.HINFO, [q('PDP 11'), 'UNIX']), reference({ type: 'HINFO', data: { cpu: 'PDP 11', os: 'UNIX' } }));
  t.throws(() => parseRdata(TYPE.HINFO, [q('x')], ORIGIN), /HINFO: missing os/);
});

t.test('MX matches dns-packet', async (t) => {
  t.same(ours(TYPE.MX, ['10', 'Mail.Example.test.']), reference({ type: 'MX', data: { preference: 10, exchange: 'Mail.Example.test' } }));
  t.same(ours(TYPE.MX, ['0', 'mx']), reference({ type: 'MX', data: { preference: 0, exchange: 'mx.example.test' } }));
  t.same(ours(TYPE.MX, ['65535', '.']), reference({ type: 'MX', data: { preference: 65535, exchange: '.' } }));
  t.throws(() => parseRdata(TYPE.MX, ['65536', 'mx'], ORIGIN), /MX: bad preference "65536": must be a number from 0 to 65535/);
  t.throws(() => parseRdata(TYPE.MX, ['-1', 'mx'], ORIGIN), /MX: bad preference "-1"/);
  t.throws(() => parseRdata(TYPE.MX, ['ten', 'mx'], ORIGIN), /MX: bad preference "ten"/);
  t.throws(() => parseRdata(TYPE.MX, ['10'], ORIGIN), /MX: missing exchange/);
});

t.test('SOA matches dns-packet, timers take units, serial does not', async (t) => {
  const expected = reference({
    type: 'SOA',
    data: { mname: 'ns1.example.test', rname: 'hostmaster.example.test', serial: 2024010101, refresh: 3600, retry: 900, expire: 1209600, minimum: 300 },
  });
  t.same(ours(TYPE.SOA, ['ns1', 'hostmaster', '2024010101', '3600', '900', '1209600', '300']), expected);
  t.same(ours(TYPE.SOA, ['ns1.example.test.', 'hostmaster.example.test.', '2024010101', '1h', '15M', '2w', '5m']), expected);
  t.same(
    ours(TYPE.SOA, ['ns1', 'hostmaster', '4294967295', '1d12h', '0', '4294967295', '1w1d']),
    reference({
      type: 'SOA',
      data: { mname: 'ns1.example.test', rname: 'hostmaster.example.test', serial: 4294967295, refresh: 129600, retry: 0, expire: 4294967295, minimum: 691200 },
    }),
  );
  t.throws(() => parseRdata(TYPE.SOA, ['ns1', 'hm', '1h', '1', '1', '1', '1'], ORIGIN), /SOA: bad serial "1h"/);
  t.throws(() => parseRdata(TYPE.SOA, ['ns1', 'hm', '4294967296', '1', '1', '1', '1'], ORIGIN), /SOA: bad serial "4294967296"/);
  t.throws(() => parseRdata(TYPE.SOA, ['ns1', 'hm', '1', '1x', '1', '1', '1'], ORIGIN), /SOA: bad refresh "1x": unknown unit/);
  t.throws(() => parseRdata(TYPE.SOA, ['ns1', 'hm', '1', '1', '1', '4294967296', '1'], ORIGIN), /SOA: bad expire "4294967296"/);
  t.throws(() => parseRdata(TYPE.SOA, ['ns1', 'hm', '1', '1', '1', '1'], ORIGIN), /SOA: missing minimum/);
  t.throws(() => parseRdata(TYPE.SOA, ['ns1', 'hm', '1', '1', '1', '1', '1', '1'], ORIGIN), /SOA: unexpected extra field/);
});

t.test('SRV matches dns-packet', async (t) => {
  t.same(
    ours(TYPE.SRV, ['10', '60', '5060', 'SIP.example.test.']),
    reference({ type: 'SRV', data: { priority: 10, weight: 60, port: 5060, target: 'SIP.example.test' } }),
  );
  t.same(ours(TYPE.SRV, ['0', '0', '0', '.']), reference({ type: 'SRV', data: { priority: 0, weight: 0, port: 0, target: '.' } }));
  t.throws(() => parseRdata(TYPE.SRV, ['1', '2', '65536', 'x'], ORIGIN), /SRV: bad port "65536"/);
  t.throws(() => parseRdata(TYPE.SRV, ['1', 'w', '3', 'x'], ORIGIN), /SRV: bad weight "w"/);
  t.throws(() => parseRdata(TYPE.SRV, ['1', '2', '3'], ORIGIN), /SRV: missing target/);
});

t.test('TXT matches dns-packet', async (t) => {
  t.same(ours(TYPE.TXT, [q('hello world')]), reference({ type: 'TXT', data: 'hello world' }));
  t.same(ours(TYPE.TXT, ['unquoted']), reference({ type: 'TXT', data: 'unquoted' }));
  t.same(ours(TYPE.TXT, [q('')]), reference({ type: 'TXT', data: [Buffer.alloc(0)] }));
  t.same(ours(TYPE.TXT, [q('a'), 'b', q('c d')]), reference({ type: 'TXT', data: ['a', 'b', 'c d'] }));
  t.same(ours(TYPE.TXT, [q('a\\"b'), q('c;d'), '\\065']), reference({ type: 'TXT', data: ['a"b', 'c;d', 'A'] }));
  t.same(ours(TYPE.TXT, [q('back\\\\slash \\000\\255\\x')]), reference({ type: 'TXT', data: [Buffer.from('back\\slash \x00\xffx', 'latin1')] }));
  t.same(ours(TYPE.TXT, [q('café ✓ 😀')]), reference({ type: 'TXT', data: 'café ✓ 😀' }), 'non-ASCII as UTF-8');
  t.same(ours(TYPE.TXT, [q('\\😀')]), reference({ type: 'TXT', data: '😀' }), 'escaped astral character');
  t.same(ours(TYPE.TXT, ['a\\ b']), reference({ type: 'TXT', data: 'a b' }), 'escaped space in an unquoted string');
  const max = 'x'.repeat(255);
  t.same(ours(TYPE.TXT, [q(max)]), reference({ type: 'TXT', data: max }));
  t.same(ours(TYPE.TXT, [q(max), q(max), q('tail')]), reference({ type: 'TXT', data: [max, max, 'tail'] }));
  t.same(ours(TYPE.TXT, [q('\\' + '120'.repeat(1) + 'x'.repeat(254))]), reference({ type: 'TXT', data: max }), '\\DDD counts as one octet');
  t.throws(() => parseRdata(TYPE.TXT, [q('x'.repeat(256))], ORIGIN), /TXT: bad string 1 .*256 octets, the limit is 255/);
  t.throws(() => parseRdata(TYPE.TXT, [q('ok'), q('é'.repeat(128))], ORIGIN), /TXT: bad string 2 .*256 octets/);
  t.throws(() => parseRdata(TYPE.TXT, [q('\\256')], ORIGIN), /TXT: bad string 1 "\\256": \\256 is over 255/);
  t.throws(() => parseRdata(TYPE.TXT, [q('\\12')], ORIGIN), /three digits/);
  t.throws(() => parseRdata(TYPE.TXT, ['abc\\'], ORIGIN), /dangling backslash/);
  t.throws(() => parseRdata(TYPE.TXT, [], ORIGIN), /TXT: missing character-string/);
  const many = Array.from({ length: 258 }, () => q(max));
  t.throws(() => parseRdata(TYPE.TXT, many, ORIGIN), /TXT: rdata is 66048 octets, the limit is 65535/);
});

t.test('CAA matches dns-packet', async (t) => {
  t.same(ours(TYPE.CAA, ['0', 'issue', q('letsencrypt.org')]), reference({ type: 'CAA', data: { flags: 0, tag: 'issue', value: 'letsencrypt.org' } }));
  t.same(
    ours(TYPE.CAA, ['128', 'iodef', q('mailto:security@example.test')]),
    reference({ type: 'CAA', data: { flags: 128, tag: 'iodef', value: 'mailto:security@example.test' } }),
  );
  t.same(ours(TYPE.CAA, ['0', 'issuewild', q(';')]), reference({ type: 'CAA', data: { flags: 0, tag: 'issuewild', value: ';' } }));
  t.same(ours(TYPE.CAA, ['0', 'issue', q('')]), reference({ type: 'CAA', data: { flags: 0, tag: 'issue', value: '' } }));
  // @types/dns-packet lists only the three RFC 8659 tags; the encoder itself takes any.
  t.same(ours(TYPE.CAA, ['0', 'Tag15chars12345', 'bare']), reference({ type: 'CAA', data: { flags: 0, tag: 'Tag15chars12345' as 'issue', value: 'bare' } }));
  const long = 'v'.repeat(300);
  t.same(ours(TYPE.CAA, ['0', 'issue', q(long)]), reference({ type: 'CAA', data: { flags: 0, tag: 'issue', value: long } }), 'value is not limited to 255');
  t.throws(() => parseRdata(TYPE.CAA, ['256', 'issue', q('x')], ORIGIN), /CAA: bad flags "256"/);
  t.throws(() => parseRdata(TYPE.CAA, ['0', 'is-sue', q('x')], ORIGIN), /CAA: bad tag "is-sue": must be 1 to 15 ASCII letters and digits/);
  t.throws(() => parseRdata(TYPE.CAA, ['0', 'a'.repeat(16), q('x')], ORIGIN), /CAA: bad tag/);
  t.throws(() => parseRdata(TYPE.CAA, ['0', q(''), q('x')], ORIGIN), /CAA: bad tag/);
  t.throws(() => parseRdata(TYPE.CAA, ['0', 'issue'], ORIGIN), /CAA: missing value/);
  t.throws(() => parseRdata(TYPE.CAA, ['0', 'issue', 'a', 'b'], ORIGIN), /CAA: unexpected extra field "b"/);
});

t.test('RFC 3597 generic rdata', async (t) => {
  t.same(ours(65534, ['\\#', '4', '0a000001']), Buffer.from([10, 0, 0, 1]));
  t.same(ours(65534, ['\\#', '4', '0A00', '00', '01']), Buffer.from([10, 0, 0, 1]), 'hex split across fields');
  t.same(ours(65534, ['\\#', '0']), Buffer.alloc(0));
  t.same(ours(TYPE.A, ['\\#', '4', 'c0000201']), ours(TYPE.A, ['192.0.2.1']), 'accepted for a known type');
  t.same(ours(TYPE.MX, ['\\#', '3', '000a', '00']), Buffer.from([0, 10, 0]));
  t.same(ours(TYPE.NS, ['\\#', '5', '036e7331', '00']), Buffer.from('\x03ns1\x00', 'latin1'));
  t.same(ours(52, ['\\#', '3', '030101']), Buffer.from([3, 1, 1]), 'TLSA by mnemonic type number');
  t.throws(() => parseRdata(65534, ['\\#', '3', '0a000001'], ORIGIN), /TYPE65534: generic rdata length is 3 but the hex gives 4 octets/);
  t.throws(() => parseRdata(65534, ['\\#', '4', '0a00001'], ORIGIN), /odd number of digits/);
  t.throws(() => parseRdata(65534, ['\\#', '1', 'zz'], ORIGIN), /TYPE65534: bad generic rdata hex "zz"/);
  t.throws(() => parseRdata(65534, ['\\#'], ORIGIN), /TYPE65534: missing generic rdata length/);
  t.throws(() => parseRdata(65534, ['\\#', '65536'], ORIGIN), /bad generic rdata length/);
  t.throws(() => parseRdata(TYPE.A, ['\\#', '3', 'c00002'], ORIGIN), /A: generic rdata is not valid A data/);
  t.throws(() => parseRdata(TYPE.A, ['\\#', '5', 'c000020100'], ORIGIN), /A: generic rdata is not valid A data: 1 octets left over/);
  t.throws(() => parseRdata(TYPE.NS, ['\\#', '2', 'c00c'], ORIGIN), /NS: generic rdata is not valid NS data/, 'compression pointer refused');
  t.throws(() => parseRdata(TYPE.TXT, ['\\#', '0'], ORIGIN), /TXT: generic rdata is not valid/);
  t.throws(() => parseRdata(TYPE.CAA, ['\\#', '3', '000100'], ORIGIN), /CAA: generic rdata is not valid/);
  t.throws(() => parseRdata(65534, [q('\\#'), '0'], ORIGIN), /TYPE65534: Vigil has no presentation format .*generic form/, 'quoted \\# is not generic');
  t.throws(() => parseRdata(52, ['3', '1', '1', 'abcd'], ORIGIN), /^TLSA: Vigil has no presentation format for this type; write its rdata in RFC 3597 generic form/);
});

t.test('meta and reserved types are refused', async (t) => {
  for (const type of [0, TYPE.OPT, TYPE.ANY, TYPE.AXFR, TYPE.IXFR, 128, 65535]) {
    t.throws(() => parseRdata(type, ['\\#', '0'], ORIGIN), /is a reserved or meta type and cannot appear in zone data/, String(type));
  }
  t.throws(() => parseRdata(65536, ['\\#', '0'], ORIGIN), /bad type number/);
});

t.test('typeFromText', async (t) => {
  t.equal(typeFromText('A'), 1);
  t.equal(typeFromText('aaaa'), 28);
  t.equal(typeFromText('Caa'), 257);
  t.equal(typeFromText('srv'), 33);
  t.equal(typeFromText('TYPE65534'), 65534);
  t.equal(typeFromText('type1'), 1);
  t.equal(typeFromText('TLSA'), 52);
  t.equal(typeFromText('HTTPS'), 65);
  t.throws(() => typeFromText('FOO'), /unknown record type "FOO"/);
  t.throws(() => typeFromText('TYPE65536'), /bad type "TYPE65536"/);
  t.throws(() => typeFromText('TYPE'), /bad type/);
  t.throws(() => typeFromText('TYPE1x'), /bad type/);
  t.throws(() => typeFromText(''), /unknown record type/);
});

t.test('parseTtl', async (t) => {
  t.equal(parseTtl('0'), 0);
  t.equal(parseTtl('300'), 300);
  t.equal(parseTtl('1h'), 3600);
  t.equal(parseTtl('1H30m'), 5400);
  t.equal(parseTtl('2w'), 1209600);
  t.equal(parseTtl('1d12h'), 129600);
  t.equal(parseTtl('1W2D3H4M5S'), 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5);
  t.equal(parseTtl('10s5s'), 15, 'units may repeat, as in BIND');
  t.equal(parseTtl('2147483647'), 2147483647);
  t.throws(() => parseTtl('2147483648'), /bad TTL "2147483648": more than 2147483647 seconds/);
  t.throws(() => parseTtl('3551w'), /more than/);
  t.throws(() => parseTtl('1h30'), /the last number needs a unit/);
  t.throws(() => parseTtl('h'), /expected digits/);
  t.throws(() => parseTtl('1x'), /unknown unit "x"/);
  t.throws(() => parseTtl('-1'), /bad TTL/);
  t.throws(() => parseTtl(''), /empty TTL/);
});

t.test('formatRdata', async (t) => {
  const cases: Array<[number, RdataInput[], string]> = [
    [TYPE.A, ['192.0.2.1'], '192.0.2.1'],
    [TYPE.AAAA, ['2001:DB8:0:0:0:0:0:1'], '2001:db8::1'],
    [TYPE.AAAA, ['2001:db8:0:1:0:0:1:1'], '2001:db8:0:1::1:1'],
    [TYPE.AAAA, ['2001:db8:0:1:1:1:1:1'], '2001:db8:0:1:1:1:1:1'],
    [TYPE.AAAA, ['::'], '::'],
    [TYPE.AAAA, ['::ffff:192.0.2.1'], '::ffff:c000:201'],
    [TYPE.NS, ['Ns1'], 'Ns1.example.test.'],
    [TYPE.MX, ['10', 'mx'], '10 mx.example.test.'],
    [TYPE.SOA, ['ns1', 'hm', '1', '1h', '15m', '1w', '5m'], 'ns1.example.test. hm.example.test. 1 3600 900 604800 300'],
    [TYPE.SRV, ['1', '2', '3', '.'], '1 2 3 .'],
    [TYPE.TXT, [q('a"b'.replace('"', '\\"')), q('c;d'), '\\007'], '"a\\"b" "c;d" "\\007"'],
    [TYPE.CAA, ['0', 'issue', q('ca.example')], '0 issue "ca.example"'],
    [65534, ['\\#', '4', '0a000001'], '\\# 4 0a000001'],
    [65534, ['\\#', '0'], '\\# 0'],
  ];
  for (const [type, fields, text] of cases) {
    const rdata = parseRdata(type, fields, ORIGIN);
    t.equal(formatRdata(type, rdata), text, text);
  }
  t.equal(formatRdata(TYPE.A, new Uint8Array([1, 2, 3])), '\\# 3 010203', 'undecodable data falls back to generic form');
});

t.test('formatted rdata parses back to the same bytes', async (t) => {
  const samples: Array<[number, RdataInput[]]> = [
    [TYPE.AAAA, ['1:0:0:2:0:0:0:3']],
    [TYPE.MX, ['5', 'a\\.b']],
    [TYPE.SOA, ['ns1', 'hm', '7', '1', '2', '3', '4']],
    [TYPE.TXT, [q('\\000\\"\\\\ é'), q('')]],
    [TYPE.CAA, ['128', 'issue', q('x; y=\\"z\\"')]],
    [TYPE.HINFO, [q('PDP-11'), q('UNIX')]],
  ];
  for (const [type, fields] of samples) {
    const rdata = parseRdata(type, fields, ORIGIN);
    const text = formatRdata(type, rdata);
    const tokens = splitPresentation(text);
    t.same(Buffer.from(parseRdata(type, tokens, ORIGIN)), Buffer.from(rdata), text);
  }
});

/** Enough of a lexer for formatRdata's own output (quoted strings and bare words). */
function splitPresentation(text: string): RdataInput[] {
  const out: RdataInput[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    out.push(m[1] !== undefined ? q(m[1]) : (m[2] ?? ''));
  }
  return out;
}
