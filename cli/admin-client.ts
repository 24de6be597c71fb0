// The CLI's side of the admin API (server/http/admin.ts): one request per
// command, and plain-text renderings of the replies for a terminal.

import type { EngineState } from '../server/engine.js';
import type { AuditEntry, Override } from '../probes/replication/types.js';
import type { DrainReport } from '../server/drain/tracker.js';

export class AdminClientError extends Error {
  override name = 'AdminClientError';
}

/** Bounded: a CLI command must not hang on a node that accepts and never answers. */
const TIMEOUT_MS = 10_000;

export class AdminClient {
  constructor(
    private readonly base: string,
    private readonly token: string | undefined,
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token !== undefined) headers['authorization'] = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(new URL(path, this.base), {
        method,
        headers,
        signal: AbortSignal.timeout(TIMEOUT_MS),
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new AdminClientError(`cannot reach the admin API at ${this.base}: ${cause}`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new AdminClientError(`${method} ${path}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`);
    }
    if (!res.ok) {
      const error = (json as { error?: string; errors?: string }).error ?? (json as { errors?: string }).errors ?? text;
      throw new AdminClientError(`${method} ${path}: HTTP ${res.status}: ${error}`);
    }
    return json as T;
  }

  state(): Promise<EngineState> {
    return this.call('GET', '/state');
  }

  drain(service?: string): Promise<DrainReport> {
    return this.call('GET', service !== undefined ? `/drain?service=${encodeURIComponent(service)}` : '/drain');
  }

  async audit(count: number): Promise<readonly AuditEntry[]> {
    return (await this.call<{ entries: AuditEntry[] }>('GET', `/audit?count=${count}`)).entries;
  }

  setOverride(body: { member: string; action: string; reason: string; by: string; for?: string }): Promise<{ ok: boolean; override: Override }> {
    return this.call('POST', '/overrides', body);
  }

  clearOverride(member: string, by: string, reason: string): Promise<{ ok: boolean }> {
    return this.call('DELETE', `/overrides/${encodeURIComponent(member)}?by=${encodeURIComponent(by)}&reason=${encodeURIComponent(reason)}`);
  }
}

function ago(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

export function printState(s: EngineState): string {
  const lines = [`node ${s.node.id} (pop ${s.node.pop}), redis ${s.replication.redis}${s.replication.frozen ? ' (frozen: using the last verdicts of other nodes)' : ''}, quorum ${s.replication.quorum}`];
  for (const n of s.replication.nodes) {
    lines.push(`  node ${n.id.padEnd(16)} pop ${n.pop.padEnd(10)} ${n.self ? 'self' : n.fresh ? `fresh, seen ${ago(n.lastSeenMs)} ago` : `STALE, seen ${ago(n.lastSeenMs)} ago`}${n.diverged ? ', DIVERGED' : ''}`);
  }
  for (const svc of s.services) {
    const flags = [svc.degraded ? 'degraded' : '', svc.failedOpen ? 'FAILED OPEN' : '', svc.diverged ? 'DIVERGED' : ''].filter(Boolean).join(', ');
    lines.push('', `${svc.name} (${svc.policy}${svc.views.length ? `, views ${svc.views.join(',')}` : ''}) epoch ${svc.epoch} ttl ${svc.ttl}${flags ? ` [${flags}]` : ''}`);
    lines.push(`  answer: ${svc.answer}`);
    for (const m of svc.members) {
      const votes = `votes down ${m.votes.down.length}/${m.votes.up.length + m.votes.down.length} (need ${m.votes.required})`;
      const ov = m.override !== undefined ? `  OVERRIDE ${m.override.action} by ${m.override.by}: ${m.override.reason}` : '';
      lines.push(`  ${m.member} ${m.family} ${m.address}: ${m.status.toUpperCase()} (${m.reason}); local ${m.local.status}; ${votes}${ov}`);
    }
  }
  return lines.join('\n');
}

export function printAudit(entries: readonly AuditEntry[]): string {
  if (entries.length === 0) return 'no audit entries';
  return entries
    .map((e) => {
      const fields = Object.entries(e.fields)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ');
      return `${new Date(e.at).toISOString()} ${e.event.padEnd(18)} node=${e.node} by=${e.by} ${fields} reason="${e.reason}"`;
    })
    .join('\n');
}

export function printDrain(r: DrainReport, now: number): string {
  if (r.services.length === 0) return 'no answer changes tracked yet';
  const lines: string[] = [];
  for (const s of r.services) {
    lines.push(`${s.service}: ${s.resolversTracked} resolvers tracked`);
    for (const c of s.changes) {
      const p = (v: number | undefined): string => (v === undefined ? '-' : `${(v / 1000).toFixed(1)}s`);
      lines.push(
        `  change at ${new Date(c.at).toISOString()} (epoch ${c.epoch}, old TTL ${c.oldTtl}s): ${c.refetched}/${c.population} resolvers re-fetched (${(c.ratio * 100).toFixed(1)}%), p50 ${p(c.p50Ms)} p90 ${p(c.p90Ms)} p99 ${p(c.p99Ms)}${c.overdue ? `, OVERDUE by ${ago(now - c.expectedDoneAt)}` : ''}`,
      );
      lines.push(`    ${c.from} -> ${c.to}`);
      for (const l of c.lagging) lines.push(`    lagging ${l.client}: last asked ${ago(l.lastSeenBeforeMs)} before the change, ${l.queries} queries`);
    }
  }
  return lines.join('\n');
}
