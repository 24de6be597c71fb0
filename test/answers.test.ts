// The bundled example config, asked through clients that share no code with
// Vigil: c-ares (node:dns Resolver) for the answers applications see, and dig
// for what c-ares hides (flags, authority and additional sections, TCP, EDNS).

import t from 'tap';
import { Resolver } from 'node:dns/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startVigilFromConfig, startVigilWithZones, SMALL_ZONE } from './helpers/vigil.js';

const run = promisify(execFile);

interface Dig {
  status: string;
  flags: string[];
  answer: string[];
  authority: string[];
  additional: string[];
  opt: string;
}

/** Runs dig and splits its output into sections; each record line is whitespace-normalised. */
async function dig(port: number, args: string[]): Promise<Dig> {
  const { stdout } = await run('dig', ['@127.0.0.1', '-p', String(port), '+tries=1', '+time=2', ...args]);
  const out: Dig = { status: '', flags: [], answer: [], authority: [], additional: [], opt: '' };
  let section: 'answer' | 'authority' | 'additional' | undefined;
  for (const line of stdout.split('\n')) {
    const status = /status: (\w+)/.exec(line);
    if (status) out.status = status[1]!;
    const flags = /^;; flags: ([a-z ]*);/.exec(line);
    if (flags) out.flags = flags[1]!.trim().split(/\s+/);
    if (line.startsWith('; EDNS:')) out.opt = line;
    if (line.startsWith(';; ANSWER SECTION')) section = 'answer';
    else if (line.startsWith(';; AUTHORITY SECTION')) section = 'authority';
    else if (line.startsWith(';; ADDITIONAL SECTION')) section = 'additional';
    else if (line.trim() === '' || line.startsWith(';')) {
      if (line.trim() === '') section = undefined;
    } else if (section !== undefined) out[section].push(line.split(/\s+/).join(' '));
  }
  return out;
}

t.test('the example zones, through c-ares and dig', async (t) => {
  const vigil = await startVigilFromConfig(new URL('../zones/examples/vigil.yaml', import.meta.url).pathname);
  t.teardown(() => vigil.close());
  const port = vigil.port;
  const r = new Resolver({ timeout: 2000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);

  await t.test('c-ares sees every type', async (t) => {
    t.same(await r.resolve4('www.example.test', { ttl: true }), [{ address: '192.0.2.10', ttl: 300 }]);
    t.same(await r.resolve6('www.example.test'), ['2001:db8::10']);
    t.same((await r.resolve4('api.example.test')).sort(), ['192.0.2.20', '198.51.100.20', '203.0.113.20']);
    t.same(
      (await r.resolveMx('example.test')).sort((a, b) => a.priority - b.priority),
      [
        { exchange: 'mail1.example.test', priority: 10 },
        { exchange: 'mail2.example.test', priority: 20 },
      ],
    );
    t.same(
      (await r.resolveSrv('_sip._tcp.example.test')).sort((a, b) => b.weight - a.weight),
      [
        { name: 'sip1.example.test', port: 5060, priority: 10, weight: 60 },
        { name: 'sip2.example.test', port: 5060, priority: 10, weight: 40 },
      ],
    );
    t.same(await r.resolveTxt('example.test'), [['v=spf1 mx ip4:192.0.2.0/24 -all']]);
    const dkim = await r.resolveTxt('dkim._domainkey.example.test');
    t.equal(dkim[0]!.length, 2, 'two character-strings');
    t.ok(dkim[0]!.join('').startsWith('v=DKIM1;'));
    t.same((await r.resolveNs('example.test')).sort(), ['ns1.example.test', 'ns2.example.test']);
    t.match(await r.resolveSoa('example.test'), { nsname: 'ns1.example.test', hostmaster: 'hostmaster.example.test', minttl: 600 });
    t.same(await r.resolvePtr('ptr.example.test'), ['www.example.test']);
    t.same(await r.resolveCname('shop.example.test'), ['www.example.test']);
    const caa = await r.resolveCaa('example.test');
    t.same(caa.map((c) => c.issue ?? c.iodef).sort(), ['ca.example.net', 'mailto:security@example.test']);
    t.same(await r.resolve4('shop.example.test'), ['192.0.2.10'], 'CNAME followed inside the zone');
    t.same(await r.resolve4('anything.apps.example.test'), ['192.0.2.80'], 'wildcard');
    t.same(await r.resolve4('db.internal.test'), ['10.0.0.5', '10.0.0.6'], 'the YAML-records zone');
  });

  await t.test('c-ares sees NXDOMAIN and NODATA as different errors', async (t) => {
    await t.rejects(r.resolve4('missing.example.test'), { code: 'ENOTFOUND' });
    await t.rejects(r.resolveMx('www.example.test'), { code: 'ENODATA' });
    await t.rejects(r.resolve4('deep.example.test'), { code: 'ENODATA' }, 'empty non-terminal is NODATA');
    await t.rejects(r.resolve4('www.example.org'), { code: 'EREFUSED' });
  });

  await t.test('dig: flags, case, negative answers', async (t) => {
    const a = await dig(port, ['WwW.ExAmPlE.TeSt', 'A']);
    t.equal(a.status, 'NOERROR');
    t.same(a.flags.sort(), ['aa', 'qr', 'rd'], 'AA set, RD copied, RA clear');
    t.same(a.answer, ['WwW.ExAmPlE.TeSt. 300 IN A 192.0.2.10'], 'owner written as the client asked (0x20)');
    t.match(a.opt, /udp: 1232/);

    const nx = await dig(port, ['+norecurse', 'nope.example.test', 'A']);
    t.equal(nx.status, 'NXDOMAIN');
    t.same(nx.flags.sort(), ['aa', 'qr']);
    t.same(nx.authority, ['example.test. 600 IN SOA ns1.example.test. hostmaster.example.test. 2024060101 7200 3600 1209600 600']);

    const nodata = await dig(port, ['www.example.test', 'MX']);
    t.equal(nodata.status, 'NOERROR');
    t.same(nodata.answer, []);
    t.equal(nodata.authority.length, 1);
    t.match(nodata.authority[0], /^example\.test\. 600 IN SOA/);

    const wnodata = await dig(port, ['x.txt-only.example.test', 'A']);
    t.equal(wnodata.status, 'NOERROR', 'NODATA at a wildcard');
    t.same(wnodata.answer, []);
    const below = await dig(port, ['x.a.b.deep.example.test', 'A']);
    t.equal(below.status, 'NXDOMAIN');
  });

  await t.test('dig: CNAME chains, referrals, additional section', async (t) => {
    const chain = await dig(port, ['static.example.test', 'A']);
    t.same(chain.answer, ['static.example.test. 300 IN CNAME cdn.example.test.', 'cdn.example.test. 300 IN CNAME edge.example.net.']);
    t.equal(chain.status, 'NOERROR');

    const ref = await dig(port, ['+norecurse', 'host.sub.example.test', 'A']);
    t.equal(ref.status, 'NOERROR');
    t.same(ref.flags.sort(), ['qr'], 'AA clear on a referral');
    t.same(ref.answer, []);
    t.same(ref.authority.sort(), ['sub.example.test. 3600 IN NS ns.example.net.', 'sub.example.test. 3600 IN NS ns.sub.example.test.']);
    t.same(ref.additional.sort(), ['ns.sub.example.test. 3600 IN A 192.0.2.153', 'ns.sub.example.test. 3600 IN AAAA 2001:db8:2::53']);

    const mx = await dig(port, ['example.test', 'MX']);
    t.same(mx.additional.sort(), ['mail1.example.test. 3600 IN A 192.0.2.25', 'mail2.example.test. 3600 IN A 198.51.100.25']);
    const srv = await dig(port, ['_sip._tcp.example.test', 'SRV']);
    t.same(srv.additional.sort(), ['sip1.example.test. 3600 IN A 192.0.2.50', 'sip2.example.test. 3600 IN A 198.51.100.50']);
  });

  await t.test('dig: CHAOS, ANY, EDNS version, TCP', async (t) => {
    const v = await dig(port, ['version.bind', 'TXT', 'CH']);
    t.same(v.answer, ['version.bind. 0 CH TXT "vigil example"']);
    const ch = await dig(port, ['other.bind', 'TXT', 'CH']);
    t.equal(ch.status, 'REFUSED');
    const any = await dig(port, ['www.example.test', 'ANY']);
    t.equal(any.answer.length, 1, 'one RRset for ANY (RFC 8482)');
    const badvers = await dig(port, ['+edns=1', '+noednsnegotiation', 'www.example.test', 'A']);
    t.equal(badvers.status, 'BADVERS');
    const tcp = await dig(port, ['+tcp', 'api.example.test', 'A']);
    t.equal(tcp.answer.length, 3);
  });
});

t.test('truncation: UDP without EDNS gets TC and whole RRsets, TCP gets everything', async (t) => {
  const vigil = await startVigilWithZones({ 'example.test.': SMALL_ZONE });
  t.teardown(() => vigil.close());
  const udp = await dig(vigil.port, ['+noedns', '+ignore', 'big.example.test', 'TXT']);
  t.ok(udp.flags.includes('tc'), 'TC set');
  t.same(udp.answer, [], 'the 40-record RRset does not fit 512 octets, so none of it is sent');
  const edns = await dig(vigil.port, ['+bufsize=1232', '+ignore', 'big.example.test', 'TXT']);
  t.ok(edns.flags.includes('tc'), 'still too big for 1232');
  const tcp = await dig(vigil.port, ['+tcp', 'big.example.test', 'TXT']);
  t.notOk(tcp.flags.includes('tc'));
  t.equal(tcp.answer.length, 40);
  const auto = await dig(vigil.port, ['+noedns', 'big.example.test', 'TXT']);
  t.equal(auto.answer.length, 40, 'dig retries over TCP on TC and gets it all');
});
