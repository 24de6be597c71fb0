#!/usr/bin/env node
// The vigil command: serve a config, or check one without serving it.

import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { loadConfig, formatErrors } from '../zones/load.js';
import { startDaemon, ConfigRefused } from '../server/daemon.js';
import type { CompiledConfig } from '../zones/zone.js';
import { formatName } from '../server/wire/name.js';

const HELP = `Usage: vigil <command> [options]

Commands:
  serve --config FILE   Load FILE and answer DNS queries on its listen addresses (UDP and TCP).
                        SIGHUP reloads FILE; a config with errors is refused and the old one keeps serving.
  check --config FILE   Validate FILE and every zone it loads; print a summary or every error.

Options:
  -c, --config FILE     Path to the YAML config (see zones/README.md).
  --log-level LEVEL     trace, debug, info (default), warn, error, silent.
  -h, --help            Show this help.
  -v, --version         Show the version.

Example:
  vigil serve --config zones/examples/vigil.yaml
  dig @127.0.0.1 -p 5353 www.example.test A
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

async function serve(file: string, log: Logger): Promise<number> {
  let daemon;
  try {
    daemon = await startDaemon(file, log);
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
      'log-level': { type: 'string', default: 'info' },
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
  if (command === undefined) throw new UsageError('missing command (serve or check)');
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
  if (command !== 'serve' && command !== 'check') throw new UsageError(`unknown command "${command}"`);
  if (values.config === undefined) throw new UsageError(`${command} needs --config FILE`);
  if (command === 'check') return check(values.config);
  const log = pino({ name: 'vigil', level: values['log-level'] });
  return serve(values.config, log);
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
