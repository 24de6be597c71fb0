// Owns the listeners and the current snapshot. swap() replaces the snapshot
// in one assignment: queries already running finish on the old one, the next
// datagram sees the new one, and nothing in between can observe a mix.

import { pino, type Logger } from 'pino';
import { buildSnapshot, type Snapshot } from './answer/snapshot.js';
import { listenUdp, type UdpListener } from './transport/udp.js';
import { listenTcp, type TcpListener } from './transport/tcp.js';
import type { CompiledConfig } from '../zones/zone.js';

export interface VigilServer {
  readonly addresses: {
    readonly udp: readonly { address: string; port: number }[];
    readonly tcp: readonly { address: string; port: number }[];
  };
  /** The snapshot queries are answered from right now. */
  snapshot(): Snapshot;
  /** Serves `next` from the next query on: a config without services, or a prebuilt snapshot (the engine's). */
  swap(next: CompiledConfig | Snapshot): void;
  close(): Promise<void>;
}

export interface StartOptions {
  readonly logger?: Logger;
  /** The first snapshot to serve; built from the config (static data only) when absent. */
  readonly snapshot?: Snapshot;
}

function isSnapshot(x: CompiledConfig | Snapshot): x is Snapshot {
  return 'views' in x && 'matchView' in x;
}

/** With port 0, TCP picks a port and UDP binds the same one; a clash with another UDP user is retried. */
async function bindPair(
  host: string,
  port: number,
  current: () => Snapshot,
  config: CompiledConfig,
  log: Logger,
): Promise<{ udp: UdpListener; tcp: TcpListener }> {
  for (let attempt = 0; ; attempt++) {
    const tcp = await listenTcp(host, port, current, config.server.tcp, log);
    try {
      const udp = await listenUdp(host, tcp.address.port, current, log);
      return { udp, tcp };
    } catch (err) {
      await tcp.close();
      if (port !== 0 || attempt >= 20) throw err;
    }
  }
}

export async function startServer(config: CompiledConfig, opts: StartOptions = {}): Promise<VigilServer> {
  const log = opts.logger ?? pino({ level: 'silent' });
  let current = opts.snapshot ?? buildSnapshot(config);
  const get = (): Snapshot => current;
  const udp: UdpListener[] = [];
  const tcp: TcpListener[] = [];
  try {
    for (const l of config.server.listen) {
      const pair = await bindPair(l.host, l.port, get, config, log);
      udp.push(pair.udp);
      tcp.push(pair.tcp);
    }
  } catch (err) {
    await Promise.all([...udp, ...tcp].map((x) => x.close()));
    throw err;
  }
  return {
    addresses: { udp: udp.map((u) => u.address), tcp: tcp.map((t) => t.address) },
    snapshot: get,
    swap(next: CompiledConfig | Snapshot): void {
      current = isSnapshot(next) ? next : buildSnapshot(next);
    },
    async close(): Promise<void> {
      await Promise.all([...udp, ...tcp].map((x) => x.close()));
    },
  };
}
