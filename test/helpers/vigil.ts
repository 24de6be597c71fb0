// Starts Vigil in-process on an ephemeral loopback port from a zone text or a
// config file, through the same loadConfig the CLI uses.

import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../zones/load.js';
import { startServer, type VigilServer } from '../../server/server.js';

export interface RunningVigil {
  readonly server: VigilServer;
  readonly port: number;
  readonly dir: string;
  close(): Promise<void>;
}

/** Serves `zones` (origin → master-file text) with `extra` YAML appended to the config. */
export async function startVigilWithZones(zones: Record<string, string>, extra = ''): Promise<RunningVigil> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-test-'));
  let yaml = 'listen: ["127.0.0.1:0"]\nzones:\n';
  for (const [origin, text] of Object.entries(zones)) {
    const file = `${origin.replace(/\.$/, '')}.zone`;
    writeFileSync(join(dir, file), text);
    yaml += `  - origin: ${origin}\n    file: ${file}\n`;
  }
  writeFileSync(join(dir, 'vigil.yaml'), yaml + extra);
  return startVigilFromConfig(join(dir, 'vigil.yaml'), dir);
}

/** Serves an existing config file, with its listen addresses replaced by 127.0.0.1:0. */
export async function startVigilFromConfig(path: string, cleanupDir?: string): Promise<RunningVigil> {
  const { config } = await loadConfig(path);
  const server = await startServer({ ...config, server: { ...config.server, listen: [{ host: '127.0.0.1', port: 0 }] } });
  return {
    server,
    port: server.addresses.udp[0]!.port,
    dir: cleanupDir ?? '',
    async close() {
      await server.close();
      if (cleanupDir !== undefined) rmSync(cleanupDir, { recursive: true, force: true });
    },
  };
}

export const SMALL_ZONE = `$ORIGIN example.test.
$TTL 300
@ 3600 IN SOA ns1 hostmaster 2026112301 7200 3600 1209600 600
@ NS ns1
ns1 A 192.0.2.53
www A 192.0.2.10
www AAAA 2001:db8::10
mail MX 10 mx1
mx1 A 192.0.2.25
${Array.from({ length: 40 }, (_, i) => `big TXT "${'x'.repeat(40)}${i}"`).join('\n')}
`;
