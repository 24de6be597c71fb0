import t from 'tap';
import { healthKey, type FamilyHealth, type HealthSnapshot, type HealthStatus } from '../probes/health/state.js';
import {
  ConsensusInputError,
  computeConsensus,
  requiredDownVotes,
  type ConsensusInput,
  type ConsensusResult,
} from '../probes/replication/consensus.js';
import type { NodeReport, Quorum, Verdict } from '../probes/replication/types.js';

const NOW = 1_000_000;
const STALE = 3_000;
const K = healthKey('www.example.test./primary', 'v4');
const K6 = healthKey('www.example.test./primary', 'v6');
const MAJORITY: Quorum = { mode: 'majority' };
const SELF = { id: 'ams-1', pop: 'ams' };

function fh(status: HealthStatus, reason: string, extra: Partial<FamilyHealth> = {}): FamilyHealth {
  return { status, since: 500, reason, held: false, ...extra };
}

function snap(entries: Record<string, FamilyHealth>, approved = new Map<string, number>()): HealthSnapshot {
  return { members: new Map(Object.entries(entries)), failbackApproved: approved };
}

function report(node: string, verdicts: Record<string, [HealthStatus, string]>, lastSeen = NOW - 100): NodeReport {
  const m = new Map<string, Verdict>();
  for (const [k, [status, reason]] of Object.entries(verdicts)) m.set(k, { status, since: 1, reason });
  return { node, pop: node.slice(0, 3), lastSeen, verdicts: m, served: new Map() };
}

function run(over: Partial<ConsensusInput> & Pick<ConsensusInput, 'local'>): ConsensusResult {
  return computeConsensus({ self: SELF, remotes: [], quorum: MAJORITY, staleAfterMs: STALE, now: NOW, frozen: false, ...over });
}

function statuses(r: ConsensusResult): Record<string, HealthStatus> {
  const out: Record<string, HealthStatus> = {};
  for (const [k, v] of r.health.members) out[k] = v.status;
  return out;
}

t.test('one node decides alone and reads as without replication', async (t) => {
  const approved = new Map([['www.example.test.', 42]]);
  const local = snap(
    {
      [K]: fh('down', 'http 503', { since: 700, held: true, nextChangeAt: NOW + 900 }),
      [K6]: fh('up', 'http 200', { since: 600 }),
    },
    approved,
  );
  const r = run({ local });
  t.same(r.fresh, ['ams-1']);
  t.same(r.stale, []);
  t.same(r.health.members.get(K), { status: 'down', since: 700, reason: 'http 503', held: true, nextChangeAt: NOW + 900 });
  t.same(r.health.members.get(K6), { status: 'up', since: 600, reason: 'http 200', held: false });
  t.notOk(r.health.members.get(K6) && 'nextChangeAt' in r.health.members.get(K6)!, 'no nextChangeAt when local has none');
  t.equal(r.health.failbackApproved, approved, 'failbackApproved copied from local');
  t.same(r.votes.get(K), { up: [], down: ['ams-1'], unknown: [], required: 1 });
  t.same(r.votes.get(K6), { up: ['ams-1'], down: [], unknown: [], required: 1 });

  const k = run({ local, quorum: { mode: 'k_of_n', k: 2 } });
  t.equal(k.health.members.get(K)?.status, 'down', 'k_of_n with one node: the lone node decides');
  t.equal(k.votes.get(K)?.required, 1);
});

t.test('three nodes: one down stays up, two down is down', async (t) => {
  const local = snap({ [K]: fh('down', 'http 503') });
  const one = run({ local, remotes: [report('fra-1', { [K]: ['up', 'http 200'] }), report('lhr-1', { [K]: ['up', 'http 200'] })] });
  t.equal(one.health.members.get(K)?.status, 'up');
  t.equal(one.health.members.get(K)?.reason, 'up: 1/3 nodes down (ams-1: http 503)');
  t.same(one.votes.get(K), { up: ['fra-1', 'lhr-1'], down: ['ams-1'], unknown: [], required: 2 });
  t.same(one.fresh, ['ams-1', 'fra-1', 'lhr-1']);

  const two = run({ local, remotes: [report('lhr-1', { [K]: ['up', 'http 200'] }), report('fra-1', { [K]: ['down', 'timeout'] })] });
  t.equal(two.health.members.get(K)?.status, 'down');
  t.equal(two.health.members.get(K)?.reason, '2/3 nodes down (ams-1: http 503; fra-1: timeout)');
  t.same(two.votes.get(K), { up: ['lhr-1'], down: ['ams-1', 'fra-1'], unknown: [], required: 2 });

  const remoteOnly = run({
    local: snap({ [K]: fh('up', 'http 200') }),
    remotes: [report('lhr-1', { [K]: ['down', 'refused'] }), report('fra-1', { [K]: ['down', 'timeout'] })],
  });
  t.equal(remoteOnly.health.members.get(K)?.status, 'down', 'two remotes outvote us');
  t.equal(remoteOnly.health.members.get(K)?.reason, '2/3 nodes down (fra-1: timeout; lhr-1: refused)');

  const allUp = run({
    local: snap({ [K]: fh('up', 'http 200') }),
    remotes: [report('lhr-1', { [K]: ['up', 'http 200'] }), report('fra-1', { [K]: ['up', 'http 204'] })],
  });
  t.equal(allUp.health.members.get(K)?.reason, 'up on 3/3 nodes');
});

t.test('a 2-2 tie is not down', async (t) => {
  const r = run({
    local: snap({ [K]: fh('down', 'http 503') }),
    remotes: [
      report('fra-1', { [K]: ['down', 'timeout'] }),
      report('lhr-1', { [K]: ['up', 'http 200'] }),
      report('nyc-1', { [K]: ['up', 'http 200'] }),
    ],
  });
  t.equal(r.health.members.get(K)?.status, 'up');
  t.equal(r.votes.get(K)?.required, 3);
  t.equal(r.health.members.get(K)?.reason, 'up: 2/4 nodes down (ams-1: http 503; fra-1: timeout)');
  t.equal(requiredDownVotes(MAJORITY, 4), 3);
  t.equal(requiredDownVotes(MAJORITY, 5), 3);
  t.equal(requiredDownVotes(MAJORITY, 0), 1, 'never zero');
});

t.test('stale nodes stop counting; frozen keeps them', async (t) => {
  const local = snap({ [K]: fh('up', 'http 200') });
  const remotes = [
    report('fra-1', { [K]: ['down', 'timeout'] }, NOW - STALE), // exactly at the limit: fresh
    report('lhr-1', { [K]: ['down', 'refused'] }, NOW - STALE - 1), // one ms past: stale
    report('nyc-1', { [K]: ['down', 'refused'] }, NOW - 60_000),
  ];
  const r = run({ local, remotes });
  t.same(r.fresh, ['ams-1', 'fra-1']);
  t.same(r.stale, ['lhr-1', 'nyc-1']);
  t.equal(r.health.members.get(K)?.status, 'up', '1 of 2 fresh voters down is a tie');
  t.same(r.votes.get(K), { up: ['ams-1'], down: ['fra-1'], unknown: [], required: 2 });

  const later = run({ local, remotes, now: NOW + 1 });
  t.same(later.fresh, ['ams-1'], 'fra-1 ages out a ms later');
  t.same(later.stale, ['fra-1', 'lhr-1', 'nyc-1']);
  t.equal(later.health.members.get(K)?.reason, 'http 200', 'alone again: local reason');

  const frozen = run({ local, remotes, now: NOW + 1, frozen: true });
  t.same(frozen.fresh, ['ams-1', 'fra-1', 'lhr-1', 'nyc-1'], 'frozen: every report counts whatever its age');
  t.same(frozen.stale, []);
  t.equal(frozen.health.members.get(K)?.status, 'down');
  t.equal(frozen.health.members.get(K)?.reason, '3/4 nodes down (fra-1: timeout; lhr-1: refused; nyc-1: refused)');

  const staleKeys = run({ local: snap({}), remotes: [report('lhr-1', { [K6]: ['down', 'refused'] }, NOW - 60_000)] });
  t.notOk(staleKeys.health.members.has(K6), 'keys of stale nodes are not in the result');
  t.notOk(staleKeys.votes.has(K6));
});

t.test('k_of_n with enough and with too few voters', async (t) => {
  const q: Quorum = { mode: 'k_of_n', k: 2 };
  const fiveNodes = (downs: number): NodeReport[] =>
    ['fra-1', 'lhr-1', 'nyc-1', 'sfo-1'].map((n, i) => report(n, { [K]: i < downs ? ['down', `fail ${n}`] : ['up', 'http 200'] }));
  const local = snap({ [K]: fh('up', 'http 200') });

  const one = run({ local, remotes: fiveNodes(1), quorum: q });
  t.equal(one.health.members.get(K)?.status, 'up');
  t.equal(one.votes.get(K)?.required, 2);
  const two = run({ local, remotes: fiveNodes(2), quorum: q });
  t.equal(two.health.members.get(K)?.status, 'down', '2 of 5 is enough with k=2, though no majority');
  t.equal(two.health.members.get(K)?.reason, '2/5 nodes down (fra-1: fail fra-1; lhr-1: fail lhr-1)');

  const k3: Quorum = { mode: 'k_of_n', k: 3 };
  const pair = (remote: HealthStatus, self: HealthStatus): ConsensusResult =>
    run({ local: snap({ [K]: fh(self, 'x') }), remotes: [report('fra-1', { [K]: [remote, 'y'] })], quorum: k3 });
  t.equal(pair('down', 'down').health.members.get(K)?.status, 'down', 'fewer than k voters: all agreeing is enough');
  t.equal(pair('down', 'down').votes.get(K)?.required, 2);
  t.equal(pair('down', 'up').health.members.get(K)?.status, 'up', 'fewer than k voters: one dissent keeps it up');
  t.equal(pair('up', 'down').health.members.get(K)?.status, 'up');

  const survivor = run({
    local: snap({ [K]: fh('down', 'refused') }),
    remotes: [report('fra-1', { [K]: ['up', 'http 200'] }, NOW - 10_000), report('lhr-1', { [K]: ['up', 'http 200'] }, NOW - 10_000)],
    quorum: k3,
  });
  t.equal(survivor.health.members.get(K)?.status, 'down', 'a lone survivor decides');

  t.throws(() => run({ local, quorum: { mode: 'k_of_n', k: 0 } }), ConsensusInputError);
  t.throws(() => run({ local, quorum: { mode: 'k_of_n', k: 1.5 } }), { name: 'ConsensusInputError', field: 'quorum.k' });
  t.throws(() => run({ local, staleAfterMs: Number.NaN }), { name: 'ConsensusInputError', field: 'staleAfterMs' });
});

t.test('unknown verdicts never vote', async (t) => {
  const localUnknown = fh('unknown', 'starting', { since: 321, nextChangeAt: NOW + 50 });
  const local6 = fh('unknown', 'starting');
  const r = run({
    local: snap({ [K]: localUnknown, [K6]: local6 }),
    remotes: [report('fra-1', { [K]: ['down', 'timeout'], [K6]: ['unknown', 'starting'] }), report('lhr-1', { [K]: ['unknown', 'starting'] })],
  });
  t.equal(r.health.members.get(K)?.status, 'down', 'the only voter decides');
  t.same(r.votes.get(K), { up: [], down: ['fra-1'], unknown: ['ams-1', 'lhr-1'], required: 1 });
  t.equal(r.health.members.get(K)?.reason, '1/1 nodes down (fra-1: timeout)');
  t.equal(r.health.members.get(K)?.since, NOW, 'new status: now');
  t.equal(r.health.members.get(K)?.nextChangeAt, NOW + 50, 'our own pending change still caps answers');
  t.equal(r.health.members.get(K)?.held, false);

  t.same(r.votes.get(K6), { up: [], down: [], unknown: ['ams-1', 'fra-1', 'lhr-1'], required: 1 }, 'lhr-1 has no verdict: unknown');
  t.equal(r.health.members.get(K6), local6, 'no voters: our unknown entry, same object');
  const copied = run({ local: snap({ [K]: localUnknown }), remotes: [report('fra-1', { [K]: ['unknown', 'starting'] })] });
  t.equal(copied.health.members.get(K), localUnknown, 'no voters: the local entry as is');

  const none = run({ local: snap({}), remotes: [report('fra-1', { [K]: ['unknown', 'starting'] })] });
  t.notOk(none.health.members.has(K), 'no voters and no local entry: omitted, initialState applies');
  t.same(none.votes.get(K), { up: [], down: [], unknown: ['ams-1', 'fra-1'], required: 1 });
});

t.test('keys known only to remote nodes', async (t) => {
  const r = run({
    local: snap({ [K]: fh('up', 'http 200') }),
    remotes: [report('fra-1', { [K]: ['up', 'http 200'], [K6]: ['down', 'no route'] }), report('lhr-1', { [K6]: ['down', 'no route'] })],
  });
  t.same(Object.keys(statuses(r)).sort(), [K, K6].sort());
  t.same(r.health.members.get(K6), { status: 'down', since: NOW, reason: '2/2 nodes down (fra-1: no route; lhr-1: no route)', held: false });
  t.same(r.votes.get(K6)?.unknown, ['ams-1']);
  t.same(r.votes.get(K)?.unknown, ['lhr-1']);
});

t.test('since: kept while the status holds, now when it changes', async (t) => {
  const remotes = [report('fra-1', { [K]: ['down', 'timeout'] }), report('lhr-1', { [K]: ['up', 'http 200'] })];
  const local = snap({ [K]: fh('up', 'http 200', { since: 400 }) });

  const first = run({ local, remotes });
  t.equal(first.health.members.get(K)?.since, 400, 'no previous, same as local: local since');
  const firstDown = run({ local: snap({ [K]: fh('up', 'http 200', { since: 400 }) }), remotes: [report('fra-1', { [K]: ['down', 'x'] })], quorum: { mode: 'k_of_n', k: 1 } });
  t.equal(firstDown.health.members.get(K)?.since, NOW, 'no previous, differs from local: now');

  const previous = snap({ [K]: fh('up', 'up on 3/3 nodes', { since: 250 }) });
  const kept = run({ local, remotes, previous, now: NOW + 5_000, frozen: true });
  t.equal(kept.health.members.get(K)?.since, 250, 'previous status unchanged: previous since');

  const downPrev = snap({ [K]: fh('down', '2/3 nodes down', { since: 250 }) });
  const changed = run({ local, remotes, previous: downPrev });
  t.equal(changed.health.members.get(K)?.since, NOW, 'changed from previous: now, even though local agrees');

  const newKey = run({ local, remotes, previous: snap({}) });
  t.equal(newKey.health.members.get(K)?.since, 400, 'previous without this key: as if no previous');
});

t.test('held and nextChangeAt', async (t) => {
  const heldLocal = snap({ [K]: fh('down', 'http 200', { held: true, nextChangeAt: NOW + 60_000 }) });
  const down = run({ local: heldLocal, remotes: [report('fra-1', { [K]: ['down', 'refused'] })] });
  t.equal(down.health.members.get(K)?.held, true, 'down here and down overall: our hold shows');
  t.equal(down.health.members.get(K)?.nextChangeAt, NOW + 60_000);

  const up = run({ local: heldLocal, remotes: [report('fra-1', { [K]: ['up', 'x'] }), report('lhr-1', { [K]: ['up', 'x'] })] });
  t.equal(up.health.members.get(K)?.status, 'up');
  t.equal(up.health.members.get(K)?.held, false, 'not held when the consensus is up');
  t.equal(up.health.members.get(K)?.nextChangeAt, NOW + 60_000, 'our pending change may tip the vote');

  const remoteDown = run({
    local: snap({ [K]: fh('up', 'http 200', { held: false }) }),
    remotes: [report('fra-1', { [K]: ['down', 'x'] }), report('lhr-1', { [K]: ['down', 'x'] })],
  });
  t.equal(remoteDown.health.members.get(K)?.held, false, 'down overall but up here: not held');
  t.notOk(remoteDown.health.members.get(K) && 'nextChangeAt' in remoteDown.health.members.get(K)!);
});

t.test('reason lists at most three down nodes, self first', async (t) => {
  const remotes = ['sfo-1', 'fra-1', 'nyc-1', 'lhr-1'].map((n) => report(n, { [K]: ['down', n === 'lhr-1' ? '' : `fail ${n}`] }));
  const r = run({ local: snap({ [K]: fh('down', 'http 503') }), remotes });
  t.equal(r.health.members.get(K)?.reason, '5/5 nodes down (ams-1: http 503; fra-1: fail fra-1; lhr-1; +2 more)');
  const upR = run({
    local: snap({ [K]: fh('up', 'http 200') }),
    remotes: [...remotes, ...['a-1', 'b-1', 'c-1', 'd-1', 'e-1'].map((n) => report(n, { [K]: ['up', 'ok'] }))],
  });
  t.equal(upR.health.members.get(K)?.reason, 'up: 4/10 nodes down (fra-1: fail fra-1; lhr-1; nyc-1: fail nyc-1; +1 more)');
});

t.test('a report naming this node is ignored', async (t) => {
  const r = run({ local: snap({ [K]: fh('up', 'http 200') }), remotes: [report('ams-1', { [K]: ['down', 'x'] })] });
  t.same(r.fresh, ['ams-1']);
  t.equal(r.health.members.get(K)?.status, 'up');
});

// A small deterministic PRNG so a failure can be replayed.
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function shuffle<T>(xs: readonly T[], rand: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

t.test('determinism: order of remotes and choice of self do not change the statuses', async (t) => {
  const rand = rng(7);
  const nodes = ['ams-1', 'fra-1', 'lhr-1', 'nyc-1', 'sfo-1'];
  const STATUSES: HealthStatus[] = ['up', 'down', 'unknown'];
  // Each node's own verdicts on 200 keys, some missing.
  const verdicts = new Map<string, Record<string, [HealthStatus, string]>>();
  for (const n of nodes) {
    const v: Record<string, [HealthStatus, string]> = {};
    for (let i = 0; i < 200; i++) {
      if (rand() < 0.1) continue;
      v[healthKey(`m${i}`, i % 2 ? 'v4' : 'v6')] = [STATUSES[Math.floor(rand() * 3)]!, `r${i}`];
    }
    verdicts.set(n, v);
  }
  const asSelf = (self: string, quorum: Quorum, order: () => number): ConsensusResult => {
    const local: Record<string, FamilyHealth> = {};
    for (const [k, [s, reason]] of Object.entries(verdicts.get(self)!)) local[k] = fh(s, reason);
    const remotes = nodes.filter((n) => n !== self).map((n) => report(n, verdicts.get(n)!));
    return computeConsensus({
      self: { id: self, pop: self.slice(0, 3) },
      local: snap(local),
      remotes: shuffle(remotes, order),
      quorum,
      staleAfterMs: STALE,
      now: NOW,
      frozen: false,
    });
  };
  for (const quorum of [MAJORITY, { mode: 'k_of_n', k: 2 } as const]) {
    const base = asSelf('ams-1', quorum, rng(1));
    let downs = 0;
    for (const s of Object.values(statuses(base))) if (s === 'down') downs++;
    t.ok(downs > 0 && downs < base.health.members.size, `${quorum.mode}: a mix of statuses`);
    for (let i = 0; i < 5; i++) {
      const again = asSelf('ams-1', quorum, rng(100 + i));
      t.same(again.health.members, base.health.members, `${quorum.mode}: shuffle ${i}: identical health`);
      t.same(again.votes, base.votes, `${quorum.mode}: shuffle ${i}: identical votes`);
      t.same(again.fresh, base.fresh);
    }
    // Keys nobody votes on reflect each node's own view (its 'unknown' entry
    // or none); every key with a voter must come out the same everywhere.
    const decided = (r: ConsensusResult): Record<string, HealthStatus> => {
      const out: Record<string, HealthStatus> = {};
      for (const [k, v] of r.votes) {
        if (v.up.length + v.down.length > 0) out[k] = r.health.members.get(k)!.status;
        else t.not(r.health.members.get(k)?.status, 'down', `${k}: no voters is never down`);
      }
      return out;
    };
    const expected = decided(base);
    t.ok(Object.keys(expected).length > 0.8 * base.votes.size, 'most keys have voters');
    for (const other of nodes.slice(1)) {
      const theirs = asSelf(other, quorum, rng(3));
      t.same(decided(theirs), expected, `${quorum.mode}: ${other} as self agrees on every decided status`);
      t.same([...theirs.votes.keys()].sort(), [...base.votes.keys()].sort(), 'same keys considered');
    }
  }
});

t.test('1000 members x 5 nodes', async (t) => {
  const remotes: NodeReport[] = [];
  const local: Record<string, FamilyHealth> = {};
  for (let i = 0; i < 1000; i++) local[healthKey(`m${i}`, 'v4')] = fh(i % 10 === 0 ? 'down' : 'up', 'x');
  for (const n of ['fra-1', 'lhr-1', 'nyc-1', 'sfo-1']) {
    const v: Record<string, [HealthStatus, string]> = {};
    for (let i = 0; i < 1000; i++) v[healthKey(`m${i}`, 'v4')] = [i % 10 === 0 ? 'down' : 'up', 'x'];
    remotes.push(report(n, v));
  }
  const r = run({ local: snap(local), remotes });
  t.equal(r.health.members.size, 1000);
  t.equal(Object.values(statuses(r)).filter((s) => s === 'down').length, 100);
});
