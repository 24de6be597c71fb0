// Writes what the churn bench serves and sends: a config with the example zone
// plus `churn.test.` holding N failover services, and a dnsperf query file that
// is the usual mix with every fifth line asking for one of those services.
// Deterministic, so every run of the bench sends the same bytes.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { intArg, UsageError } from '../args.js';

export type ChurnProbe = 'tcp' | 'none';

/** The parseArgs specs of the options every churn script takes (churnArgs reads them); each adds its own beside. */
export const CHURN_OPTIONS = {
  services: { type: 'string' },
  flips: { type: 'string' },
  slices: { type: 'string' },
  probe: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/**
 * --services, --flips, --slices and --probe, which every churn script takes
 * alike: at most one flip per service (each flip is one service's primary).
 */
export function churnArgs(
  values: { readonly services?: string | undefined; readonly flips?: string | undefined; readonly slices?: string | undefined; readonly probe?: string | undefined },
  flipsDefault: (services: number) => number,
  flipsMin: number,
): { services: number; flips: number; slices: number; probe: ChurnProbe } {
  const services = intArg(values.services, 'services', 1000, 1);
  const slices = intArg(values.slices, 'slices', 1, 1);
  const flips = intArg(values.flips, 'flips', flipsDefault(services), flipsMin);
  if (flips > services) throw new UsageError(`--flips ${flips} is more than --services ${services}: each flip is one service's primary`);
  const probe = values.probe ?? 'tcp';
  if (probe !== 'tcp' && probe !== 'none') throw new UsageError(`--probe must be tcp or none, got "${probe}"`);
  return { services, flips, slices, probe };
}

export interface ChurnSetupOptions {
  readonly dir: string;
  readonly services: number;
  /** UDP/TCP port to listen on; 0 lets the kernel pick one. */
  readonly port: number;
  readonly probe: ChurnProbe;
  /** Port of the probe listeners on the member addresses (tcp probe only). */
  readonly probePort: number;
}

export interface ChurnSetup {
  readonly configFile: string;
  readonly queryFile: string;
  readonly queryLines: number;
  readonly churnLines: number;
  /** Member ids of each service's primary, in service order: what the churn flips. */
  readonly primaries: readonly string[];
}

/** Every member of every service has one of these two addresses; the probe listeners bind them. */
export const MEMBER_ADDRESSES = ['127.0.0.20', '127.0.0.21'] as const;

export class RepoNotFound extends Error {
  override name = 'RepoNotFound';
}

/** The checkout root: the nearest parent with package.json, so this works from bench/ (tsx) and from dist/bench/. */
export function repoRoot(from: string = fileURLToPath(import.meta.url)): string {
  let dir = dirname(from);
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'zones', 'examples'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new RepoNotFound(`no Vigil checkout above ${from}`);
    dir = up;
  }
}

export function serviceName(i: number): string {
  return `s${i}.churn.test.`;
}

function churnZone(): string {
  return ['$ORIGIN churn.test.', '$TTL 3600', '@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300', '@ IN NS ns1', 'ns1 IN A 192.0.2.253', ''].join('\n');
}

// settle 0s and failback immediate: a cleared override puts the primary back at
// once and nothing is scheduled afterwards, so a no-churn run that follows a
// churn run sees no leftover recomputes (a 60 s settle would end, service by
// service, in the middle of it). The probe's 1h interval makes probing cost one
// check per member at start and nothing during the runs.
function serviceYaml(i: number, opts: ChurnSetupOptions): string {
  const probe = opts.probe === 'tcp' ? `{ type: tcp, port: ${opts.probePort}, interval: 1h }` : '{ type: none }';
  return [
    `  - name: ${serviceName(i)}`,
    '    policy: failover',
    '    ttl: 60',
    '    degraded_ttl: 10',
    '    settle: 0s',
    '    failback: immediate',
    `    probe: ${probe}`,
    '    members:',
    `      - { name: a, addresses: ["${MEMBER_ADDRESSES[0]}"], priority: 1 }`,
    `      - { name: b, addresses: ["${MEMBER_ADDRESSES[1]}"], priority: 2 }`,
  ].join('\n');
}

export function writeChurnSetup(opts: ChurnSetupOptions): ChurnSetup {
  const root = repoRoot();
  const exampleZone = join(root, 'zones', 'examples', 'example.test.zone');
  const zoneFile = join(opts.dir, 'churn.test.zone');
  writeFileSync(zoneFile, churnZone());

  const services: string[] = [];
  const primaries: string[] = [];
  for (let i = 0; i < opts.services; i++) {
    services.push(serviceYaml(i, opts));
    primaries.push(`${serviceName(i)}/a`);
  }
  const configFile = join(opts.dir, 'vigil.yaml');
  writeFileSync(
    configFile,
    [
      `listen: ["127.0.0.1:${opts.port}"]`,
      // No rate_limit key: it would answer dnsperf's single source address with drops.
      'log: { level: error }',
      'zones:',
      `  - origin: example.test.`,
      `    file: ${JSON.stringify(exampleZone)}`,
      '  - origin: churn.test.',
      '    file: churn.test.zone',
      'services:',
      ...services,
      '',
    ].join('\n'),
  );

  // Four lines of the usual mix, then one service name: 20% of the file.
  const base = readFileSync(join(root, 'bench', 'queries.txt'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  const lines: string[] = [];
  let k = 0;
  for (let i = 0; i < base.length; i++) {
    lines.push(base[i]!);
    if (i % 4 === 3 && opts.services > 0) lines.push(`${serviceName(k++ % opts.services)} A`);
  }
  const queryFile = join(opts.dir, 'queries.txt');
  writeFileSync(queryFile, `${lines.join('\n')}\n`);
  return { configFile, queryFile, queryLines: lines.length, churnLines: k, primaries };
}

/** Two listeners, one per member address, on one port: what the members' tcp probes connect to. */
export async function probeListeners(): Promise<{ port: number; servers: Server[] }> {
  const listen = (host: string, port: number): Promise<Server> =>
    new Promise((resolve, reject) => {
      const s = createServer((sock) => sock.destroy());
      s.once('error', reject);
      s.listen(port, host, () => resolve(s));
    });
  for (let attempt = 0; ; attempt++) {
    const first = await listen(MEMBER_ADDRESSES[0], 0);
    const addr = first.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    try {
      return { port, servers: [first, await listen(MEMBER_ADDRESSES[1], port)] };
    } catch (err) {
      // The port the kernel gave us on one address is taken on the other: try another.
      first.close();
      if (attempt >= 10) throw err;
    }
  }
}

export class MembersNotUp extends Error {
  override name = 'MembersNotUp';
  constructor(
    message: string,
    readonly notUp: number,
  ) {
    super(message);
  }
}

/** Polls until every member of every service is up (their first probe has answered), or throws MembersNotUp after `timeoutMs`. */
export async function waitUntilUp(state: () => { readonly services: readonly { readonly members: readonly { readonly status: string }[] }[] }, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = state().services.flatMap((s) => s.members.map((m) => m.status));
    const notUp = states.filter((s) => s !== 'up').length;
    if (notUp === 0) return;
    if (Date.now() > deadline) throw new MembersNotUp(`members not up after ${timeoutMs / 1000} s: ${notUp} are not`, notUp);
    await new Promise((r) => setTimeout(r, 250));
  }
}
