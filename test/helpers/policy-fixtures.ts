// Compiled services and members for the policy tests: what zones/ would
// compile from a config, written out, with defaults a test overrides.

import type { CompiledMember, CompiledService, ProbeSpec } from '../../zones/service.js';

export const T0 = 1_700_000_000_000;
export const NAME = '\x03www\x07example\x04test\x00';
export const LABEL = 'www.example.test.';

export const PROBE: ProbeSpec = {
  type: 'http',
  params: { port: 80, path: '/health' },
  intervalMs: 500,
  timeoutMs: 1000,
  recheckMs: 200,
  jitterMs: 50,
  rise: 3,
  fall: 5,
};

export interface MemberOpts {
  v4?: string[];
  v6?: string[];
  priority?: number;
  weight?: number;
  srv?: { target: string; port: number };
  mx?: { exchange: string };
}

export function member(name: string, o: MemberOpts = {}): CompiledMember {
  const v4 = o.v4 ?? [];
  const v6 = o.v6 ?? [];
  return {
    id: `${LABEL}/${name}`,
    name,
    v4,
    v6,
    priority: o.priority ?? 1,
    weight: o.weight ?? 1,
    ...(o.srv ? { srv: o.srv } : {}),
    ...(o.mx ? { mx: o.mx } : {}),
    probe: v4.length + v6.length > 0 ? PROBE : { ...PROBE, type: 'none', params: {} },
    probeKey: `${v4.join(',')}|${v6.join(',')}|http`,
  };
}

export function service(o: Partial<CompiledService> & { members: readonly CompiledMember[] }): CompiledService {
  return {
    name: NAME,
    zone: '\x07example\x04test\x00',
    views: [],
    kind: 'address',
    policy: 'failover',
    ttl: 300,
    degradedTtl: 30,
    settleMs: 60_000,
    minHealthy: 1,
    maxAnswers: 8,
    count: 1,
    whenAllDown: { mode: 'fail_open' },
    failback: { mode: 'immediate' },
    damping: { enabled: true, penalty: 1000, suppress: 2000, reuse: 750, halfLifeMs: 60_000 },
    initialState: 'unknown',
    where: { file: 'vigil.yaml', line: 1 },
    ...o,
  };
}
