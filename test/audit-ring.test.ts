// The local audit log keeps the newest `capacity` entries, newest first,
// however many were pushed (it trims in bulk, so the array briefly holds more).
import t from 'tap';
import { AuditRing } from '../probes/replication/local-store.js';
import type { AuditEntry } from '../probes/replication/types.js';

const entry = (i: number): AuditEntry => ({ id: `e${i}`, at: i, event: 'override.set', node: 'n', by: 'b', reason: 'r', fields: {} });

t.test('newest first, never more than the capacity, at every fill level', async (t) => {
  const ring = new AuditRing(10);
  for (let i = 1; i <= 35; i++) {
    ring.push(entry(i));
    const all = ring.newest(1000).map((e) => e.at);
    const want = Array.from({ length: Math.min(i, 10) }, (_, k) => i - k);
    if (JSON.stringify(all) !== JSON.stringify(want)) {
      t.same(all, want, `after ${i} pushes`);
      return;
    }
  }
  t.pass('after each of 35 pushes: the newest min(n, 10), newest first');
  t.same(ring.newest(3).map((e) => e.at), [35, 34, 33], 'a smaller count: the newest few');
  t.same(ring.newest(0), [], 'zero: none');
  t.same(ring.newest(-4), [], 'negative: none');
});
