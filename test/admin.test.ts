// The admin API's own contract: bearer-token auth, JSON errors, and each
// action's effect on a DNS answer, against a real daemon on loopback.

import t from 'tap';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';
import { pino } from 'pino';
import { startDaemon } from '../server/daemon.js';

const TOKEN = 'a-long-enough-test-token-0123456789';

const ZONE = `$ORIGIN adm.test.
$TTL 300
@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@ NS ns1
ns1 A 127.0.0.1
`;

const YAML = `listen: ["127.0.0.1:0"]
admin: { listen: "127.0.0.1:0", token_file: token }
zones:
  - origin: adm.test.
    file: adm.test.zone
services:
  - name: www.adm.test.
    policy: failover
    ttl: 30
    degraded_ttl: 2
    probe: { type: none }
    members:
      - { name: a, addresses: ["192.0.2.1"], priority: 1 }
      - { name: b, addresses: ["192.0.2.2"], priority: 2 }
`;

t.test('admin API: token, errors, and actions that move answers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-admin-'));
  writeFileSync(join(dir, 'adm.test.zone'), ZONE);
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
  writeFileSync(join(dir, 'vigil.yaml'), YAML);
  const daemon = await startDaemon(join(dir, 'vigil.yaml'), pino({ level: 'silent' }), { levelFixed: true });
  t.teardown(async () => {
    await daemon.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const base = `http://127.0.0.1:${daemon.admin!.address.port}`;
  const call = async (method: string, path: string, opts: { token?: string; body?: string } = {}): Promise<{ status: number; json: Record<string, unknown> }> => {
    const headers: Record<string, string> = {};
    if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(base + path, { method, headers, ...(opts.body !== undefined ? { body: opts.body } : {}) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const answer = async (): Promise<string> => {
    const r = new Resolver({ timeout: 1000, tries: 2 });
    r.setServers([`127.0.0.1:${daemon.server.addresses.udp[0]!.port}`]);
    return (await r.resolve4('www.adm.test')).join(',');
  };

  t.equal((await call('GET', '/state')).status, 401, 'no token: 401');
  t.equal((await call('GET', '/state', { token: 'wrong' })).status, 401, 'wrong token: 401');
  t.equal((await call('GET', '/state', { token: TOKEN.slice(0, -1) })).status, 401, 'a prefix of the token: 401');
  const state = await call('GET', '/state', { token: TOKEN });
  t.equal(state.status, 200);
  t.match(state.json, { node: { pop: 'default' }, replication: { redis: 'none' } });

  t.equal((await call('GET', '/nope', { token: TOKEN })).status, 404);
  const notJson = await call('POST', '/overrides', { token: TOKEN, body: '{oops' });
  t.equal(notJson.status, 400);
  t.match(notJson.json['error'], /not JSON/);
  const missing = await call('POST', '/overrides', { token: TOKEN, body: JSON.stringify({ member: 'www.adm.test./a' }) });
  t.equal(missing.status, 400);
  t.match(missing.json['error'], /action|reason/);
  const unknown = await call('POST', '/overrides', { token: TOKEN, body: JSON.stringify({ member: 'www.adm.test./zz', action: 'drain', reason: 'x' }) });
  t.equal(unknown.status, 404);
  t.equal((await call('GET', '/audit?count=0', { token: TOKEN })).status, 400);

  t.equal(await answer(), '192.0.2.1');
  const drained = await call('POST', '/overrides', { token: TOKEN, body: JSON.stringify({ member: 'www.adm.test./a', action: 'drain', reason: 'maintenance', by: 'erin' }) });
  t.equal(drained.status, 200);
  t.equal(await answer(), '192.0.2.2', 'drain moves the answer at once');
  const forced = await call('POST', '/overrides', { token: TOKEN, body: JSON.stringify({ member: 'www.adm.test./b', action: 'force_down', reason: 'test' }) });
  t.equal(forced.status, 200);
  t.equal((await answer()).split(',').sort().join(','), '192.0.2.1,192.0.2.2', 'nothing up: fails open, never empty');
  t.equal((await call('DELETE', `/overrides/${encodeURIComponent('www.adm.test./a')}`, { token: TOKEN })).status, 200);
  t.equal(await answer(), '192.0.2.1', 'cleared: back on a');
  t.equal((await call('DELETE', `/overrides/${encodeURIComponent('www.adm.test./a')}`, { token: TOKEN })).status, 404, 'nothing left to clear');
  const audit = await call('GET', '/audit?count=10', { token: TOKEN });
  const events = (audit.json['entries'] as { event: string; by: string }[]).map((e) => `${e.event} ${e.by}`);
  t.ok(events.includes('override.set erin'), 'audited in-process too, with who');
  t.ok(events.some((e) => e.startsWith('override.clear')));

  const drain = await call('GET', '/drain', { token: TOKEN });
  t.equal(drain.status, 200);
  t.ok(Array.isArray(drain.json['services']));
  t.equal((await call('POST', '/reload', { token: TOKEN })).status, 200, 'reload through the API');
});

t.test('a token is required off loopback', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-admin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'adm.test.zone'), ZONE);
  writeFileSync(join(dir, 'vigil.yaml'), YAML.replace('admin: { listen: "127.0.0.1:0", token_file: token }', 'admin: { listen: "192.0.2.1:8053" }'));
  await t.rejects(startDaemon(join(dir, 'vigil.yaml'), pino({ level: 'silent' }), { levelFixed: true }), { name: 'ConfigRefused', message: /off loopback: set admin.token_file/ });
});
