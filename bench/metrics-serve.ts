// A bare server for measuring what query counting costs: the config's zones
// (no engine, no probes), with or without the metrics observer, until killed.
// Used by bench/metrics-cost.sh; run by hand with
//
//   node --import tsx bench/metrics-serve.ts --config FILE [--metrics] [--ops 127.0.0.1:9153]
//
// --metrics  attach VigilMetrics' observer (what `vigil serve` does when metrics are on)
// --ops      also serve /metrics there, to look at the counts during a run

import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig, formatErrors } from '../zones/load.js';
import { startServer } from '../server/server.js';
import { VigilMetrics } from '../server/metrics/registry.js';
import { startOps, type OpsServer } from '../server/http/ops.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    metrics: { type: 'boolean', default: false },
    ops: { type: 'string' },
  },
});
if (values.config === undefined) {
  process.stderr.write('usage: metrics-serve --config FILE [--metrics] [--ops HOST:PORT]\n');
  process.exit(2);
}

const log = pino({ level: 'warn' });
let config;
try {
  ({ config } = await loadConfig(values.config));
} catch (err) {
  process.stderr.write(`${formatErrors(err)}\n`);
  process.exit(1);
}
const metrics = values.metrics ? new VigilMetrics({ node: 'bench', pop: 'bench' }) : undefined;
const server = await startServer(config, { logger: log, ...(metrics !== undefined ? { observer: metrics.queryObserver() } : {}) });
let ops: OpsServer | undefined;
if (values.ops !== undefined && metrics !== undefined) {
  const at = values.ops.lastIndexOf(':');
  ops = await startOps({ host: values.ops.slice(0, at), port: Number(values.ops.slice(at + 1)) }, { metrics, ready: () => true }, log);
}
process.stderr.write(`serving on ${JSON.stringify(server.addresses.udp)}, metrics observer ${metrics !== undefined ? 'on' : 'off'}\n`);

const stop = (): void => {
  void Promise.all([server.close(), ops?.close()]).then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
