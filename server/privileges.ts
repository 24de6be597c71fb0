// Started as root so that it can bind port 53, Vigil switches to an
// unprivileged account once every listener is bound (`server.user` and
// `server.group`), as NSD (`username:`), Knot (`user:`) and BIND (`-u`) do.
// The other two ways to serve port 53 without root, CAP_NET_BIND_SERVICE and
// the `ip_unprivileged_port_start` sysctl, never start as root and leave
// `server.user` unset (deploy/README.md compares them).
//
// Names are resolved with getent, so accounts from NSS (LDAP, systemd's
// DynamicUser, sssd) work; without getent, /etc/passwd and /etc/group are
// read. No native module is needed: Node's process.setuid() is setuid(2),
// which for root sets the real, effective and saved uid at once, and glibc
// applies it to every thread of the process (the probe worker, libuv's pool,
// a pino transport) before it returns. seteuid/setegid alone would leave the
// saved uid at 0, from which any code in the process could become root again.

import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import type { Logger } from 'pino';

export interface PrivilegeSettings {
  /** Account name or numeric uid (as a decimal string) to run as once the listeners are bound. */
  readonly user?: string | undefined;
  /** Group name or numeric gid; absent: the user's primary group. */
  readonly group?: string | undefined;
}

/** The account the process runs as after dropPrivileges. */
export interface Account {
  readonly user: string;
  readonly uid: number;
  /** Group name, or the gid as text when it has no name. */
  readonly group: string;
  readonly gid: number;
}

export class PrivilegeError extends Error {
  override name = 'PrivilegeError';
  constructor(
    message: string,
    /** server.user as configured. */
    readonly user: string | undefined,
    /** server.group as configured (undefined: the user's primary group). */
    readonly group: string | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * One entry of the passwd or group database as its colon-separated fields,
 * looked up by name or by numeric id; undefined when there is none.
 */
export type AccountLookup = (db: 'passwd' | 'group', key: string) => readonly string[] | undefined;

const MAX_ID = 4294967294; // (uid_t)-1 means "no change" to setuid(2), so it is no account.
const NUMERIC = /^[0-9]+$/;

/** getent when installed (it sees every NSS source), else the local files. */
export const systemLookup: AccountLookup = (db, key) => {
  try {
    const out = execFileSync('getent', [db, key], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
    const line = out.split('\n', 1)[0] ?? '';
    return line === '' ? undefined : line.split(':');
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { status?: number | null };
    // getent(1): 2 = key not found in the database.
    if (e.status === 2) return undefined;
    if (e.code === 'ENOENT') return fileLookup(db, key);
    throw new Error(`getent ${db} ${key} failed: ${e.message}`, { cause: err });
  }
};

/**
 * Reads /etc/passwd or /etc/group (or `text` in that format): the first entry
 * whose name matches, or for a numeric key, whose id matches (then, as
 * getent does, a name made of digits).
 */
export function fileLookup(db: 'passwd' | 'group', key: string, text?: string): readonly string[] | undefined {
  const entries = (text ?? readFileSync(`/etc/${db}`, 'utf8'))
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.split(':'));
  return (NUMERIC.test(key) ? entries.find((f) => f[2] === key) : undefined) ?? entries.find((f) => f[0] === key);
}

function parseId(text: string | undefined): number | undefined {
  if (text === undefined || !NUMERIC.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_ID ? n : undefined;
}

/**
 * The uid and gid `settings` name, without changing anything; undefined when
 * no user is configured. A numeric user or group with no database entry is
 * taken as that id (as chown does), but then the group must be given: there
 * is no primary group to default to.
 */
export function resolveAccount(settings: PrivilegeSettings, lookup: AccountLookup = systemLookup): Account | undefined {
  const { user, group } = settings;
  const fail = (message: string, cause?: unknown): PrivilegeError => new PrivilegeError(message, user, group, cause === undefined ? undefined : { cause });
  if (user === undefined) {
    if (group !== undefined) throw fail(`server.group "${group}" is set without server.user`);
    return undefined;
  }
  let pw: readonly string[] | undefined;
  try {
    pw = lookup('passwd', user);
  } catch (err) {
    throw fail(`cannot look up user "${user}": ${(err as Error).message}`, err);
  }
  let uid: number | undefined;
  let name = user;
  let primaryGid: number | undefined;
  if (pw !== undefined) {
    name = pw[0] ?? user;
    uid = parseId(pw[2]);
    primaryGid = parseId(pw[3]);
    if (uid === undefined) throw fail(`user "${user}" has a malformed passwd entry (uid "${pw[2] ?? ''}")`);
  } else {
    uid = parseId(user);
    if (uid === undefined) throw fail(`unknown user "${user}" (no passwd entry)`);
  }

  let gid: number | undefined;
  let groupName: string | undefined;
  const groupKey = group ?? (primaryGid !== undefined ? String(primaryGid) : undefined);
  if (groupKey === undefined) throw fail(`uid ${uid} has no passwd entry, so it has no primary group: set server.group`);
  let gr: readonly string[] | undefined;
  try {
    gr = lookup('group', groupKey);
  } catch (err) {
    throw fail(`cannot look up group "${groupKey}": ${(err as Error).message}`, err);
  }
  if (gr !== undefined) {
    gid = parseId(gr[2]);
    groupName = gr[0];
    if (gid === undefined) throw fail(`group "${groupKey}" has a malformed group entry (gid "${gr[2] ?? ''}")`);
  } else {
    gid = parseId(groupKey);
    if (gid === undefined) throw fail(`unknown group "${groupKey}" (no group entry)`);
  }
  return { user: name, uid, group: groupName ?? String(gid), gid };
}

interface ProcessIds {
  readonly uid: readonly number[];
  readonly gid: readonly number[];
  readonly capEff: bigint;
}

/** Real, effective, saved and filesystem ids and effective capabilities of every thread, from /proc; empty off Linux. */
function threadIds(): ProcessIds[] {
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return [];
  }
  const out: ProcessIds[] = [];
  for (const task of tasks) {
    let status: string;
    try {
      status = readFileSync(`/proc/self/task/${task}/status`, 'utf8');
    } catch {
      continue; // the thread ended between the listing and the read
    }
    const ids = (key: string): number[] => (new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '').trim().split(/\s+/).map(Number);
    const cap = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    out.push({ uid: ids('Uid'), gid: ids('Gid'), capEff: cap === undefined ? 0n : BigInt(`0x${cap}`) });
  }
  return out;
}

/** Throws unless every id of the process (and of each of its threads, where /proc shows them) is the account's and root is out of reach. */
function verify(acc: Account, settings: PrivilegeSettings): void {
  const fail = (what: string): never => {
    throw new PrivilegeError(`privileges not dropped to ${acc.user} (uid ${acc.uid}, gid ${acc.gid}): ${what}`, settings.user, settings.group);
  };
  const uid = process.getuid!();
  const euid = process.geteuid!();
  const gid = process.getgid!();
  const egid = process.getegid!();
  if (uid !== acc.uid || euid !== acc.uid) fail(`uid ${uid}, euid ${euid}`);
  if (gid !== acc.gid || egid !== acc.gid) fail(`gid ${gid}, egid ${egid}`);
  const groups = process.getgroups!();
  if (groups.some((g) => g !== acc.gid)) fail(`supplementary groups ${groups.join(',')}`);
  for (const t of threadIds()) {
    if (t.uid.some((u) => u !== acc.uid)) fail(`a thread has uids (real, effective, saved, fs) ${t.uid.join(' ')}`);
    if (t.gid.some((g) => g !== acc.gid)) fail(`a thread has gids (real, effective, saved, fs) ${t.gid.join(' ')}`);
    if (t.capEff !== 0n) fail(`a thread keeps capabilities ${t.capEff.toString(16)}`);
  }
  // The proof that the saved uid is gone too: an unprivileged process may
  // setuid(0) exactly when its real or saved uid is 0.
  let regained = true;
  try {
    process.setuid!(0);
  } catch {
    regained = false;
  }
  if (regained) fail('setuid(0) still succeeds');
}

/**
 * Switches the process to `settings.user` (and `settings.group`, else the
 * user's primary group; supplementary groups are dropped) for good. Call it
 * once every privileged socket is bound: afterwards no port below 1024 can
 * be bound and no file only root may read can be opened, which includes
 * config, zone and secret files read again on reload.
 *
 * Without `settings.user` it does nothing and returns undefined. Not
 * running as root, it accepts only the account already in use, and
 * otherwise throws. Any failure is a PrivilegeError; after one thrown while
 * switching, the process may hold a mix of ids and must exit.
 */
export function dropPrivileges(settings: PrivilegeSettings, log: Logger, lookup: AccountLookup = systemLookup): Account | undefined {
  const acc = resolveAccount(settings, lookup);
  if (acc === undefined) return undefined;
  const { user, group } = settings;
  if (acc.uid === 0) throw new PrivilegeError(`server.user "${user}" is root (uid 0): name an unprivileged account`, user, group);
  if (process.setuid === undefined || process.setgid === undefined || process.setgroups === undefined || process.geteuid === undefined) {
    throw new PrivilegeError(`server.user is not supported on ${process.platform}`, user, group);
  }
  const euid = process.geteuid();
  if (euid !== 0) {
    if (process.getuid!() === acc.uid && euid === acc.uid && (group === undefined || process.getegid!() === acc.gid)) {
      log.info({ user: acc.user, uid: acc.uid, gid: process.getegid!() }, `already running as ${acc.user}; no privileges to drop`);
      return acc;
    }
    const now = group === undefined || process.getuid!() !== acc.uid ? `uid ${euid}` : `gid ${process.getegid!()}`;
    throw new PrivilegeError(
      `cannot switch to ${acc.user} (uid ${acc.uid}, gid ${acc.gid}): the process runs as ${now}, not as root. ` +
        'Either start it as root, or leave server.user unset and start it as that user (with CAP_NET_BIND_SERVICE for port 53)',
      user,
      group,
    );
  }
  try {
    // Groups first: once the uid is no longer 0, the process may not change them.
    process.setgroups([acc.gid]);
    process.setgid(acc.gid);
    process.setuid(acc.uid);
  } catch (err) {
    throw new PrivilegeError(`switching to ${acc.user} (uid ${acc.uid}, gid ${acc.gid}) failed: ${(err as Error).message}`, user, group, { cause: err });
  }
  verify(acc, settings);
  log.info({ user: acc.user, uid: acc.uid, group: acc.group, gid: acc.gid }, 'dropped privileges');
  return acc;
}
