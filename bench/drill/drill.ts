// `npm run drill`: the failover drill from the command line. See README.md.

import { parseArgs } from 'node:util';
import { runDrill, DrillOptionError } from './run.js';
import { formatTimeline, timelineJson } from './report.js';
import { SERVICE } from './vigil.js';

const HELP = `Usage: npm run drill -- [options]

Kills the primary of a failover service served by Vigil and measures, on
loopback, how long real resolvers (unbound) keep sending clients to it.

Options:
  --ttl N         the service's TTL in seconds (default 20)
  --resolvers N   unbound instances, on 127.0.0.11 upwards (default 3)
  --clients N     clients per resolver (default 4)
  --json          also print the timeline as one JSON line
  --keep          keep the temp dir with configs and logs
  -h, --help      this help

Exit status: 0 when traffic moved to the secondary, 1 otherwise, 2 on bad options.
`;

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ttl: { type: 'string', default: '20' },
        resolvers: { type: 'string', default: '3' },
        clients: { type: 'string', default: '4' },
        json: { type: 'boolean', default: false },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`drill: ${err instanceof Error ? err.message : String(err)}\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const options = {
    ttl: Number(values.ttl),
    resolvers: Number(values.resolvers),
    clients: Number(values.clients),
    keep: values.keep,
    progress: (line: string): void => void process.stderr.write(`drill: ${line}\n`),
  };
  let result;
  try {
    result = await runDrill(options);
  } catch (err) {
    if (err instanceof DrillOptionError) {
      process.stderr.write(`drill: ${err.message}\n`);
      return 2;
    }
    // Nothing was started yet (missing unbound, no dist/): say why, plainly.
    process.stderr.write(`drill: ${err instanceof Error ? err.message : String(err)}\n`);
    if (values.json) process.stdout.write(timelineJson(null, { service: SERVICE, ...options, ok: false, failure: String(err) }) + '\n');
    return 1;
  }
  const ctx = { service: SERVICE, ttl: options.ttl, resolvers: options.resolvers, clients: options.clients, ok: result.ok, failure: result.failure };
  if (result.timeline !== null) process.stdout.write(formatTimeline(result.timeline, ctx) + '\n');
  else process.stderr.write(`drill: failed: ${result.failure ?? 'unknown'}\n`);
  if (result.keptDir !== null) process.stderr.write(`drill: configs and logs kept in ${result.keptDir}\n`);
  if (values.json) process.stdout.write(timelineJson(result.timeline, ctx) + '\n');
  return result.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`drill: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
