// server.user / server.group: the config keys, account resolution, and the
// real switch. As root (CI), a child process binds a privileged UDP port on a
// random 127.x.y.z address, drops to `nobody`, and must then be unable to bind
// another privileged port, regain root or read a root-only file, while still
// answering on the socket it bound as root; a child that has made itself
// `nobody` must refuse to switch to another account. Not root, the refusal is
// checked in this process instead.

import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { chmodSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { ConfigErrors, compileServerAccount, parseConfig } from '../zones/config.js';
import { dropPrivileges, fileLookup, PrivilegeError, resolveAccount, systemLookup, type AccountLookup } from '../server/privileges.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const FIXTURE = join(here, 'fixtures', 'privdrop-serve.ts');
const silent = pino({ level: 'silent' });
const ZONES = 'zones:\n  - origin: a.test.\n    file: a.zone\n';

function configErrors(text: string): string[] {
  try {
    parseConfig(text, 'v.yaml');
  } catch (e) {
    if (e instanceof ConfigErrors) return e.errors.map((x) => x.message);
    throw e;
  }
  return [];
}

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  return undefined;
}

t.test('config: server.user and server.group', async (t) => {
  const named = parseConfig(`server:\n  user: vigil\n  group: dns\n${ZONES}`, 'v.yaml');
  t.same(compileServerAccount(named.raw), { user: 'vigil', group: 'dns' });
  const numeric = parseConfig(`server: { user: 10053, group: 0 }\n${ZONES}`, 'v.yaml');
  t.same(compileServerAccount(numeric.raw), { user: '10053', group: '0' }, 'ids become decimal text');
  t.same(compileServerAccount(parseConfig(ZONES, 'v.yaml').raw), {}, 'absent: nothing to switch to');
  t.same(compileServerAccount(parseConfig(`server: {}\n${ZONES}`, 'v.yaml').raw), {});

  t.match(configErrors(`server: { group: dns }\n${ZONES}`), [/v\.yaml:1:\d+: server: group is set without user/]);
  t.match(configErrors(`server: { user: 0 }\n${ZONES}`), [/server\.user: must not be 0/]);
  t.match(configErrors(`server: { user: "-rf" }\n${ZONES}`), [/server\.user: must be an account name/]);
  t.match(configErrors(`server: { user: "" }\n${ZONES}`), [/server\.user/]);
  t.match(configErrors(`server: { user: [a] }\n${ZONES}`), [/server\.user: must be string or integer/]);
  t.match(configErrors(`server: { usr: vigil }\n${ZONES}`), [/unknown key "usr" \(expected one of: user, group/]);
});

const PASSWD = `root:x:0:0:root:/root:/bin/bash
# a comment
vigil:x:10053:10053:Vigil:/nonexistent:/usr/sbin/nologin
42:x:4242:100::/:/bin/false
broken:x:notanumber:1::/:/bin/false
`;
const GROUP = `root:x:0:
users:x:100:
vigil:x:10053:
dns:x:53:vigil
`;
const fake: AccountLookup = (db, key) => fileLookup(db, key, db === 'passwd' ? PASSWD : GROUP);

t.test('resolving accounts (passwd and group in the files format)', async (t) => {
  t.same(resolveAccount({ user: 'vigil' }, fake), { user: 'vigil', uid: 10053, group: 'vigil', gid: 10053 }, 'the primary group by default');
  t.same(resolveAccount({ user: '10053', group: 'dns' }, fake), { user: 'vigil', uid: 10053, group: 'dns', gid: 53 }, 'a uid finds its name');
  t.same(resolveAccount({ user: 'vigil', group: '7' }, fake), { user: 'vigil', uid: 10053, group: '7', gid: 7 }, 'a gid without an entry is taken as it is');
  t.same(resolveAccount({ user: '20000', group: 'users' }, fake), { user: '20000', uid: 20000, group: 'users', gid: 100 }, 'a uid without an entry, with a group');
  t.same(resolveAccount({ user: '42' }, fake)?.uid, 4242, 'a name made of digits that is no uid is still a name');
  t.equal(resolveAccount({}, fake), undefined, 'no user: nothing to do');

  const unknown = thrown(() => resolveAccount({ user: 'nosuch' }, fake));
  t.type(unknown, PrivilegeError);
  t.match(unknown, { name: 'PrivilegeError', user: 'nosuch', group: undefined, message: /unknown user "nosuch"/ });
  t.match(thrown(() => resolveAccount({ user: 'vigil', group: 'nogroup-here' }, fake)), { name: 'PrivilegeError', user: 'vigil', group: 'nogroup-here', message: /unknown group "nogroup-here"/ });
  t.match(thrown(() => resolveAccount({ user: '20000' }, fake)), { name: 'PrivilegeError', message: /uid 20000 has no passwd entry.*set server\.group/ });
  t.match(thrown(() => resolveAccount({ group: 'dns' }, fake)), { name: 'PrivilegeError', group: 'dns', message: /without server\.user/ });
  t.match(thrown(() => resolveAccount({ user: 'broken' }, fake)), { name: 'PrivilegeError', message: /malformed passwd entry/ });
  const failing: AccountLookup = () => {
    throw new Error('NSS is down');
  };
  t.match(thrown(() => resolveAccount({ user: 'vigil' }, failing)), { name: 'PrivilegeError', user: 'vigil', message: /cannot look up user "vigil": NSS is down/ });
});

t.test('the system database (getent, else /etc/passwd)', async (t) => {
  t.same(resolveAccount({ user: 'root' }, systemLookup), { user: 'root', uid: 0, group: 'root', gid: 0 });
  t.same(resolveAccount({ user: '0' }, systemLookup)?.user, 'root');
  const uid = process.getuid!();
  const err = thrown(() => dropPrivileges({ user: 'vigil-h12-no-such-user' }, silent));
  t.match(err, { name: 'PrivilegeError', user: 'vigil-h12-no-such-user', message: /unknown user "vigil-h12-no-such-user"/ });
  t.match(thrown(() => dropPrivileges({ user: 'root' }, silent)), { name: 'PrivilegeError', user: 'root', message: /is root \(uid 0\): name an unprivileged account/ });
  t.equal(process.getuid!(), uid, 'a refused switch changes nothing');
  t.equal(dropPrivileges({}, silent), undefined, 'no server.user: nothing happens');
});

interface Line {
  event: string;
  [key: string]: unknown;
}

interface RunningChild {
  readonly proc: ChildProcess;
  /** Resolves with the first line whose event is `event`; rejects on exit or after the limit. */
  next(event: string, limitMs?: number): Promise<Line>;
  exited: Promise<number | null>;
  stderr(): string;
}

/** The fixture under tsx, with its stdout read as JSON lines. */
function startFixture(t: Test, args: string[]): RunningChild {
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const lines: Line[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    lines.push(JSON.parse(l) as Line);
    for (const w of waiters.splice(0)) w();
  });
  let exitCode: number | null | undefined;
  // 'close', not 'exit': by then stdout and stderr have been read to the end.
  const exited = new Promise<number | null>((resolve) =>
    proc.on('close', (code) => {
      exitCode = code;
      resolve(code);
      for (const w of waiters.splice(0)) w();
    }),
  );
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return {
    proc,
    exited,
    stderr: () => err,
    next(event, limitMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${event}" line within ${limitMs} ms; stderr:\n${err}`)), limitMs);
        const look = (): void => {
          const hit = lines.find((l) => l.event === event);
          if (hit !== undefined) {
            clearTimeout(timer);
            resolve(hit);
          } else if (exitCode !== undefined) {
            clearTimeout(timer);
            reject(new Error(`exited (${exitCode}) without a "${event}" line; lines: ${JSON.stringify(lines)}; stderr:\n${err}`));
          } else waiters.push(look);
        };
        look();
      });
    },
  };
}

function udpExchange(address: string, port: number, text: string, limitMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error(`no UDP answer from ${address}:${port} within ${limitMs} ms`));
    }, limitMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m.toString());
    });
    s.send(text, port, address);
  });
}

const isRoot = process.geteuid !== undefined && process.geteuid() === 0;
const octet = (): number => 1 + Math.floor(Math.random() * 254);

if (isRoot) {
  t.test('as root: bind, drop to nobody, keep serving, and nothing privileged is left', async (t) => {
    const nobody = resolveAccount({ user: 'nobody' });
    t.ok(nobody, 'the system has a nobody account');
    if (nobody === undefined) return;
    const dir = t.testdir({});
    const secret = join(dir, 'root-only');
    writeFileSync(secret, 'secret\n');
    chmodSync(secret, 0o600);
    // Away from 127.0.0.x, where other tests run their servers.
    const address = `127.${octet()}.${octet()}.${octet()}`;
    const child = startFixture(t, ['serve', address, 'nobody', secret]);

    const bound = await child.next('bound');
    t.equal(bound['uid'], 0, 'the fixture starts as root');
    const port = bound['port'] as number;
    t.ok(port < (bound['limit'] as number), `it bound privileged port ${port} (below ip_unprivileged_port_start ${String(bound['limit'])})`);

    const dropped = await child.next('dropped');
    t.same(dropped['account'], nobody, 'dropPrivileges returned the account');
    const after = await child.next('after');
    t.equal(after['uid'], nobody.uid, 'real uid');
    t.equal(after['euid'], nobody.uid, 'effective uid');
    t.equal(after['gid'], nobody.gid, 'real gid');
    t.equal(after['egid'], nobody.gid, 'effective gid');
    t.same(after['groups'], [nobody.gid], 'no supplementary group but the primary one');
    const status = after['status'] as string[];
    t.ok(status.includes(`Uid:\t${nobody.uid}\t${nobody.uid}\t${nobody.uid}\t${nobody.uid}`), 'real, effective, saved and fs uid (/proc/self/status)');
    t.ok(status.includes(`Gid:\t${nobody.gid}\t${nobody.gid}\t${nobody.gid}\t${nobody.gid}`), 'real, effective, saved and fs gid');
    t.ok(status.includes('CapEff:\t0000000000000000'), 'no effective capability');
    t.ok(status.includes('CapPrm:\t0000000000000000'), 'no permitted capability');
    t.equal(after['bindUdp'], 'EACCES', `binding UDP port ${String(after['otherPort'])} is refused`);
    t.equal(after['bindTcp'], 'EACCES', `binding TCP port ${String(after['otherPort'])} is refused`);
    t.equal(after['bindHigh'], 'ok', 'an unprivileged port still binds (the refusal above is about privilege)');
    t.equal(after['setuid0'], 'EPERM', 'setuid(0) fails');
    t.equal(after['setgid0'], 'EPERM', 'setgid(0) fails');
    t.equal(after['readRootOnly'], 'EACCES', 'a root-only file cannot be read');
    t.same(after['worker'], { uid: nobody.uid, bind: 'EACCES' }, 'a worker thread started before the drop lost root too');

    const reply = JSON.parse(await udpExchange(address, port, 'ping')) as { pong: string; uid: number };
    t.same(reply, { pong: 'ping', uid: nobody.uid }, 'the socket bound as root still answers, from the unprivileged process');
    await udpExchange(address, port, 'quit', 2000).catch(() => '');
    t.equal(await child.exited, 0, 'the fixture ends cleanly');
    // Read once the child is gone: its stderr and stdout are separate pipes, with no order between them.
    t.match(child.stderr(), /"msg":"dropped privileges"/, 'the switch is logged');
  });

  t.test('running as nobody: only nobody itself is accepted', async (t) => {
    const nobody = resolveAccount({ user: 'nobody' });
    const other = resolveAccount({ user: 'daemon' }) ?? resolveAccount({ user: 'bin' });
    t.ok(nobody !== undefined && other !== undefined, 'nobody and another system account exist');
    if (nobody === undefined || other === undefined) return;
    const as = `${nobody.uid}:${nobody.gid}`;
    const refused = startFixture(t, ['drop-as', as, other.user]);
    const err = await refused.next('error');
    t.equal(err['name'], 'PrivilegeError');
    t.equal(err['user'], other.user, 'the error carries the configured user');
    t.match(err['message'], new RegExp(`cannot switch to ${other.user} \\(uid ${other.uid}.*runs as uid ${nobody.uid}, not as root`));
    t.equal(await refused.exited, 3);

    const same = startFixture(t, ['drop-as', as, 'nobody']);
    t.same((await same.next('dropped'))['account'], nobody, 'already that user: accepted, nothing to do');
    t.equal(await same.exited, 0);
    t.match(same.stderr(), /already running as nobody/, 'and says so');

    const group = startFixture(t, ['drop-as', as, 'nobody', 'root']);
    t.match((await group.next('error'))['message'], /runs as gid \d+, not as root/, 'the right user in another group is refused');
    t.equal(await group.exited, 3);
  });
} else {
  t.test('not root: switching to another account is refused', async (t) => {
    const uid = process.getuid!();
    const gid = process.getgid!();
    // A uid that is not ours, given with a group so that it needs no passwd entry.
    const other = String(uid + 1);
    const err = thrown(() => dropPrivileges({ user: other, group: String(gid) }, silent));
    t.type(err, PrivilegeError);
    t.match(err, { user: other, message: new RegExp(`cannot switch to .*runs as uid ${uid}, not as root`) });
    t.equal(process.getuid!(), uid, 'nothing changed');
    const same = dropPrivileges({ user: String(uid), group: String(gid) }, silent);
    t.match(same, { uid, gid }, 'already that user: accepted');
  });
}
