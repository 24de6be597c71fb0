// The soak's Vigil config: the bundled example zone, a YAML zone `soak.test.`
// with three health-driven services (failover, multivalue, weighted) whose
// members are real HTTP backends, and two valid variants the reloads
// alternate between, plus one broken config that must be refused.

import { copyFileSync } from 'node:fs';
import { join } from 'node:path';

export const SOAK_ZONE = 'soak.test.';

/** A service as the load checks it: its name and every address it may ever answer with. */
export interface SoakService {
  readonly name: string;
  readonly policy: 'failover' | 'multivalue' | 'weighted';
  readonly members: readonly { readonly name: string; readonly address: string; readonly priority?: number; readonly weight?: number }[];
  /** Extra YAML keys of the service (policy options, failback, damping). */
  readonly extra: string;
}

/**
 * Member addresses live in 127.77.0.0/24, away from the 127.0.0.x other tests
 * use; each backend has its own ephemeral port, set per member.
 */
export const SERVICES: readonly SoakService[] = [
  {
    name: `fo.${SOAK_ZONE}`,
    policy: 'failover',
    members: [
      { name: 'primary', address: '127.77.0.1', priority: 1 },
      { name: 'secondary', address: '127.77.0.2', priority: 2 },
    ],
    extra: 'failback: immediate\n    damping: false',
  },
  {
    name: `mv.${SOAK_ZONE}`,
    policy: 'multivalue',
    members: [
      { name: 'a', address: '127.77.0.3' },
      { name: 'b', address: '127.77.0.4' },
      { name: 'c', address: '127.77.0.5' },
    ],
    // Damping on (the default): flapping members are held down, one more path exercised.
    extra: 'max_answers: 8',
  },
  {
    name: `wt.${SOAK_ZONE}`,
    policy: 'weighted',
    members: [
      { name: 'heavy', address: '127.77.0.6', weight: 3 },
      { name: 'light', address: '127.77.0.7', weight: 1 },
    ],
    // The default failback ramp: answers move in steps while members flap.
    extra: 'count: 1\n    damping: false',
  },
];

export const MEMBER_ADDRESSES: readonly string[] = SERVICES.flatMap((s) => s.members.map((m) => m.address));

/** The static A record the two variants disagree on. */
export const VARIANT_ADDRESS = { A: '192.0.2.1', B: '192.0.2.2' } as const;
/** Served as gen.soak.test TXT by the broken config, were it ever installed. */
export const BROKEN_GENERATION = 999_999;

export interface ConfigPorts {
  readonly dns: number;
  readonly metrics: number;
  /** Backend port per member address. */
  readonly backends: ReadonlyMap<string, number>;
}

/** Copies the example zone into `dir`; the config refers to it by a relative path. */
export function writeZoneFiles(dir: string, repoRoot: string): void {
  copyFileSync(join(repoRoot, 'zones', 'examples', 'example.test.zone'), join(dir, 'example.test.zone'));
}

/**
 * The config for generation `gen` (served as `gen.soak.test TXT "gen-N"`):
 * variant A or B by parity, so consecutive reloads always change something;
 * or, with `broken`, a config with an unknown policy that must be refused.
 */
export function configYaml(ports: ConfigPorts, gen: number, broken = false): string {
  const variant = gen % 2 === 0 ? 'A' : 'B';
  const probe = '{ type: http, path: /health, interval: 200ms, recheck: 100ms, timeout: 500ms, jitter: 20ms, rise: 2, fall: 3 }';
  const services = SERVICES.map((s, i) => {
    const members = s.members
      .map((m) => {
        const port = ports.backends.get(m.address);
        if (port === undefined) throw new Error(`no backend port for ${m.address}`);
        const keys = [`name: ${m.name}`, `addresses: ["${m.address}"]`];
        if (m.priority !== undefined) keys.push(`priority: ${m.priority}`);
        if (m.weight !== undefined) keys.push(`weight: ${m.weight}`);
        keys.push(`probe: { port: ${port} }`);
        return `      - { ${keys.join(', ')} }`;
      })
      .join('\n');
    const policy = broken && i === 0 ? 'sometimes' : s.policy;
    return `  - name: ${s.name}
    policy: ${policy}
    ttl: ${variant === 'A' ? 30 : 60}
    degraded_ttl: 5
    settle: 1s
    ${s.extra}
    probe: ${probe}
    members:
${members}`;
  }).join('\n');
  return `# Written by bench/soak (generation ${broken ? 'broken' : gen}, variant ${variant}).
listen: ["127.0.0.1:${ports.dns}"]
metrics:
  listen: "127.0.0.1:${ports.metrics}"
log:
  level: info
zones:
  - origin: example.test.
    file: example.test.zone
  - origin: ${SOAK_ZONE}
    ttl: 5
    records:
      - "@ 3600 IN SOA ns1 hostmaster ${gen + 1} 7200 3600 1209600 5"
      - "@ NS ns1"
      - ns1 A 127.0.0.1
      - v A ${VARIANT_ADDRESS[variant]}
      - 'gen TXT "gen-${broken ? BROKEN_GENERATION : gen}"'
services:
${services}
`;
}
