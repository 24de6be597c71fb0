// Keys a reload cannot apply (listeners, the account the process runs as)
// are kept as they are, with a warning that says so, and the rest of the
// reload goes through.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';
import { startDaemon } from '../server/daemon.js';
import { captureLog } from './helpers/log-capture.js';

const dir = mkdtempSync(join(tmpdir(), 'vigil-restart-keys-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const zone = (addr: string): string => `$ORIGIN k.test.\n@ 300 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ 300 NS ns1\nns1 300 A 127.0.0.1\nwww 300 A ${addr}\n`;
const config = (extra: string): string => `listen: ["127.0.0.1:0"]\n${extra}zones:\n  - origin: k.test.\n    file: k.zone\n`;

t.test('server.user and server.group changes wait for a restart; the zones reload', async (t) => {
  writeFileSync(join(dir, 'k.zone'), zone('192.0.2.1'));
  const file = join(dir, 'v.yaml');
  writeFileSync(file, config(''));
  const { log, lines } = captureLog();
  const daemon = await startDaemon(file, log, { levelFixed: true });
  t.teardown(() => daemon.close());
  const uid = process.getuid!();

  writeFileSync(join(dir, 'k.zone'), zone('192.0.2.2'));
  writeFileSync(file, config('server: { user: nobody, group: nogroup }\n'));
  const r = await daemon.reload();
  t.same(r, { ok: true }, 'the reload is accepted');
  t.ok(
    lines.some((l) => l.level === 40 && /server\.user or server\.group changed: it takes effect at the next restart/.test(l.msg)),
    'a warning says the account changes at the next restart',
  );
  t.equal(process.getuid!(), uid, 'the process still runs as it did');
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  resolver.setServers([`127.0.0.1:${daemon.server.addresses.udp[0]!.port}`]);
  t.same(await resolver.resolve4('www.k.test'), ['192.0.2.2'], 'the zone change took effect');

  lines.length = 0;
  writeFileSync(file, config('server: { user: nobody, group: nogroup }\n'));
  await daemon.reload();
  t.notOk(lines.some((l) => /server\.user or server\.group changed/.test(l.msg)), 'no warning when they did not change again');
});
