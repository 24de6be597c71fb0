import t from 'tap';
import { compileViewMatcher } from '../server/answer/views.js';
import type { Cidr, CompiledView } from '../zones/service.js';

function cidr(family: 4 | 6, bytes: number[], prefix: number): Cidr {
  return { family, bytes: Uint8Array.from(bytes), prefix };
}

const v4_10 = cidr(4, [10, 0, 0, 0], 8);
const v4_host = cidr(4, [127, 0, 0, 9], 32);
const v4_odd = cidr(4, [192, 0, 2, 64], 26);
const v6_doc = cidr(6, [0x20, 0x01, 0x0d, 0xb8, ...Array<number>(12).fill(0)], 32);
const v6_lo = cidr(6, [...Array<number>(15).fill(0), 1], 128);

function view(name: string, match: Cidr[]): CompiledView {
  return { name, match, useEcs: false };
}

t.test('first matching view wins, the default catches the rest', async (t) => {
  const m = compileViewMatcher([view('inside', [v4_10, v4_host, v6_lo]), view('lab', [v4_odd, v6_doc]), view('outside', [])]);
  t.equal(m('10.1.2.3'), 0);
  t.equal(m('127.0.0.9'), 0);
  t.equal(m('127.0.0.1'), 2);
  t.equal(m('::1'), 0);
  t.equal(m('::ffff:10.9.9.9'), 0, 'IPv4-mapped IPv6 is matched as IPv4');
  t.equal(m('192.0.2.64'), 1);
  t.equal(m('192.0.2.127'), 1, 'last address of the /26');
  t.equal(m('192.0.2.128'), 2, 'first address past the /26');
  t.equal(m('192.0.2.63'), 2);
  t.equal(m('2001:db8::1'), 1);
  t.equal(m('2001:db9::1'), 2);
  t.equal(m('fe80::1%eth0'), 2, 'a zone index does not break parsing');
});

t.test('without a default view, an unmatched client gets -1 (REFUSED)', async (t) => {
  const m = compileViewMatcher([view('inside', [v4_10])]);
  t.equal(m('10.0.0.1'), 0);
  t.equal(m('192.0.2.1'), -1);
  t.equal(m('not an address'), -1);
});

t.test('no views at all: everyone is in view 0', async (t) => {
  t.equal(compileViewMatcher([])('203.0.113.7'), 0);
});
