// The deployment files agree with each other and with Vigil: the compose
// file's nodes, PoPs and addresses with the config, the zone and Prometheus's
// targets; every alert rule and dashboard query with the metrics Vigil
// exports; the config with Vigil's own loader. docker-compose itself checks the
// compose file (through deploy/validate.sh); CI installs it, so its absence
// fails this test instead of skipping it.

import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { loadConfig } from '../zones/load.js';
import { parseName } from '../server/wire/name.js';
import { TYPE } from '../server/wire/constants.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const read = (p: string): string => readFileSync(join(root, p), 'utf8');
// `merge`: the compose file shares the nodes' settings through a YAML anchor and `<<`.
const yaml = (p: string): unknown => parse(read(p), { merge: true });

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

const compose = obj(yaml('docker-compose.yml'));
const services = obj(compose['services']);
const vigilYaml = obj(yaml('deploy/vigil.yaml'));

/** Compose `environment` as a map, whether written as a map or as KEY=VALUE lines. */
function envOf(service: Obj): Record<string, string> {
  const env = service['environment'];
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((line) => {
      const s = String(line);
      const eq = s.indexOf('=');
      return [s.slice(0, eq), s.slice(eq + 1)];
    }));
  }
  return Object.fromEntries(Object.entries(obj(env)).map(([k, v]) => [k, String(v)]));
}

const ipOf = (name: string): string => str(obj(obj(obj(services[name])['networks'])['vigil'])['ipv4_address']);
const commandOf = (service: Obj): string => (Array.isArray(service['command']) ? service['command'].join(' ') : str(service['command']));

/** The Vigil nodes: services built from this repository's Dockerfile. */
const vigilNodes = Object.entries(services)
  .filter(([, s]) => obj(s)['build'] === '.' || str(obj(obj(s)['build'])['context']) === '.')
  .map(([name, s]) => ({ name, service: obj(s), env: envOf(obj(s)) }));

function port(listen: unknown): number {
  const m = /:(\d+)$/.exec(str(listen));
  return m === null ? NaN : Number(m[1]);
}

// --- metric names: what Vigil exports (server/metrics/README.md) ---

const VIGIL_METRICS: Record<string, { labels: string[]; histogram?: true }> = {
  vigil_dns_queries_total: { labels: ['view', 'qtype', 'rcode', 'transport'] },
  vigil_dns_response_duration_seconds: { labels: ['transport'], histogram: true },
  vigil_dns_truncated_total: { labels: ['transport'] },
  vigil_dns_malformed_total: { labels: ['transport'] },
  vigil_dns_dropped_total: { labels: ['transport'] },
  vigil_tcp_connections: { labels: [] },
  vigil_probe_checks_total: { labels: ['member', 'family', 'node', 'result'] },
  vigil_probe_duration_seconds: { labels: ['type'], histogram: true },
  vigil_member_up: { labels: ['service', 'member', 'family'] },
  vigil_member_local_up: { labels: ['service', 'member', 'family'] },
  vigil_member_override: { labels: ['service', 'member', 'action'] },
  vigil_answer_changes_total: { labels: ['service'] },
  vigil_health_epoch: { labels: ['service'] },
  vigil_service_failed_open: { labels: ['service'] },
  vigil_failed_open_answers_total: { labels: ['service'] },
  vigil_service_degraded: { labels: ['service'] },
  vigil_redis_connected: { labels: [] },
  vigil_replication_nodes: { labels: ['state'] },
  vigil_replication_lag_seconds: { labels: [] },
  vigil_nodes_diverged: { labels: [] },
  vigil_service_diverged: { labels: ['service'] },
  vigil_config_reloads_total: { labels: ['result'] },
  vigil_config_info: { labels: ['hash'] },
  vigil_failover_drain_ratio: { labels: ['service'] },
  vigil_failover_drain_time_seconds: { labels: ['service'], histogram: true },
  vigil_rrl_responses_total: { labels: ['action'] },
  vigil_build_info: { labels: ['version', 'node', 'pop'] },
};
const TARGET_LABELS = ['job', 'instance'];

/** Series name → labels it may be selected by, including histograms' _bucket/_sum/_count and the process metrics. */
async function knownSeries(): Promise<Map<string, Set<string>>> {
  const known = new Map<string, Set<string>>();
  const add = (name: string, labels: string[], histogram: boolean): void => {
    if (!histogram) {
      known.set(name, new Set([...labels, ...TARGET_LABELS]));
      return;
    }
    known.set(`${name}_bucket`, new Set([...labels, 'le', ...TARGET_LABELS]));
    known.set(`${name}_sum`, new Set([...labels, ...TARGET_LABELS]));
    known.set(`${name}_count`, new Set([...labels, ...TARGET_LABELS]));
  };
  for (const [name, m] of Object.entries(VIGIL_METRICS)) add(name, m.labels, m.histogram === true);
  // Process metrics are prom-client's defaults with Vigil's prefix: ask prom-client which.
  const reg = new Registry();
  collectDefaultMetrics({ register: reg, prefix: 'vigil_' });
  for (const m of await reg.getMetricsAsJSON()) {
    const labels = new Set<string>();
    for (const v of m.values) for (const l of Object.keys(v.labels)) labels.add(l);
    add(m.name, [...labels], String(m.type) === 'histogram');
  }
  for (const name of ['up', 'scrape_duration_seconds', 'scrape_samples_scraped']) add(name, [], false);
  return known;
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'atan2', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

interface Selector {
  readonly name: string;
  readonly labels: readonly string[];
}

/** The series selectors of a PromQL expression, and the labels it groups or matches on. */
function scanPromQL(expr: string): { selectors: Selector[]; grouping: string[] } {
  // Quoted strings first, so that nothing inside a label value reads as a name.
  let s = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  s = s.replace(/\[[^\]]*\]/g, ' '); // ranges and subqueries, Grafana's $__rate_interval included
  const grouping: string[] = [];
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_m, _k, list: string) => {
    grouping.push(...list.split(',').map((l) => l.trim()).filter(Boolean));
    return ' ';
  });
  const selectors: Selector[] = [];
  const token = /\$\{?\w+\}?|\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|[smhdwy])*|([A-Za-z_:][\w:]*)(\s*\{[^}]*\})?(\s*\()?|\{[^}]*\}/gi;
  for (const m of s.matchAll(token)) {
    const [, name, braces, call] = m;
    if (name === undefined || call !== undefined || KEYWORDS.has(name.toLowerCase())) continue;
    const labels = braces === undefined ? [] : [...braces.matchAll(/([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]!);
    selectors.push({ name, labels });
  }
  return { selectors, grouping };
}

/** Problems with an expression: unknown metrics, labels its metrics lack. Empty when all is well. */
function exprProblems(expr: string, known: Map<string, Set<string>>): string[] {
  const { selectors, grouping } = scanPromQL(expr);
  const problems: string[] = [];
  if (selectors.length === 0) problems.push(`no metric in ${expr}`);
  const available = new Set<string>();
  for (const { name, labels } of selectors) {
    const allowed = known.get(name);
    if (allowed === undefined) {
      problems.push(`unknown metric ${name}`);
      continue;
    }
    for (const l of allowed) available.add(l);
    for (const l of labels) if (!allowed.has(l)) problems.push(`${name} has no label "${l}"`);
  }
  for (const l of grouping) if (!available.has(l)) problems.push(`groups or matches on "${l}", which none of its metrics has`);
  return problems;
}

interface Rule {
  alert?: unknown;
  expr?: unknown;
  for?: unknown;
  labels?: unknown;
  annotations?: unknown;
}
const alertRules = (): Rule[] => arr(obj(yaml('deploy/prometheus/alerts.yml'))['groups']).flatMap((g) => arr(obj(g)['rules']) as Rule[]);

interface Panel {
  id?: number;
  title?: string;
  type?: string;
  datasource?: { uid?: string };
  targets?: { expr?: string; refId?: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
}
const dashboard = (): { panels?: Panel[]; templating?: { list?: { name?: string; query?: unknown }[] } } =>
  JSON.parse(read('deploy/grafana/vigil-dashboard.json')) as { panels?: Panel[] };
function allPanels(panels: Panel[] | undefined): Panel[] {
  return (panels ?? []).flatMap((p) => [p, ...allPanels(p.panels)]);
}

// --- the tests ---

t.test('the metric scanner finds metrics, labels and grouping, and misses nothing it should flag', async (t) => {
  const known = await knownSeries();
  const scan = scanPromQL('sum by (rcode) (rate(vigil_dns_queries_total{job="vigil", view=~"a|b"}[$__rate_interval])) > 0 unless on (instance) up offset 5m');
  t.same(scan.selectors, [
    { name: 'vigil_dns_queries_total', labels: ['job', 'view'] },
    { name: 'up', labels: [] },
  ]);
  t.same(scan.grouping, ['rcode', 'instance']);
  t.same(exprProblems('histogram_quantile(0.99, sum by (le) (rate(vigil_dns_response_duration_seconds_bucket[5m])))', known), []);
  t.same(exprProblems('rate(vigil_process_cpu_seconds_total[1m])', known), [], 'process metrics come from prom-client');
  t.same(exprProblems('vigil_dns_querys_total', known), ['unknown metric vigil_dns_querys_total']);
  t.same(exprProblems('vigil_member_up{servce="x"}', known), ['vigil_member_up has no label "servce"']);
  t.same(exprProblems('sum by (rcodes) (vigil_dns_queries_total)', known), ['groups or matches on "rcodes", which none of its metrics has']);
  t.same(exprProblems('vigil_dns_response_duration_seconds', known), ['unknown metric vigil_dns_response_duration_seconds'], 'a histogram is selected by its series, not its name');
  t.same(exprProblems('vector(1)', known), ['no metric in vector(1)']);
});

t.test('compose: three Vigil nodes in three PoPs share one config and Redis', async (t) => {
  t.same(vigilNodes.map((n) => n.name).sort(), ['vigil-ams', 'vigil-fra', 'vigil-nyc']);
  const ids = vigilNodes.map((n) => n.env['VIGIL_NODE_ID']);
  const pops = vigilNodes.map((n) => n.env['VIGIL_POP']);
  t.equal(new Set(ids).size, 3, `distinct node ids: ${ids.join(', ')}`);
  t.same([...pops].sort(), ['ams', 'fra', 'nyc'], 'one node per PoP');
  for (const { name, service, env } of vigilNodes) {
    t.match(env['VIGIL_NODE_ID'], /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, `${name}: a valid node id`);
    t.ok(name.endsWith(env['VIGIL_POP'] ?? '\0'), `${name} is in PoP ${env['VIGIL_POP']}`);
    const redis = /^redis:\/\/([^:/]+):(\d+)\//.exec(env['VIGIL_REDIS_URL'] ?? '');
    t.ok(redis !== null && isObj(services[redis[1]!]), `${name}: VIGIL_REDIS_URL names a compose service (${env['VIGIL_REDIS_URL']})`);
    const volumes = arr(service['volumes']).map(String);
    t.ok(volumes.includes('./deploy/vigil.yaml:/etc/vigil/vigil.yaml:ro'), `${name} mounts deploy/vigil.yaml read-only`);
    t.ok(volumes.includes('./deploy/zones:/etc/vigil/zones:ro'), `${name} mounts the zones beside it`);
    t.match(commandOf(service), /serve --config \/etc\/vigil\/vigil\.yaml/, `${name} serves that file`);
    t.same(service['secrets'], ['vigil_admin_token'], `${name} gets the admin token as a secret`);
    t.equal(String(obj(service['sysctls'])['net.ipv4.ip_unprivileged_port_start']), '53', `${name} may bind 53 without root`);
    t.same(service['cap_drop'], ['ALL'], `${name} drops every capability`);
    const ports = arr(service['ports']).map(String);
    t.ok(ports.some((p) => /^127\.0\.0\.1:\d+:53\/udp$/.test(p)) && ports.some((p) => /^127\.0\.0\.1:\d+:53\/tcp$/.test(p)), `${name} publishes DNS over UDP and TCP on host loopback`);
  }
  const secret = obj(obj(compose['secrets'])['vigil_admin_token']);
  t.match(str(secret['file']), /^\.\/deploy\/secrets\//, 'the token file lives in deploy/secrets');
  t.equal(str(obj(vigilYaml['admin'])['token_file']), '/run/secrets/vigil_admin_token', 'the config reads the token where compose mounts the secret');
});

t.test('compose: Redis persists with appendonly', async (t) => {
  const redis = obj(services['redis']);
  const command = arr(redis['command']).map(String);
  const at = command.indexOf('--appendonly');
  t.ok(at >= 0 && command[at + 1] === 'yes', `redis-server runs with --appendonly yes (${command.join(' ')})`);
  t.ok(arr(redis['volumes']).map(String).some((v) => v.endsWith(':/data')), 'its data directory is a volume');
});

t.test('compose addresses agree with the config members, the zone and Prometheus', async (t) => {
  const subnet = str(obj(arr(obj(obj(obj(compose['networks'])['vigil'])['ipam'])['config'])[0])['subnet']);
  const m = /^(\d+\.\d+\.\d+)\.0\/24$/.exec(subnet);
  t.ok(m !== null, `a fixed /24 (${subnet})`);
  const ips = Object.keys(services).map(ipOf).filter(Boolean);
  t.equal(new Set(ips).size, ips.length, 'no address used twice');
  t.equal(ips.length, Object.keys(services).length, 'every service has a fixed address');
  for (const ip of ips) t.ok(ip.startsWith(`${m?.[1]}.`), `${ip} is in ${subnet}`);

  process.env['VIGIL_ADMIN_TOKEN'] = 'deploy-test-stand-in-token';
  t.teardown(() => {
    delete process.env['VIGIL_ADMIN_TOKEN'];
  });
  const { config } = await loadConfig(join(root, 'deploy/vigil.yaml'));

  // Every member is a demo backend, probed on the port its http.server listens on.
  const backends = new Map(Object.entries(services).filter(([name]) => name.startsWith('backend-')).map(([name, s]) => [ipOf(name), commandOf(obj(s))]));
  t.equal(backends.size, 2, 'two demo backends');
  const members = config.services.flatMap((s) => s.members);
  t.ok(members.length >= 2);
  for (const member of members) {
    t.same(member.v6, [], `${member.id}: the compose network is IPv4 only`);
    for (const address of member.v4) {
      const command = backends.get(address);
      t.ok(command !== undefined, `${member.id}: ${address} is a demo backend`);
      t.match(command, new RegExp(`http\\.server ${String(member.probe.params['port'])}\\b`), `${member.id}: probed on the backend's port`);
    }
  }
  const www = config.services.find((s) => s.name === parseName('www.demo.test.'));
  t.equal(www?.policy, 'failover', 'www.demo.test. is a failover service');
  t.same(www?.members.map((mb) => mb.v4[0]).sort(), [...backends.keys()].sort(), 'between the two backends');

  // The zone's name servers are the three nodes.
  const zone = config.zones.get(parseName('demo.test.'));
  const ns = ['ns1', 'ns2', 'ns3'].map((h) => {
    const rdata = zone?.nodes.get(parseName(`${h}.demo.test.`))?.rrsets.get(TYPE.A)?.rdatas[0];
    return rdata === undefined ? '' : [...rdata].join('.');
  });
  t.same(ns.sort(), vigilNodes.map((n) => ipOf(n.name)).sort(), 'ns1..ns3 are the Vigil nodes');

  // Prometheus scrapes exactly the three nodes, on the config's metrics port.
  const metricsPort = port(obj(vigilYaml['metrics'])['listen']);
  t.equal(metricsPort, 9153);
  t.match(str(obj(vigilYaml['metrics'])['listen']), /^0\.0\.0\.0:/, 'metrics listen beyond loopback, for Prometheus');
  const prom = obj(yaml('deploy/prometheus/prometheus.yml'));
  const job = arr(prom['scrape_configs']).map(obj).find((j) => j['job_name'] === 'vigil');
  const targets = arr(job?.['static_configs']).flatMap((c) => arr(obj(c)['targets']).map(String));
  t.same(targets.sort(), vigilNodes.map((n) => `${n.name}:${metricsPort}`).sort());
  t.ok(arr(prom['rule_files']).includes('alerts.yml'), 'Prometheus loads the alert rules');
  const promService = obj(services['prometheus']);
  t.ok(arr(promService['volumes']).map(String).includes('./deploy/prometheus:/etc/prometheus:ro'), 'and they are mounted beside its config');
  t.ok(arr(promService['command']).includes('--config.file=/etc/prometheus/prometheus.yml'));
});

t.test('alert rules: shape, required alerts, known metrics, a runbook for each', async (t) => {
  const known = await knownSeries();
  const rules = alertRules();
  const readme = read('deploy/README.md');
  t.ok(rules.length >= 7);
  const byName = new Map<string, Rule>();
  for (const rule of rules) {
    const name = str(rule.alert);
    t.match(name, /^Vigil[A-Z][A-Za-z]+$/, `alert name ${name}`);
    t.notOk(byName.has(name), `${name} is defined once`);
    byName.set(name, rule);
    t.match(str(rule.expr), /\S/, `${name} has an expr`);
    t.match(str(rule.for), /^\d+(s|m|h)$/, `${name} has a "for"`);
    t.match(str(obj(rule.labels)['severity']), /^(critical|warning)$/, `${name} has a severity`);
    const ann = obj(rule.annotations);
    t.ok(str(ann['summary']) !== '' && str(ann['description']) !== '', `${name} has a summary and a description`);
    t.equal(ann['runbook'], `deploy/README.md#${name.toLowerCase()}`, `${name} points at its runbook`);
    t.match(readme, new RegExp(`^### ${name}$`, 'm'), `deploy/README.md has a runbook section for ${name}`);
    t.same(exprProblems(str(rule.expr), known), [], `${name} uses only metrics and labels Vigil exports`);
  }
  const expect = (name: string, pattern: RegExp, forDuration: string): void => {
    const rule = byName.get(name);
    t.match(str(rule?.expr).replace(/\s+/g, ' '), pattern, `${name}: ${pattern}`);
    t.equal(rule?.for, forDuration, `${name} waits ${forDuration}`);
  };
  expect('VigilNodeDown', /^up\{job="vigil"\} == 0$/, '1m');
  expect('VigilMemberDown', /vigil_member_up\{[^}]*\}\) == 0/, '1m');
  expect('VigilNodesDiverged', /^vigil_nodes_diverged\{[^}]*\} > 0$/, '1m');
  expect('VigilRedisDisconnected', /^vigil_redis_connected\{[^}]*\} == 0$/, '1m');
  expect('VigilDrainOverdue', /vigil_failover_drain_ratio\{[^}]*\} < 0\.9\).*changes\(vigil_health_epoch\{[^}]*\}\[5m\]\) == 0/, '1m');
  expect('VigilServiceFailedOpen', /vigil_service_failed_open/, '1m');
  expect('VigilConfigReloadFailed', /vigil_config_reloads_total\{[^}]*result="failure"[^}]*\}/, '0m');
});

t.test('dashboard: known metrics only, and the panels operators need', async (t) => {
  const known = await knownSeries();
  const dash = dashboard();
  const panels = allPanels(dash.panels);
  const dsUid = str(obj(arr(obj(yaml('deploy/grafana/provisioning/datasources/prometheus.yml'))['datasources'])[0])['uid']);
  t.equal(dsUid, 'prometheus');
  const ids = panels.map((p) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  const exprs: string[] = [];
  for (const p of panels) {
    if (p.type === 'row') continue;
    t.ok((p.targets ?? []).length > 0, `"${p.title}" has a query`);
    for (const target of p.targets ?? []) {
      const expr = target.expr ?? '';
      exprs.push(expr.replace(/\s+/g, ' '));
      t.ok(p.datasource?.uid === dsUid && target.datasource?.uid === dsUid, `"${p.title}" ${target.refId} uses the provisioned data source`);
      t.same(exprProblems(expr, known), [], `"${p.title}" ${target.refId}: ${expr}`);
    }
  }
  for (const v of dash.templating?.list ?? []) {
    const query = typeof v.query === 'string' ? v.query : str(obj(v.query)['query']);
    const m = /^label_values\((.+),\s*(\w+)\s*\)$/.exec(query);
    t.ok(m !== null, `variable ${v.name}: ${query}`);
    t.same(exprProblems(m?.[1] ?? '', known), [], `variable ${v.name} reads a known metric`);
    for (const { name } of scanPromQL(m?.[1] ?? '').selectors) t.ok(known.get(name)?.has(m?.[2] ?? ''), `${name} has label ${m?.[2]}`);
  }
  const has = (what: string, re: RegExp): void => {
    t.ok(exprs.some((e) => re.test(e)), `a panel shows ${what}`);
  };
  has('queries by rcode', /sum by \(rcode\) \(rate\(vigil_dns_queries_total/);
  has('queries by view', /sum by \(view\) \(rate\(vigil_dns_queries_total/);
  has('latency p50', /histogram_quantile\(0\.5, .*vigil_dns_response_duration_seconds_bucket/);
  has('latency p99', /histogram_quantile\(0\.99, .*vigil_dns_response_duration_seconds_bucket/);
  has('member health', /vigil_member_up\{/);
  has('health epochs per node', /^vigil_health_epoch\{/);
  has('the drain ratio', /vigil_failover_drain_ratio\{/);
  has('the time to drain', /vigil_failover_drain_time_seconds_bucket/);
  has('the Redis connection', /vigil_redis_connected\{/);

  // Grafana finds the dashboard where compose mounts it.
  const provider = obj(arr(obj(yaml('deploy/grafana/provisioning/dashboards/vigil.yml'))['providers'])[0]);
  const dir = str(obj(provider['options'])['path']);
  t.ok(arr(obj(services['grafana'])['volumes']).map(String).includes(`./deploy/grafana/vigil-dashboard.json:${dir}/vigil-dashboard.json:ro`), `the dashboard is mounted in ${dir}`);
});

t.test('systemd unit: hardened, reloads with SIGHUP', async (t) => {
  const unit = read('deploy/systemd/vigil.service');
  const directives = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m !== null) directives.set(m[1]!, [...(directives.get(m[1]!) ?? []), m[2]!]);
  }
  const one = (key: string): string | undefined => directives.get(key)?.at(-1);
  t.ok(one('DynamicUser') === 'yes' || (one('User') ?? 'root') !== 'root', 'not root');
  t.equal(one('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
  t.equal(one('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE', 'and no other capability');
  t.equal(one('NoNewPrivileges'), 'yes');
  t.equal(one('ProtectSystem'), 'strict');
  t.equal(one('Restart'), 'on-failure');
  t.match(one('EnvironmentFile'), /\/etc\/vigil\/vigil\.env$/);
  t.match(one('ExecReload'), /^\/bin\/kill -HUP \$MAINPID$/, 'the last reload step is SIGHUP');
  t.match(one('ExecStart'), / serve --config \/etc\/vigil\/vigil\.yaml$/);
});

t.test('image: two stages, production dependencies, non-root, no secrets in the context', async (t) => {
  const dockerfile = read('Dockerfile');
  const stages = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
  t.equal(stages.length, 2, 'build and runtime stages');
  t.match(dockerfile, /ARG NODE_IMAGE=node:20-bookworm-slim/);
  t.match(dockerfile, /RUN npm ci --ignore-scripts[^\n]*\n[\s\S]*RUN npm run build/, 'builds with npm ci and npm run build');
  t.match(dockerfile, /RUN npm ci --omit=dev/, 'runs with production dependencies only');
  const user = [...dockerfile.matchAll(/^USER (\S+)/gm)].at(-1)?.[1] ?? 'root';
  t.notMatch(user, /^(root|0)(:|$)/, `runs as ${user}`);
  const ignore = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  t.equal(ignore[0], '*', '.dockerignore starts by excluding everything');
  t.notOk(ignore.some((l) => l.startsWith('!deploy')), 'and never lets deploy/ (secrets) back in');
});

t.test('docker-compose accepts docker-compose.yml (deploy/validate.sh compose)', async (t) => {
  const which = spawnSync('sh', ['-c', 'command -v docker-compose'], { encoding: 'utf8' });
  if (which.status !== 0) {
    t.fail('docker-compose is not installed: install Debian\'s docker-compose package (.ci/run should), this check must not pass without it');
    return;
  }
  // docker-compose really validates: a file with an unknown key is refused.
  const dir = mkdtempSync(join(tmpdir(), 'vigil-deploy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'docker-compose.yml'), 'services:\n  a:\n    image: x\n    sysctlz: {}\n');
  const bad = spawnSync('docker-compose', ['-f', join(dir, 'docker-compose.yml'), 'config', '-q'], { encoding: 'utf8', timeout: 60_000 });
  t.not(bad.status, 0, 'a compose file with an unknown key is refused');

  const result = await new Promise<{ code: number | null; out: string }>((resolve) => {
    execFile('bash', [join(root, 'deploy/validate.sh'), 'compose'], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, out: stdout + stderr });
    });
  });
  t.equal(result.code, 0, result.out);
  t.match(result.out, /^ok {3}compose$/m);
});
