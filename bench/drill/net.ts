// Small waiting and port helpers shared by the drill's parts.

import net from 'node:net';
import dgram from 'node:dgram';

export class DrillTimeout extends Error {
  override name = 'DrillTimeout';
  constructor(
    readonly what: string,
    readonly limitMs: number,
    detail = '',
  ) {
    super(`${what}: not within ${limitMs} ms${detail === '' ? '' : ` (${detail})`}`);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `cond` every `everyMs` until it returns true; throws DrillTimeout after
 * `limitMs`. `detail` is asked for at the timeout, to say what was last seen.
 */
export async function waitFor(what: string, cond: () => Promise<boolean> | boolean, limitMs: number, everyMs = 100, detail: () => string = () => ''): Promise<void> {
  const end = Date.now() + limitMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new DrillTimeout(what, limitMs, detail());
    await sleep(everyMs);
  }
}

/**
 * A port free for both TCP and UDP on `host`. The programs we start
 * (unbound, Vigil) need their port in a config file before they run, so the
 * port is found by binding and releasing it; another process could take it in
 * between, which the caller sees as a start-up failure, never a wrong result.
 */
export async function freePort(host: string): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const tcp = net.createServer();
    const port = await new Promise<number>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host, port: 0, exclusive: true }, () => resolve((tcp.address() as net.AddressInfo).port));
    });
    const udp = dgram.createSocket('udp4');
    const udpFree = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind({ address: host, port, exclusive: true }, () => resolve(true));
    });
    await new Promise<void>((r) => tcp.close(() => r()));
    await new Promise<void>((r) => {
      try {
        udp.close(() => r());
      } catch {
        r(); // never bound
      }
    });
    if (udpFree) return port;
  }
  throw new Error(`no port free for both TCP and UDP on ${host} after 20 tries`);
}
