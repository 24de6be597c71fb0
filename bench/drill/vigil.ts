// Vigil under drill: its zone and config, the child process, and a reader of
// the admin API (GET /state, GET /drain) that tolerates both today's /state
// (no epoch, no member ids) and the contract's.

import { existsSync, readFileSync, statSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROBE_PATH } from './backend.js';
import { ChildFailed, type Child, type ChildRegistry } from './procs.js';
import { waitFor } from './net.js';

export const ZONE_ORIGIN = 'drill.test.';
export const SERVICE = 'www.drill.test.';
/** A static name used to check that resolvers work without touching the service's caches. */
export const READY_NAME = 'ready.drill.test';
export const READY_ADDRESS = '192.0.2.1';

export class VigilNotBuilt extends Error {
  override name = 'VigilNotBuilt';
}

/** The checkout's root: the nearest directory above this module with Vigil's package.json (works from bench/ and dist/bench/). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'vigil') return dir;
    const up = dirname(dir);
    if (up === dir) throw new VigilNotBuilt('cannot find the Vigil checkout (package.json named "vigil") above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

function newestTs(dir: string): number {
  let newest = 0;
  if (!existsSync(dir)) return newest;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestTs(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * The built CLI, and a warning when sources are newer than it. The drill does
 * not build: other work may be mid-edit in the tree, and `npm run drill`
 * builds first.
 */
export function builtVigil(root: string): { cli: string; warning?: string } {
  const cli = join(root, 'dist', 'cli', 'vigil.js');
  if (!existsSync(cli)) throw new VigilNotBuilt(`${cli} does not exist: run "npm run build" first`);
  const built = statSync(cli).mtimeMs;
  const newest = Math.max(...['server', 'zones', 'probes', 'cli'].map((d) => newestTs(join(root, d))));
  if (newest > built) return { cli, warning: `dist/ is older than the sources (run "npm run build" to drill the current code)` };
  return { cli };
}

export interface VigilSetup {
  readonly dir: string;
  readonly dnsPort: number;
  readonly adminPort: number;
  readonly backendPort: number;
  readonly ttl: number;
}

export function zoneText(): string {
  return `$ORIGIN ${ZONE_ORIGIN}
$TTL 300
@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 5
@ NS ns1
ns1 A 127.0.0.1
ready 1 A ${READY_ADDRESS}
`;
}

/**
 * The config: one failover service, primary 127.0.0.2 then secondary
 * 127.0.0.3. Probing is faster than the defaults (detection in about
 * interval + fall × recheck = 0.5 s) so the drill's time goes to the drain,
 * which is what it measures. `settle: 1s` lets the steady TTL be served soon
 * after start-up; degraded_ttl only affects answers after the change.
 */
export function configYaml(s: VigilSetup): string {
  const degraded = Math.min(5, s.ttl);
  return `listen: ["127.0.0.1:${s.dnsPort}"]
admin:
  listen: "127.0.0.1:${s.adminPort}"
zones:
  - origin: ${ZONE_ORIGIN}
    file: drill.test.zone
services:
  - name: ${SERVICE}
    policy: failover
    ttl: ${s.ttl}
    degraded_ttl: ${degraded}
    settle: 1s
    failback: immediate
    damping: false
    probe: { type: http, port: ${s.backendPort}, path: ${PROBE_PATH}, interval: 200ms, recheck: 100ms, timeout: 300ms, jitter: 0ms, rise: 2, fall: 3 }
    members:
      - { name: primary, addresses: ["127.0.0.2"], priority: 1 }
      - { name: secondary, addresses: ["127.0.0.3"], priority: 2 }
`;
}

// ---- admin API views -------------------------------------------------------

export interface MemberView {
  readonly name: string;
  readonly status: string;
  readonly address: string | undefined;
}

export interface ServiceView {
  readonly name: string;
  readonly answer: string;
  readonly ttl: number;
  readonly degraded: boolean;
  /** Absent until the contract's /state (with epochs) is served. */
  readonly epoch: number | undefined;
  readonly members: readonly MemberView[];
}

export interface DrainChange {
  readonly at: number;
  readonly epoch: number | undefined;
  readonly from: string | undefined;
  readonly to: string | undefined;
  readonly oldTtl: number | undefined;
  readonly population: number;
  readonly refetched: number;
  readonly p50Ms: number | undefined;
  readonly p90Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly expectedDoneAt: number | undefined;
  readonly overdue: boolean;
}

export type DrainView =
  | { readonly available: false; readonly status: number; readonly error: string }
  | { readonly available: true; readonly resolversTracked: number | undefined; readonly changes: readonly DrainChange[] };

export class AdminApiError extends Error {
  override name = 'AdminApiError';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`admin API ${path}: ${message}`);
  }
}

type Json = Record<string, unknown>;
/** DNS names compare without case and without regard to the final dot. */
const sameName = (a: string, b: string): boolean => a.toLowerCase().replace(/\.$/, '') === b.toLowerCase().replace(/\.$/, '');
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function parseService(v: unknown): ServiceView | undefined {
  if (!isObj(v) || typeof v.name !== 'string') return undefined;
  const members: MemberView[] = [];
  if (Array.isArray(v.members)) {
    for (const m of v.members) {
      if (isObj(m) && typeof m.name === 'string' && typeof m.status === 'string') members.push({ name: m.name, status: m.status, address: str(m.address) });
    }
  }
  return { name: v.name, answer: str(v.answer) ?? '', ttl: num(v.ttl) ?? NaN, degraded: v.degraded === true, epoch: num(v.epoch), members };
}

function parseChange(v: unknown): DrainChange | undefined {
  if (!isObj(v)) return undefined;
  const at = num(v.at);
  const population = num(v.population);
  const refetched = num(v.refetched);
  if (at === undefined || population === undefined || refetched === undefined) return undefined;
  return {
    at,
    epoch: num(v.epoch),
    from: str(v.from),
    to: str(v.to),
    oldTtl: num(v.oldTtl),
    population,
    refetched,
    p50Ms: num(v.p50Ms),
    p90Ms: num(v.p90Ms),
    p99Ms: num(v.p99Ms),
    expectedDoneAt: num(v.expectedDoneAt),
    overdue: v.overdue === true,
  };
}

export class AdminClient {
  constructor(readonly base: string) {}

  private async get(path: string): Promise<{ status: number; body: unknown }> {
    const res = await fetch(this.base + path, { signal: AbortSignal.timeout(3000) });
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    return { status: res.status, body };
  }

  /** The service named `name` in GET /state. */
  async service(name: string): Promise<ServiceView> {
    const { status, body } = await this.get('/state');
    if (status !== 200) throw new AdminApiError('/state', `HTTP ${status}`);
    // Today's /state is { services }, the contract's adds node and replication beside it.
    const list = isObj(body) && Array.isArray(body.services) ? body.services : Array.isArray(body) ? body : undefined;
    if (list === undefined) throw new AdminApiError('/state', 'no services list in the body');
    for (const s of list) {
      const v = parseService(s);
      if (v !== undefined && sameName(v.name, name)) return v;
    }
    throw new AdminApiError('/state', `no service ${name}`);
  }

  /** GET /drain?service=NAME; `available: false` when the endpoint does not exist (404). */
  async drain(name: string): Promise<DrainView> {
    const { status, body } = await this.get(`/drain?service=${encodeURIComponent(name)}`);
    if (status === 404) return { available: false, status, error: (isObj(body) ? str(body.error) : undefined) ?? 'HTTP 404' };
    if (status !== 200) throw new AdminApiError('/drain', `HTTP ${status}`);
    if (!isObj(body) || !Array.isArray(body.services)) throw new AdminApiError('/drain', 'no services list in the body');
    for (const s of body.services) {
      const service = isObj(s) ? str(s.service) : undefined;
      if (!isObj(s) || service === undefined || !sameName(service, name)) continue;
      const changes = Array.isArray(s.changes) ? s.changes.map(parseChange).filter((c): c is DrainChange => c !== undefined) : [];
      return { available: true, resolversTracked: num(s.resolversTracked), changes };
    }
    return { available: true, resolversTracked: undefined, changes: [] };
  }
}

export interface RunningVigil {
  readonly child: Child;
  readonly admin: AdminClient;
  readonly configFile: string;
}

/** Writes zone and config into `s.dir`, starts `node <cli> serve`, and waits until /state answers. */
export async function startVigil(registry: ChildRegistry, cli: string, s: VigilSetup): Promise<RunningVigil> {
  writeFileSync(join(s.dir, 'drill.test.zone'), zoneText());
  const configFile = join(s.dir, 'vigil.yaml');
  writeFileSync(configFile, configYaml(s));
  // A standalone Vigil whatever the caller's shell holds: $VIGIL_REDIS_URL would
  // make it replicate, $VIGIL_ADMIN_TOKEN would lock the drill out of /state.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIGIL_')));
  const child = registry.spawn('vigil', process.execPath, [cli, 'serve', '--config', configFile], join(s.dir, 'vigil.log'), env);
  const admin = new AdminClient(`http://127.0.0.1:${s.adminPort}`);
  let last = '';
  await waitFor(
    'Vigil admin API answering',
    async () => {
      if (child.exited !== undefined) throw new ChildFailed('vigil', `exited (${JSON.stringify(child.exited)}) before answering:\n${child.tail()}`, child.logFile);
      try {
        await admin.service(SERVICE);
        return true;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
        return false;
      }
    },
    20_000,
    100,
    () => last,
  );
  return { child, admin, configFile };
}
