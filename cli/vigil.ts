#!/usr/bin/env node
// The vigil command: serve a config, check one without serving it, or talk to
// a running node's admin API (state, overrides, audit).

import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import cluster from 'node:cluster';
import os from 'node:os';
import { pino, type Logger } from 'pino';
import { loadConfig, formatErrors } from '../zones/load.js';
import { startDaemon, ConfigRefused } from '../server/daemon.js';
import { runWorker } from '../server/cluster/worker.js';
import type { CompiledConfig } from '../zones/zone.js';
import { formatName } from '../server/wire/name.js';
import { AdminClient, AdminClientError, printState, printAudit, printDrain } from './admin-client.js';

const HELP = `Usage: vigil <command> [options]

Commands:
  serve --config FILE   Load FILE and answer DNS queries on its listen addresses (UDP and TCP).
                        SIGHUP reloads FILE; a config with errors is refused and the old one keeps serving.
  check --config FILE   Validate FILE and every zone it loads; print a summary or every error.

  These talk to a running node's admin API; overrides apply on every node sharing its Redis:
  state                 Services, answers, epochs, and each member's state with every node's vote.
  drain MEMBER --reason TEXT [--for 30m]
                        Take MEMBER out of answers (e.g. www.example.test./primary) until undrained.
  force MEMBER up|down --reason TEXT [--for 30m]
                        Override MEMBER's health whatever the probes say.
  undrain MEMBER        Clear MEMBER's override (drain or force).
  audit [--count N]     Newest audit entries: overrides and consensus changes, who, why, when.
  drain-report [SERVICE]
                        How far each answer change has reached the resolvers that were caching it.

Options:
  -c, --config FILE     Path to the YAML config (see zones/README.md).
  --workers N|auto      serve: UDP answering processes (default 1; auto = one per CPU). See server/cluster/README.md.
  --log-level LEVEL     trace, debug, info, warn, error, silent (default: the config's log.level, else info).
  --defer-zones-over SIZE|off
                        serve: answer the other zones first and load zone files larger than SIZE (bytes, or with
                        K, M or G: 1024-based) after; their names answer SERVFAIL until then (default 8M).
                        off: load every zone before answering. See zones/README.md.
  --admin URL           Admin API of the node (default $VIGIL_ADMIN_URL, else http://127.0.0.1:8053).
  --token-file FILE     Bearer token for the admin API (default $VIGIL_ADMIN_TOKEN).
  --reason TEXT, --for DURATION, --by NAME (default $USER), --count N, --json
  -h, --help            Show this help.
  -v, --version         Show the version.

Example:
  vigil serve --config zones/examples/vigil.yaml
  dig @127.0.0.1 -p 5353 www.example.test A
  vigil drain www.failover.test./primary --reason "kernel upgrade" --for 1h
`;

class UsageError extends Error {
  override name = 'UsageError';
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function summary(config: CompiledConfig): string {
  const lines = [`config ${config.file} (sha256 ${config.hash.slice(0, 12)})`];
  for (const zone of config.zones.values()) {
    let records = 0;
    for (const node of zone.nodes.values()) for (const rr of node.rrsets.values()) records += rr.rdatas.length;
    lines.push(`  zone ${formatName(zone.origin)}: ${records} records, ${zone.nodes.size} names, from ${zone.source}`);
  }
  for (const [view, zones] of config.viewZones) {
    for (const zone of zones.values()) lines.push(`  zone ${formatName(zone.origin)} in view ${view}: ${zone.nodes.size} names, from ${zone.source}`);
  }
  if (config.views.length > 0) lines.push(`  views ${config.views.map((v) => v.name).join(', ')} (first match wins)`);
  for (const s of config.services) {
    const where = s.views.length > 0 ? ` in ${s.views.join(', ')}` : '';
    lines.push(`  service ${formatName(s.name)}${where}: ${s.policy} ${s.kind}, ${s.members.length} members, ttl ${s.ttl}/${s.degradedTtl}`);
  }
  const listen = config.server.listen.map((l) => (l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`));
  lines.push(`  listen ${listen.join(', ')} (udp+tcp)`);
  return lines.join('\n');
}

async function check(file: string): Promise<number> {
  try {
    const { config, warnings } = await loadConfig(file);
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    process.stdout.write(summary(config) + '\nOK\n');
    return 0;
  } catch (err) {
    process.stderr.write(formatErrors(err) + '\n');
    return 1;
  }
}

/** --workers: a count, or "auto" for one per CPU the process may use. */
function workerCount(value: string | undefined): number {
  if (value === undefined) return 1;
  if (value === 'auto') return os.availableParallelism();
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new UsageError(`--workers must be "auto" or a whole number from 1 to 256, not "${value}"`);
  return n;
}

/** --defer-zones-over: bytes, with an optional 1024-based K, M or G; "off" is Infinity (never deferred). */
function deferSize(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (value === 'off') return Infinity;
  const m = /^(\d+)([KMG]?)$/i.exec(value);
  if (m === null) throw new UsageError(`--defer-zones-over must be a size in bytes (e.g. 8M) or "off", not "${value}"`);
  return Number(m[1]) * 1024 ** ['', 'K', 'M', 'G'].indexOf(m[2]!.toUpperCase());
}

async function serve(file: string, log: Logger, workers: number, levelFixed: boolean, deferZonesOver: number | undefined): Promise<number> {
  // A serving worker of the cluster the primary below forks: it gets everything over IPC.
  if (cluster.isWorker) return runWorker(log);
  let daemon;
  try {
    daemon = await startDaemon(file, log, { workers, levelFixed, ...(deferZonesOver !== undefined ? { deferZonesOver } : {}) });
  } catch (err) {
    if (err instanceof ConfigRefused) process.stderr.write(err.message + '\n');
    else log.error({ err }, 'could not start');
    return 1;
  }
  process.on('SIGHUP', () => void daemon.reload());
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'shutting down');
      void daemon.close().then(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      'log-level': { type: 'string' },
      workers: { type: 'string' },
      'defer-zones-over': { type: 'string' },
      admin: { type: 'string' },
      'token-file': { type: 'string' },
      reason: { type: 'string' },
      for: { type: 'string' },
      by: { type: 'string' },
      count: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
  if (values.help === true) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version === true) {
    process.stdout.write(version() + '\n');
    return 0;
  }
  const command = positionals[0];
  if (command === undefined) throw new UsageError('missing command (serve, check, state, drain, force, undrain, audit, drain-report)');
  if (ADMIN_COMMANDS.has(command)) return admin(command, positionals.slice(1), values);
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
  if (command !== 'serve' && command !== 'check') throw new UsageError(`unknown command "${command}"`);
  if (values.config === undefined) throw new UsageError(`${command} needs --config FILE`);
  if (command === 'check') return check(values.config);
  return serve(values.config, makeLogger(values['log-level']), workerCount(values.workers), values['log-level'] !== undefined, deferSize(values['defer-zones-over']));
}

const ADMIN_COMMANDS = new Set(['state', 'drain', 'force', 'undrain', 'audit', 'drain-report']);

/**
 * JSON lines by default (what log shippers read); pretty when a person is
 * watching a terminal. The level given on the command line wins over the
 * config's, which the daemon applies once the config is loaded.
 */
function makeLogger(level: string | undefined): Logger {
  const opts = { name: 'vigil', level: level ?? 'info', redact: ['*.password', '*.token', 'config.adminToken'] };
  if (process.stdout.isTTY && process.env['VIGIL_LOG_FORMAT'] !== 'json') {
    return pino(opts, pino.transport({ target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } }));
  }
  return pino(opts);
}

interface AdminValues {
  admin?: string | undefined;
  'token-file'?: string | undefined;
  reason?: string | undefined;
  for?: string | undefined;
  by?: string | undefined;
  count?: string | undefined;
  json?: boolean | undefined;
}

async function admin(command: string, args: string[], values: AdminValues): Promise<number> {
  const url = values.admin ?? process.env['VIGIL_ADMIN_URL'] ?? 'http://127.0.0.1:8053';
  let token = process.env['VIGIL_ADMIN_TOKEN'];
  if (values['token-file'] !== undefined) token = readFileSync(values['token-file'], 'utf8').split(/\r?\n/, 1)[0]!.trim();
  const client = new AdminClient(url, token);
  const by = values.by ?? process.env['USER'] ?? 'cli';
  const out = (text: string): void => void process.stdout.write(text.endsWith('\n') ? text : text + '\n');
  const need = (n: number, usage: string): void => {
    if (args.length !== n) throw new UsageError(`usage: vigil ${usage}`);
  };
  try {
    switch (command) {
      case 'state': {
        need(0, 'state [--json]');
        const state = await client.state();
        out(values.json === true ? JSON.stringify(state, null, 2) : printState(state));
        return 0;
      }
      case 'drain':
      case 'force': {
        const usage = command === 'drain' ? 'drain MEMBER --reason TEXT [--for 30m]' : 'force MEMBER up|down --reason TEXT [--for 30m]';
        need(command === 'drain' ? 1 : 2, usage);
        if (values.reason === undefined) throw new UsageError(`${command} needs --reason TEXT (it goes to the audit stream)`);
        let action: 'drain' | 'force_up' | 'force_down' = 'drain';
        if (command === 'force') {
          if (args[1] !== 'up' && args[1] !== 'down') throw new UsageError(`usage: vigil ${usage}`);
          action = args[1] === 'up' ? 'force_up' : 'force_down';
        }
        const r = await client.setOverride({ member: args[0]!, action, reason: values.reason, by, ...(values.for !== undefined ? { for: values.for } : {}) });
        out(values.json === true ? JSON.stringify(r, null, 2) : `${action} ${args[0]} by ${by}${values.for !== undefined ? ` for ${values.for}` : ''}: ${values.reason}`);
        return 0;
      }
      case 'undrain': {
        need(1, 'undrain MEMBER [--reason TEXT]');
        await client.clearOverride(args[0]!, by, values.reason ?? 'cleared from the CLI');
        out(`override of ${args[0]} cleared`);
        return 0;
      }
      case 'audit': {
        need(0, 'audit [--count N]');
        const entries = await client.audit(Number(values.count ?? '20'));
        out(values.json === true ? JSON.stringify(entries, null, 2) : printAudit(entries));
        return 0;
      }
      default: {
        if (args.length > 1) throw new UsageError('usage: vigil drain-report [SERVICE]');
        const report = await client.drain(args[0]);
        out(values.json === true ? JSON.stringify(report, null, 2) : printDrain(report, Date.now()));
        return 0;
      }
    }
  } catch (err) {
    if (err instanceof AdminClientError) {
      process.stderr.write(`vigil ${command}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`vigil: ${message}\nRun "vigil --help" for usage.\n`);
    process.exitCode = 2;
  },
);
