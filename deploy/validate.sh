#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a running systemd.
#
#   deploy/validate.sh              every check; a check whose tool is missing is skipped
#   deploy/validate.sh compose ...  only the named checks; a missing tool is then a failure
#
# Checks:
#   compose    docker-compose.yml, with `docker-compose config -q` (Debian's docker-compose 1.29)
#   structure  alert rules, Prometheus config and Grafana dashboard parsed with node: the shape of
#              every rule, and every metric and label an expression uses exists in Vigil
#              (server/metrics/README.md) or is a Prometheus built-in
#   promtool   `promtool check config|rules`, the alert rules' unit tests below, and the PromQL
#              syntax of every dashboard panel (Debian package `prometheus`)
#   systemd    `systemd-analyze verify` of deploy/systemd/vigil.service, warnings included
#   config     `node dist/cli/vigil.js check --config deploy/vigil.yaml` (needs a build: npm run build)
#
# Run from anywhere; exits 0 when every check that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.."

ALL=(compose structure promtool systemd config)
explicit=1
if [ $# -eq 0 ]; then
  set -- "${ALL[@]}"
  explicit=0
fi

passed=() failed=() skipped=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A tool is missing: a skip when running everything, a failure when the check was asked for.
missing() {
  local check=$1 why=$2
  if [ "$explicit" = 1 ]; then
    echo "FAIL $check: $why"
    failed+=("$check")
  else
    echo "skip $check: $why"
    skipped+=("$check")
  fi
}

# Runs "$@", and reports the check as passed or failed with its output.
run() {
  local check=$1
  shift
  local out
  if out=$("$@" 2>&1); then
    echo "ok   $check"
    passed+=("$check")
  else
    echo "FAIL $check:"
    printf '%s\n' "$out" | sed 's/^/     /'
    failed+=("$check")
  fi
}

check_compose() {
  if ! command -v docker-compose >/dev/null 2>&1; then
    missing compose "docker-compose is not installed (Debian: apt-get install docker-compose)"
    return
  fi
  run compose docker-compose -f docker-compose.yml config -q
}

check_structure() {
  run structure node --input-type=module -e "$STRUCTURE_JS"
}

check_promtool() {
  if ! command -v promtool >/dev/null 2>&1; then
    missing promtool "promtool is not installed (Debian: apt-get install prometheus)"
    return
  fi
  cp deploy/prometheus/alerts.yml "$tmp/alerts.yml"
  printf '%s\n' "$ALERT_TESTS" >"$tmp/alerts.test.yml"
  # Grafana's variables replaced by values Prometheus accepts, each panel query as a recording rule.
  node --input-type=module -e '
    import { readFileSync, writeFileSync } from "node:fs";
    const d = JSON.parse(readFileSync("deploy/grafana/vigil-dashboard.json", "utf8"));
    const exprs = [];
    const walk = (ps) => { for (const p of ps ?? []) { for (const t of p.targets ?? []) exprs.push(t.expr); walk(p.panels); } };
    walk(d.panels);
    const rules = exprs.map((e, i) => `      - record: dashboard_panel_${i}\n        expr: ${JSON.stringify(e.replaceAll("$__rate_interval", "1m").replaceAll("$__range", "1h").replace(/\$\{?\w+\}?/g, ".+"))}`);
    writeFileSync(process.argv[1], "groups:\n  - name: dashboard\n    rules:\n" + rules.join("\n") + "\n");
  ' "$tmp/dashboard-rules.yml" || { failed+=(promtool); echo "FAIL promtool: could not read the dashboard"; return; }
  run promtool sh -c '
    promtool check config deploy/prometheus/prometheus.yml &&
    promtool check rules deploy/prometheus/alerts.yml &&
    promtool test rules "$1/alerts.test.yml" &&
    promtool check rules "$1/dashboard-rules.yml"' sh "$tmp"
}

check_systemd() {
  if ! command -v systemd-analyze >/dev/null 2>&1; then
    missing systemd "systemd-analyze is not installed"
    return
  fi
  if [ ! -x /usr/bin/node ]; then
    # verify insists that ExecStart's program exists on this machine.
    missing systemd "the unit runs /usr/bin/node, which this machine lacks"
    return
  fi
  # verify exits 0 on unknown keys and bad values, and only warns: any output is a failure.
  run systemd sh -c 'out=$(systemd-analyze verify deploy/systemd/vigil.service 2>&1); status=$?; [ -z "$out" ] || { printf "%s\n" "$out"; exit 1; }; exit $status'
}

check_config() {
  if [ ! -f dist/cli/vigil.js ]; then
    missing config "dist/cli/vigil.js is not built (npm run build)"
    return
  fi
  # The token file is a compose secret that exists only inside the containers;
  # $VIGIL_ADMIN_TOKEN takes its place, so the file is not read here.
  run config env VIGIL_ADMIN_TOKEN=validate-sh-stand-in-token VIGIL_NODE_ID=validate VIGIL_POP=validate \
    node dist/cli/vigil.js check --config deploy/vigil.yaml
}

# The structural checks, in node (yaml and prom-client come from the checkout's node_modules).
STRUCTURE_JS=$(cat <<'JS'
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { Registry, collectDefaultMetrics } from 'prom-client';

const errors = [];
const fail = (where, msg) => errors.push(`${where}: ${msg}`);

// Vigil's metrics and their labels (server/metrics/README.md); histograms also have _bucket{le}, _sum, _count.
const VIGIL = {
  vigil_dns_queries_total: ['view', 'qtype', 'rcode', 'transport'],
  vigil_dns_response_duration_seconds: ['transport', 'histogram'],
  vigil_dns_truncated_total: ['transport'],
  vigil_dns_malformed_total: ['transport'],
  vigil_dns_dropped_total: ['transport'],
  vigil_tcp_connections: [],
  vigil_probe_checks_total: ['member', 'family', 'node', 'result'],
  vigil_probe_duration_seconds: ['type', 'histogram'],
  vigil_member_up: ['service', 'member', 'family'],
  vigil_member_local_up: ['service', 'member', 'family'],
  vigil_member_override: ['service', 'member', 'action'],
  vigil_answer_changes_total: ['service'],
  vigil_health_epoch: ['service'],
  vigil_service_failed_open: ['service'],
  vigil_failed_open_answers_total: ['service'],
  vigil_service_degraded: ['service'],
  vigil_redis_connected: [],
  vigil_replication_nodes: ['state'],
  vigil_replication_lag_seconds: [],
  vigil_nodes_diverged: [],
  vigil_service_diverged: ['service'],
  vigil_config_reloads_total: ['result'],
  vigil_config_info: ['hash'],
  vigil_failover_drain_ratio: ['service'],
  vigil_failover_drain_time_seconds: ['service', 'histogram'],
  vigil_rrl_responses_total: ['action'],
  vigil_build_info: ['version', 'node', 'pop'],
};
const known = new Map(); // metric name -> allowed labels
const TARGET = ['job', 'instance'];
for (const [name, spec] of Object.entries(VIGIL)) {
  const labels = spec.filter((l) => l !== 'histogram');
  if (spec.includes('histogram')) {
    known.set(`${name}_bucket`, [...labels, 'le', ...TARGET]);
    known.set(`${name}_sum`, [...labels, ...TARGET]);
    known.set(`${name}_count`, [...labels, ...TARGET]);
  } else known.set(name, [...labels, ...TARGET]);
}
// Process metrics: whatever prom-client's defaults are, with Vigil's prefix.
const reg = new Registry();
collectDefaultMetrics({ register: reg, prefix: 'vigil_' });
for (const m of await reg.getMetricsAsJSON()) {
  const labels = new Set(TARGET);
  for (const v of m.values) for (const l of Object.keys(v.labels ?? {})) labels.add(l);
  if (m.type === 'histogram') {
    known.set(`${m.name}_bucket`, [...labels, 'le']);
    known.set(`${m.name}_sum`, [...labels]);
    known.set(`${m.name}_count`, [...labels]);
  } else known.set(m.name, [...labels]);
}
// Prometheus's own series for every target.
for (const n of ['up', 'scrape_duration_seconds', 'scrape_samples_scraped']) known.set(n, TARGET);

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'atan2', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/** The series selectors of a PromQL expression: [{ name, labels }], and the labels it groups or matches on. */
function scan(expr) {
  // Quoted strings first, so that nothing inside a label value reads as a name.
  let s = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  s = s.replace(/\[[^\]]*\]/g, ' '); // ranges and subqueries, Grafana's $__rate_interval included
  const grouping = [];
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, _k, list) => {
    grouping.push(...list.split(',').map((l) => l.trim()).filter(Boolean));
    return ' ';
  });
  const selectors = [];
  const token = /\$\{?\w+\}?|\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|[smhdwy])*|([A-Za-z_:][\w:]*)(\s*\{[^}]*\})?(\s*\()?|\{[^}]*\}/gi;
  for (const m of s.matchAll(token)) {
    const [, name, braces, call] = m;
    if (name === undefined || call !== undefined || KEYWORDS.has(name.toLowerCase())) continue;
    const labels = braces === undefined ? [] : [...braces.matchAll(/([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]);
    selectors.push({ name, labels });
  }
  return { selectors, grouping };
}

function checkExpr(where, expr) {
  if (typeof expr !== 'string' || expr.trim() === '') return fail(where, 'no expression');
  const { selectors, grouping } = scan(expr);
  if (selectors.length === 0) fail(where, `no metric in ${JSON.stringify(expr)}`);
  const available = new Set();
  for (const { name, labels } of selectors) {
    const allowed = known.get(name);
    if (allowed === undefined) {
      fail(where, `unknown metric ${name}`);
      continue;
    }
    for (const l of allowed) available.add(l);
    for (const l of labels) if (!allowed.includes(l)) fail(where, `${name} has no label "${l}"`);
  }
  for (const l of grouping) if (!available.has(l)) fail(where, `groups or matches on "${l}", a label none of its metrics has`);
}

// --- alert rules ---
const alertsFile = 'deploy/prometheus/alerts.yml';
const readme = readFileSync('deploy/README.md', 'utf8');
const rules = parse(readFileSync(alertsFile, 'utf8'));
const names = new Set();
if (!Array.isArray(rules?.groups) || rules.groups.length === 0) fail(alertsFile, 'no groups');
for (const [g, group] of (rules?.groups ?? []).entries()) {
  if (typeof group.name !== 'string') fail(`${alertsFile} groups[${g}]`, 'no name');
  if (!Array.isArray(group.rules) || group.rules.length === 0) fail(`${alertsFile} groups[${g}]`, 'no rules');
  for (const [r, rule] of (group.rules ?? []).entries()) {
    const where = `${alertsFile} ${rule?.alert ?? `groups[${g}].rules[${r}]`}`;
    for (const key of ['alert', 'expr', 'for', 'labels', 'annotations']) if (rule?.[key] === undefined) fail(where, `no "${key}"`);
    if (typeof rule.alert === 'string') {
      if (!/^[A-Z][A-Za-z0-9]+$/.test(rule.alert)) fail(where, 'alert names are CamelCase');
      if (names.has(rule.alert)) fail(where, 'defined twice');
      names.add(rule.alert);
      if (!new RegExp(`^#+ ${rule.alert}\\b`, 'm').test(readme)) fail(where, `deploy/README.md has no "### ${rule.alert}" runbook section`);
      if (rule.annotations?.runbook !== `deploy/README.md#${rule.alert.toLowerCase()}`) fail(where, `annotations.runbook must be deploy/README.md#${rule.alert.toLowerCase()}`);
    }
    if (rule.for !== undefined && !/^[0-9]+(ms|s|m|h|d)$/.test(String(rule.for))) fail(where, `"for" is not a duration: ${rule.for}`);
    if (!['critical', 'warning'].includes(rule.labels?.severity)) fail(where, 'labels.severity must be critical or warning');
    for (const key of ['summary', 'description']) if (typeof rule.annotations?.[key] !== 'string') fail(where, `no annotations.${key}`);
    checkExpr(where, rule.expr);
  }
}

// --- Prometheus config ---
const promFile = 'deploy/prometheus/prometheus.yml';
const prom = parse(readFileSync(promFile, 'utf8'));
for (const f of prom?.rule_files ?? []) if (!existsSync(join(dirname(promFile), f))) fail(promFile, `rule file ${f} does not exist`);
if (!(prom?.rule_files ?? []).includes('alerts.yml')) fail(promFile, 'does not load alerts.yml');
const vigilJob = (prom?.scrape_configs ?? []).find((j) => j.job_name === 'vigil');
const targets = (vigilJob?.static_configs ?? []).flatMap((c) => c.targets ?? []);
if (targets.length === 0) fail(promFile, 'no targets in job "vigil" (the alert rules select job="vigil")');

// --- Grafana ---
const dashFile = 'deploy/grafana/vigil-dashboard.json';
let dash;
try {
  dash = JSON.parse(readFileSync(dashFile, 'utf8'));
} catch (e) {
  fail(dashFile, `not JSON: ${e.message}`);
}
const dsFile = 'deploy/grafana/provisioning/datasources/prometheus.yml';
const dsUid = parse(readFileSync(dsFile, 'utf8'))?.datasources?.[0]?.uid;
if (dash !== undefined) {
  const ids = new Set();
  let queries = 0;
  const walk = (panels) => {
    for (const p of panels ?? []) {
      const where = `${dashFile} panel "${p.title}"`;
      if (ids.has(p.id)) fail(where, `id ${p.id} used twice`);
      ids.add(p.id);
      if (p.type !== 'row' && (p.targets ?? []).length === 0) fail(where, 'no queries');
      for (const t of p.targets ?? []) {
        queries++;
        if (p.datasource?.uid !== dsUid || t.datasource?.uid !== dsUid) fail(where, `datasource is not the provisioned uid "${dsUid}"`);
        checkExpr(`${where} ${t.refId}`, t.expr);
      }
      walk(p.panels);
    }
  };
  walk(dash.panels);
  if (queries === 0) fail(dashFile, 'no queries');
  for (const v of dash.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    const m = /^label_values\((.+),\s*(\w+)\s*\)$/.exec(q ?? '');
    if (m === null) {
      fail(`${dashFile} variable ${v.name}`, `expected label_values(metric, label), got ${q}`);
      continue;
    }
    checkExpr(`${dashFile} variable ${v.name}`, m[1]);
    for (const { name } of scan(m[1]).selectors) if (!known.get(name)?.includes(m[2])) fail(`${dashFile} variable ${v.name}`, `${name} has no label "${m[2]}"`);
  }
}

if (errors.length > 0) {
  console.error(errors.join('\n'));
  process.exit(1);
}
JS
)

# Unit tests of the alert rules (promtool test rules): each alert fires when
# it should, after its `for`, and stays quiet in the near misses.
ALERT_TESTS=$(cat <<'YAML'
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  # A node that stops answering scrapes alerts after 1m; a healthy one never.
  - interval: 1m
    input_series:
      - { series: 'up{job="vigil",instance="vigil-ams:9153"}', values: '1 0 0 0' }
      - { series: 'up{job="vigil",instance="vigil-fra:9153"}', values: '1 1 1 1' }
    promql_expr_test:
      - { expr: 'ALERTS{alertstate="firing"}', eval_time: 1m, exp_samples: [] }
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 3m
        exp_samples:
          - { labels: 'ALERTS{alertname="VigilNodeDown",alertstate="firing",severity="critical",job="vigil",instance="vigil-ams:9153"}', value: 1 }

  # Down on every node: one alert per member. Down on one node only: none
  # (that is divergence). Down because an operator drained it: none.
  - interval: 1m
    input_series:
      - { series: 'vigil_member_up{job="vigil",instance="a",service="www.demo.test.",member="www.demo.test./primary",family="v4"}', values: '1 0 0 0' }
      - { series: 'vigil_member_up{job="vigil",instance="b",service="www.demo.test.",member="www.demo.test./primary",family="v4"}', values: '1 0 0 0' }
      - { series: 'vigil_member_up{job="vigil",instance="a",service="www.demo.test.",member="www.demo.test./secondary",family="v4"}', values: '1 0 0 0' }
      - { series: 'vigil_member_up{job="vigil",instance="b",service="www.demo.test.",member="www.demo.test./secondary",family="v4"}', values: '1 1 1 1' }
      - { series: 'vigil_member_up{job="vigil",instance="a",service="pool.demo.test.",member="pool.demo.test./a",family="v4"}', values: '1 0 0 0' }
      - { series: 'vigil_member_up{job="vigil",instance="b",service="pool.demo.test.",member="pool.demo.test./a",family="v4"}', values: '1 0 0 0' }
      - { series: 'vigil_member_override{job="vigil",instance="a",service="pool.demo.test.",member="pool.demo.test./a",action="drain"}', values: '_ 1 1 1' }
      - { series: 'vigil_member_override{job="vigil",instance="b",service="pool.demo.test.",member="pool.demo.test./a",action="drain"}', values: '_ 1 1 1' }
    promql_expr_test:
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 3m
        exp_samples:
          - { labels: 'ALERTS{alertname="VigilMemberDown",alertstate="firing",severity="warning",service="www.demo.test.",member="www.demo.test./primary",family="v4"}', value: 1 }

  # Failing open, divergence, Redis lost, a stale peer: each after its `for`.
  - interval: 1m
    input_series:
      - { series: 'vigil_service_failed_open{job="vigil",instance="a",service="www.demo.test."}', values: '0 1 1 1' }
      - { series: 'vigil_nodes_diverged{job="vigil",instance="a"}', values: '0 1 1 1' }
      - { series: 'vigil_redis_connected{job="vigil",instance="a"}', values: '1 0 0 0' }
      - { series: 'vigil_redis_connected{job="vigil",instance="b"}', values: '1 1 1 1' }
      - { series: 'vigil_replication_nodes{job="vigil",instance="b",state="stale"}', values: '0 1 1 1 1' }
      - { series: 'vigil_replication_nodes{job="vigil",instance="b",state="fresh"}', values: '3 2 2 2 2' }
    promql_expr_test:
      - { expr: 'ALERTS{alertstate="firing"}', eval_time: 1m, exp_samples: [] }
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 2m
        exp_samples:
          - { labels: 'ALERTS{alertname="VigilServiceFailedOpen",alertstate="firing",severity="critical",service="www.demo.test."}', value: 1 }
          - { labels: 'ALERTS{alertname="VigilNodesDiverged",alertstate="firing",severity="critical",job="vigil",instance="a"}', value: 1 }
          - { labels: 'ALERTS{alertname="VigilRedisDisconnected",alertstate="firing",severity="warning",job="vigil",instance="a"}', value: 1 }
      - expr: 'ALERTS{alertname="VigilReplicationNodeStale",alertstate="firing"}'
        eval_time: 3m
        exp_samples:
          - { labels: 'ALERTS{alertname="VigilReplicationNodeStale",alertstate="firing",severity="warning",job="vigil",instance="b",state="stale"}', value: 1 }

  # Drain: the answer changes at 1m (epoch 4 -> 5). www's resolvers stop at
  # 50%: no alert while the change is recent, an alert once the answer has
  # been stable for 5m and the ratio stayed under 0.9 for 1m more. pool
  # reaches 95%: never.
  - interval: 1m
    input_series:
      - { series: 'vigil_health_epoch{job="vigil",instance="a",service="www.demo.test."}', values: '4 5 5 5 5 5 5 5 5' }
      - { series: 'vigil_failover_drain_ratio{job="vigil",instance="a",service="www.demo.test."}', values: '_ 0 0.3 0.5 0.5 0.5 0.5 0.5 0.5' }
      - { series: 'vigil_health_epoch{job="vigil",instance="a",service="pool.demo.test."}', values: '4 5 5 5 5 5 5 5 5' }
      - { series: 'vigil_failover_drain_ratio{job="vigil",instance="a",service="pool.demo.test."}', values: '_ 0 0.5 0.95 0.95 0.95 0.95 0.95 0.95' }
    promql_expr_test:
      - { expr: 'ALERTS{alertname="VigilDrainOverdue"}', eval_time: 5m, exp_samples: [] }
      - expr: 'ALERTS{alertname="VigilDrainOverdue"}'
        eval_time: 7m
        exp_samples:
          - { labels: 'ALERTS{alertname="VigilDrainOverdue",alertstate="firing",severity="warning",job="vigil",instance="a",service="www.demo.test."}', value: 1 }

  # A failed reload alerts at once and clears 15m later; nodes on two configs alert after 5m.
  - interval: 1m
    input_series:
      - { series: 'vigil_config_reloads_total{job="vigil",instance="a",result="failure"}', values: '0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1' }
      - { series: 'vigil_config_reloads_total{job="vigil",instance="a",result="success"}', values: '0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1' }
      - { series: 'vigil_config_info{job="vigil",instance="a",hash="aaaa"}', values: '1x20' }
      - { series: 'vigil_config_info{job="vigil",instance="b",hash="bbbb"}', values: '1x20' }
    promql_expr_test:
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 2m
        exp_samples:
          - { labels: 'ALERTS{alertname="VigilConfigReloadFailed",alertstate="firing",severity="warning",job="vigil",instance="a",result="failure"}', value: 1 }
      - expr: 'ALERTS{alertstate="firing"}'
        eval_time: 18m
        exp_samples:
          - { labels: 'ALERTS{alertname="VigilConfigMismatch",alertstate="firing",severity="warning"}', value: 1 }
YAML
)

for check in "$@"; do
  case "$check" in
    compose) check_compose ;;
    structure) check_structure ;;
    promtool) check_promtool ;;
    systemd) check_systemd ;;
    config) check_config ;;
    *)
      echo "unknown check \"$check\" (expected: ${ALL[*]})" >&2
      exit 2
      ;;
  esac
done

summary="${#passed[@]} ok"
[ ${#skipped[@]} -gt 0 ] && summary="$summary; skipped: ${skipped[*]}"
[ ${#failed[@]} -gt 0 ] && summary="$summary; FAILED: ${failed[*]}"
echo "deploy/validate.sh: $summary"
[ ${#failed[@]} -eq 0 ]
