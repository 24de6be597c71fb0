// A real HTTP backend for probe tests, on a loopback address, that can be
// started, stopped (connections cut, port freed) and made to fail. It fails
// for everyone (`mode = '503'`) or only for the nodes in `downFor`: Vigil's
// probes in the multi-node tests send an `x-vigil-node` header, which is how
// a failure that one PoP alone sees is staged.

import http from 'node:http';

export interface Backend {
  readonly host: string;
  port: number;
  mode: 'ok' | '503';
  readonly downFor: Set<string>;
  hits: number;
  server: http.Server | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function backend(host: string, port = 0): Backend {
  const b: Backend = {
    host,
    port,
    mode: 'ok',
    downFor: new Set(),
    hits: 0,
    server: undefined,
    async start() {
      const server = http.createServer((req, res) => {
        b.hits++;
        const ok = b.mode === 'ok' && !b.downFor.has(String(req.headers['x-vigil-node'] ?? ''));
        res.writeHead(ok ? 200 : 503, { connection: 'close' });
        res.end(ok ? 'ok' : '503');
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(b.port, b.host, () => resolve());
      });
      b.port = (server.address() as { port: number }).port;
      b.server = server;
    },
    async stop() {
      const s = b.server;
      b.server = undefined;
      if (s === undefined) return;
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
  return b;
}
