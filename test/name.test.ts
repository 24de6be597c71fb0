import t from 'tap';
import { parseName, formatName, parentKey, isSubdomain, lowerKey, labelCount, readUncompressedName } from '../server/wire/name.js';

t.test('parseName and formatName round-trip', async (t) => {
  const origin = parseName('example.test.');
  t.equal(origin, '\x07example\x04test\x00');
  t.equal(parseName('@', origin), origin);
  t.equal(parseName('www', origin), '\x03www' + origin);
  t.equal(formatName(parseName('a\\.b.test.')), 'a\\.b.test.');
  t.equal(parseName('\\065.test.'), '\x01A\x04test\x00');
  t.equal(formatName(parseName('\\000x.test.')), '\\000x.test.');
  t.equal(formatName('\x00'), '.');
  t.throws(() => parseName('a..b.'), /empty label/);
  t.throws(() => parseName('x'.repeat(64) + '.'), /63/);
  t.throws(() => parseName('www'), /without an origin/);
  t.throws(() => parseName(('a'.repeat(63) + '.').repeat(4)), /255/);
});

t.test('key helpers', async (t) => {
  const k = parseName('www.example.test.');
  t.equal(parentKey(k), parseName('example.test.'));
  t.equal(parentKey('\x00'), undefined);
  t.equal(labelCount(k), 3);
  t.ok(isSubdomain(k, parseName('example.test.')));
  t.ok(isSubdomain(k, k));
  t.notOk(isSubdomain(parseName('www.xexample.test.'), parseName('example.test.')));
  t.notOk(isSubdomain(parseName('test.'), k));
  t.equal(lowerKey(parseName('WwW.Example.TEST.')), k);
  const bytes = Buffer.concat([Buffer.from([9]), Buffer.from(k, 'latin1')]);
  t.same(readUncompressedName(bytes, 1), { key: k, end: bytes.length });
  t.throws(() => readUncompressedName(Buffer.from([3, 0x61]), 0), /past the end/);
});
