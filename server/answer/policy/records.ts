// SRV and MX services: one variant listing the members whose target is served,
// with their own priority/weight/port (SRV) or preference (MX): the client
// does the priority and weight selection, so the policy only drops the dead.

import type { CompiledMember, CompiledService } from '../../../zones/service.js';
import { formatName } from '../../wire/name.js';
import { addressesOf, FAMILIES, isServed, type StatusOf } from './members.js';
import type { AnswerSet, MxExchange, SrvTarget } from './types.js';

/**
 * A member is served when any family it has addresses in is served; a member
 * without addresses is not probed and always served.
 */
export function memberServed(m: CompiledMember, statusOf: StatusOf): boolean {
  const families = FAMILIES.filter((f) => addressesOf(m, f).length > 0);
  return families.length === 0 || families.some((f) => isServed(statusOf(m, f)));
}

export interface RecordsOutcome {
  readonly set: AnswerSet;
  readonly failedOpen: boolean;
  readonly summary: string;
}

/**
 * With no member served the answer fails open to every member, for
 * `last_resort` too: its addresses cannot be SRV targets or MX exchanges.
 */
export function recordsAnswer(service: CompiledService, statusOf: StatusOf): RecordsOutcome {
  const up = service.members.filter((m) => memberServed(m, statusOf));
  const failedOpen = up.length === 0;
  const chosen = failedOpen ? service.members : up;
  const srv: SrvTarget[] = [];
  const mx: MxExchange[] = [];
  const texts: string[] = [];
  for (const m of chosen) {
    if (service.kind === 'srv' && m.srv !== undefined) {
      srv.push({ priority: m.priority, weight: m.weight, port: m.srv.port, target: m.srv.target });
      texts.push(`${m.priority} ${m.weight} ${m.srv.port} ${formatName(m.srv.target)}`);
    } else if (service.kind === 'mx' && m.mx !== undefined) {
      mx.push({ preference: m.priority, exchange: m.mx.exchange });
      texts.push(`${m.priority} ${formatName(m.mx.exchange)}`);
    }
  }
  texts.sort();
  const summary = `${service.kind}=${texts.join(',')}${failedOpen ? ' (failed open)' : ''}`;
  return { set: { v4: [], v6: [], srv, mx }, failedOpen, summary };
}
