// Cross-node consensus: this node's own health plus the verdicts other nodes
// published become the HealthSnapshot the answer policies consume. Pure: no
// clock, no I/O, time comes in as `now`. The rules and their reasons are in
// ./README.md; the status they produce must be the same on every node given
// the same reports, so nothing here depends on the order of `remotes`.

import type { FamilyHealth, HealthSnapshot, HealthStatus } from '../health/state.js';
import type { NodeIdentity, NodeReport, Quorum } from './types.js';

export interface ConsensusInput {
  readonly self: NodeIdentity;
  /** This node's own probe results. */
  readonly local: HealthSnapshot;
  /** Other nodes (never includes self), stale ones too. */
  readonly remotes: readonly NodeReport[];
  readonly quorum: Quorum;
  readonly staleAfterMs: number;
  readonly now: number;
  /** Redis is unreachable but within the outage grace: remote reports count whatever their age. */
  readonly frozen: boolean;
  /** The previous result's health, so an unchanged status keeps its `since`. */
  readonly previous?: HealthSnapshot;
}

export interface MemberVotes {
  /** Node ids. */
  readonly up: readonly string[];
  readonly down: readonly string[];
  /** Fresh nodes with no verdict or 'unknown'. */
  readonly unknown: readonly string[];
  /** Down votes needed for 'down' with the voters present. */
  readonly required: number;
}

export interface ConsensusResult {
  /** failbackApproved copied from local. */
  readonly health: HealthSnapshot;
  /** By healthKey. */
  readonly votes: ReadonlyMap<string, MemberVotes>;
  /** Node ids that count (self first). */
  readonly fresh: readonly string[];
  readonly stale: readonly string[];
}

export class ConsensusInputError extends Error {
  override name = 'ConsensusInputError';
  constructor(
    message: string,
    readonly field: string,
    readonly value: unknown,
  ) {
    super(message);
  }
}

/** How many down reasons a consensus reason lists before "+N more". */
const MAX_LISTED = 3;

/** One fresh node as consensus sees it: its id and where its verdict on a key comes from. */
interface Voter {
  readonly id: string;
  /** Status and reason on `key`, or undefined when it has no verdict. */
  readonly lookup: (key: string) => { readonly status: HealthStatus; readonly reason: string } | undefined;
}

function validate(input: ConsensusInput): void {
  const q = input.quorum;
  if (q.mode === 'k_of_n' && !(Number.isInteger(q.k) && q.k >= 1)) {
    // k = 0 would make every member down with zero down votes.
    throw new ConsensusInputError(`quorum k must be a positive integer, got ${q.k}`, 'quorum.k', q.k);
  }
  if (!(input.staleAfterMs >= 0)) {
    throw new ConsensusInputError(`staleAfterMs must be a non-negative number, got ${input.staleAfterMs}`, 'staleAfterMs', input.staleAfterMs);
  }
}

/**
 * Down votes needed with `voters` nodes voting. Never 0: with nobody voting
 * nothing can be down.
 */
export function requiredDownVotes(quorum: Quorum, voters: number): number {
  if (quorum.mode === 'majority') return Math.floor(voters / 2) + 1;
  return Math.max(1, Math.min(quorum.k, voters));
}

function byId(a: NodeReport, b: NodeReport): number {
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0;
}

function listDown(down: readonly string[], reasons: readonly string[]): string {
  const parts: string[] = [];
  const n = Math.min(down.length, MAX_LISTED);
  for (let i = 0; i < n; i++) {
    const reason = reasons[i];
    parts.push(reason ? `${down[i]}: ${reason}` : `${down[i]}`);
  }
  if (down.length > n) parts.push(`+${down.length - n} more`);
  return parts.join('; ');
}

function consensusReason(status: HealthStatus, up: number, down: readonly string[], downReasons: readonly string[]): string {
  const voters = up + down.length;
  if (status === 'down') return `${down.length}/${voters} nodes down (${listDown(down, downReasons)})`;
  if (down.length === 0) return `up on ${up}/${voters} nodes`;
  return `up: ${down.length}/${voters} nodes down (${listDown(down, downReasons)})`;
}

export function computeConsensus(input: ConsensusInput): ConsensusResult {
  validate(input);
  const { self, local, quorum, now, previous } = input;

  // Sorting the nodes once makes every per-key list come out in a fixed
  // order without a per-key sort (the reason string lists nodes in it).
  const freshReports: NodeReport[] = [];
  const staleIds: string[] = [];
  for (const r of input.remotes) {
    // The store never lists us; if it ever did, our own local view must not
    // vote twice.
    if (r.node === self.id) continue;
    if (input.frozen || now - r.lastSeen <= input.staleAfterMs) freshReports.push(r);
    else staleIds.push(r.node);
  }
  freshReports.sort(byId);
  staleIds.sort();

  const voters: Voter[] = [
    { id: self.id, lookup: (key) => local.members.get(key) },
    ...freshReports.map((r): Voter => ({ id: r.node, lookup: (key) => r.verdicts.get(key) })),
  ];
  const alone = voters.length === 1;

  const keys = new Set<string>(local.members.keys());
  for (const r of freshReports) for (const key of r.verdicts.keys()) keys.add(key);

  const members = new Map<string, FamilyHealth>();
  const votes = new Map<string, MemberVotes>();
  for (const key of keys) {
    const up: string[] = [];
    const down: string[] = [];
    const unknown: string[] = [];
    const downReasons: string[] = [];
    for (const v of voters) {
      const verdict = v.lookup(key);
      if (verdict === undefined || verdict.status === 'unknown') unknown.push(v.id);
      else if (verdict.status === 'up') up.push(v.id);
      else {
        down.push(v.id);
        if (downReasons.length < MAX_LISTED) downReasons.push(verdict.reason);
      }
    }
    const voting = up.length + down.length;
    const required = requiredDownVotes(quorum, voting);
    votes.set(key, { up, down, unknown, required });

    const mine = local.members.get(key);
    if (voting === 0) {
      // Nobody knows: our own 'unknown' entry, or nothing, so the service's
      // initialState applies exactly as it would without replication.
      if (mine !== undefined) members.set(key, mine);
      continue;
    }
    const status: HealthStatus = down.length >= required ? 'down' : 'up';
    const before = previous?.members.get(key);
    let since: number;
    if (before !== undefined) since = before.status === status ? before.since : now;
    else since = mine !== undefined && mine.status === status ? mine.since : now;

    const health: FamilyHealth = {
      status,
      since,
      // Alone, a node reads exactly as it would without replication.
      reason: alone && mine !== undefined ? mine.reason : consensusReason(status, up.length, down, downReasons),
      held: status === 'down' && mine !== undefined && mine.status === 'down' ? mine.held : false,
      // Our own pending change may tip the vote; answers must not outlive it.
      ...(mine?.nextChangeAt === undefined ? {} : { nextChangeAt: mine.nextChangeAt }),
    };
    members.set(key, Object.freeze(health));
  }

  return {
    health: { members, failbackApproved: local.failbackApproved },
    votes,
    fresh: voters.map((v) => v.id),
    stale: staleIds,
  };
}
