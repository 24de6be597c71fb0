// The probe monitor publishes a new health snapshot only when a verdict says
// something new. Checks that confirm what is known (nearly all of them) keep
// snapshot() the same object, which is what lets the engine keep its
// consensus between recomputes instead of redoing it for every member; a
// member going down still makes a new one at once.

import t from 'tap';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../zones/load.js';
import { HealthMonitor } from '../probes/monitor.js';
import { healthKey } from '../probes/health/state.js';

function listen(host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer((sock) => sock.destroy());
    s.once('error', reject);
    s.listen(port, host, () => resolve(s));
  });
}

t.test('checks that confirm the known health keep the snapshot; a change replaces it', async (t) => {
  const a = await listen('127.0.0.51', 0);
  const port = (a.address() as { port: number }).port;
  const b = await listen('127.0.0.52', port);
  const dir = mkdtempSync(join(tmpdir(), 'vigil-churn-monitor-'));
  const monitor = new HealthMonitor({ logger: pino({ level: 'silent' }) });
  t.teardown(async () => {
    await monitor.close();
    a.close();
    b.close();
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(
    join(dir, 'vigil.yaml'),
    `zones:
  - origin: mon.test.
    records: ["@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300", "@ 3600 IN NS ns1", "ns1 3600 IN A 192.0.2.53"]
services:
  - name: www.mon.test.
    probe: { type: tcp, port: ${port}, interval: 50ms, recheck: 50ms, timeout: 500ms, jitter: 0ms, rise: 1, fall: 1 }
    damping: false
    members:
      - { name: a, addresses: ["127.0.0.51"], priority: 1 }
      - { name: b, addresses: ["127.0.0.52"], priority: 2 }
`,
  );
  const { config } = await loadConfig(join(dir, 'vigil.yaml'));
  let checks = 0;
  monitor.on('check', () => checks++);
  monitor.update(config.services);
  const ka = healthKey('www.mon.test./a', 'v4');
  const kb = healthKey('www.mon.test./b', 'v4');
  const waitFor = async (what: string, cond: () => boolean): Promise<void> => {
    const deadline = Date.now() + 15_000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await waitFor('both members up', () => monitor.snapshot().members.get(ka)?.status === 'up' && monitor.snapshot().members.get(kb)?.status === 'up');

  const settled = monitor.snapshot();
  const from = checks;
  await waitFor('ten more checks', () => checks >= from + 10);
  t.equal(monitor.snapshot(), settled, `${checks - from} checks that found both members up: still the same snapshot`);

  a.close();
  await waitFor('a down', () => monitor.snapshot().members.get(ka)?.status === 'down');
  const down = monitor.snapshot();
  t.not(down, settled, 'a member down: a new snapshot');
  t.equal(down.members.get(kb), settled.members.get(kb), 'the other member keeps its published health');
  t.match(down.members.get(ka), { status: 'down' });
});
