// Real recursive resolvers for the drill: unbound instances, each on its own
// loopback address and sending its queries from that address, so that Vigil
// sees (and its drain tracker counts) distinct resolvers. Each one forwards
// nothing: drill.test. is a stub zone pointing at Vigil, and the cache
// behaves as in production (no minimum TTL, no serving expired answers, no
// prefetch), because the cache is what the drill measures.

import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Resolver } from 'node:dns/promises';
import { ChildFailed, type Child, type ChildRegistry } from './procs.js';
import { freePort, waitFor } from './net.js';

const run = promisify(execFile);

export const UNBOUND = '/usr/sbin/unbound';
export const UNBOUND_CHECKCONF = '/usr/sbin/unbound-checkconf';

export class UnboundMissing extends Error {
  override name = 'UnboundMissing';
}

export interface UnboundSetup {
  readonly index: number;
  readonly address: string;
  readonly port: number;
  readonly dir: string;
  readonly zone: string;
  readonly vigilPort: number;
}

/** The address of resolver `i` (1-based): 127.0.0.11, .12, ... */
export const resolverAddress = (i: number): string => `127.0.0.${10 + i}`;

export function unboundConfig(s: UnboundSetup): string {
  const zone = s.zone.endsWith('.') ? s.zone : `${s.zone}.`;
  // The last label of the zone (`test.`) is one of unbound's default local
  // zones (RFC 6761), answered NXDOMAIN locally unless released by nodefault.
  const tld = zone.split('.').slice(-2).join('.');
  return `server:
    verbosity: 1
    interface: ${s.address}@${s.port}
    outgoing-interface: ${s.address}
    interface-automatic: no
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    num-threads: 1
    so-reuseport: no
    outgoing-range: 64
    access-control: 127.0.0.0/8 allow
    chroot: ""
    username: ""
    directory: "${s.dir}"
    pidfile: "${join(s.dir, `unbound-${s.index}.pid`)}"
    use-syslog: no
    logfile: ""
    log-time-ascii: yes
    module-config: "iterator"
    do-not-query-localhost: no
    qname-minimisation: no
    harden-referral-path: no
    harden-glue: no
    harden-dnssec-stripped: no
    harden-below-nxdomain: no
    aggressive-nsec: no
    cache-min-ttl: 0
    serve-expired: no
    prefetch: no
    local-zone: "${tld}" nodefault

stub-zone:
    name: "${zone}"
    stub-addr: 127.0.0.1@${s.vigilPort}
    stub-first: no
    stub-prime: no
`;
}

export interface RunningUnbound {
  readonly setup: UnboundSetup;
  readonly child: Child;
  /** "address:port", for Resolver.setServers. */
  readonly server: string;
}

export function checkUnboundInstalled(): void {
  for (const bin of [UNBOUND, UNBOUND_CHECKCONF]) {
    if (!existsSync(bin)) throw new UnboundMissing(`${bin} not found: install Debian's "unbound" package`);
  }
}

/**
 * Writes the config, checks it with unbound-checkconf, starts `unbound -d`
 * and waits until it resolves `readyName` (a name outside the service, so the
 * check leaves the service's cache entry untouched) to `readyAddress`.
 */
export async function startUnbound(
  registry: ChildRegistry,
  index: number,
  dir: string,
  zone: string,
  vigilPort: number,
  readyName: string,
  readyAddress: string,
): Promise<RunningUnbound> {
  const address = resolverAddress(index);
  const port = await freePort(address);
  const setup: UnboundSetup = { index, address, port, dir, zone, vigilPort };
  const file = join(dir, `unbound-${index}.conf`);
  writeFileSync(file, unboundConfig(setup));
  try {
    await run(UNBOUND_CHECKCONF, [file]);
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new ChildFailed(`unbound-checkconf ${file}`, `${e.stderr ?? ''}${e.stdout ?? ''}`.trim() || e.message, file);
  }
  const child = registry.spawn(`unbound-${index}`, UNBOUND, ['-d', '-c', file], join(dir, `unbound-${index}.log`));
  const server = `${address}:${port}`;
  let last = '';
  await waitFor(
    `unbound ${server} resolving ${readyName}`,
    async () => {
      if (child.exited !== undefined) throw new ChildFailed(child.name, `exited (${JSON.stringify(child.exited)}):\n${child.tail()}`, child.logFile);
      const r = new Resolver({ timeout: 1000, tries: 1 });
      r.setServers([server]);
      try {
        const got = await r.resolve4(readyName);
        last = got.join(',');
        return last === readyAddress;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
        return false;
      }
    },
    15_000,
    200,
    () => `last: ${last}; log: ${child.tail(5)}`,
  );
  return { setup, child, server };
}
