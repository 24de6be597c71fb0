// `vigil serve`: load the config file, start the engine and the admin API,
// reload on SIGHUP or POST /reload. A config that fails to load is refused
// with every error logged, and the running one keeps serving.

import type { Logger } from 'pino';
import { loadConfig, formatErrors } from '../zones/load.js';
import { Engine } from './engine.js';
import { startAdmin, type AdminServer } from './http/admin.js';
import type { VigilServer } from './server.js';
import type { CompiledConfig } from '../zones/zone.js';

export interface Daemon {
  readonly engine: Engine;
  readonly server: VigilServer;
  readonly admin: AdminServer | undefined;
  reload(): Promise<{ ok: boolean; errors?: string }>;
  close(): Promise<void>;
}

export class ConfigRefused extends Error {
  override name = 'ConfigRefused';
}

/**
 * Starts serving `file`; throws ConfigRefused (message = every error) when it
 * does not load. `adjust` rewrites each loaded config (tests use it to listen
 * on ephemeral ports).
 */
export async function startDaemon(
  file: string,
  log: Logger,
  adjust: (c: CompiledConfig) => CompiledConfig = (c) => c,
): Promise<Daemon> {
  let loaded;
  try {
    loaded = await loadConfig(file);
  } catch (err) {
    throw new ConfigRefused(formatErrors(err));
  }
  for (const w of loaded.warnings) log.warn({ config: file }, w);
  let config = adjust(loaded.config);
  const engine = new Engine(config, { logger: log });
  const server = await engine.start();
  log.info({ udp: server.addresses.udp, tcp: server.addresses.tcp, zones: config.zones.size, services: config.services.length, hash: config.hash }, 'listening');

  let inFlight: Promise<{ ok: boolean; errors?: string }> | undefined;
  const reload = (): Promise<{ ok: boolean; errors?: string }> => {
    // Two reloads at once would race to swap; the second waits for the first's result.
    inFlight ??= (async () => {
      try {
        const { config: next, warnings } = await loadConfig(file);
        for (const w of warnings) log.warn({ config: file }, w);
        const adjusted = adjust(next);
        if (JSON.stringify(adjusted.server.listen) !== JSON.stringify(config.server.listen)) {
          log.warn('listen addresses changed: they take effect at the next restart');
        }
        engine.reload({ ...adjusted, server: { ...adjusted.server, listen: config.server.listen } });
        config = adjusted;
        log.info({ zones: adjusted.zones.size, services: adjusted.services.length, hash: adjusted.hash }, 'config reloaded');
        return { ok: true };
      } catch (err) {
        const errors = formatErrors(err);
        log.error({ errors }, 'reload refused; the previous config keeps serving');
        return { ok: false, errors };
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  };

  let admin: AdminServer | undefined;
  if (config.server.admin !== undefined) {
    try {
      admin = await startAdmin(
        config.server.admin,
        { state: () => engine.state(), reload, approveFailback: (n) => engine.approveFailback(n) },
        log,
      );
      log.info({ admin: admin.address }, 'admin API listening');
    } catch (err) {
      await engine.close();
      throw err;
    }
  }
  return {
    engine,
    server,
    admin,
    reload,
    async close() {
      await admin?.close();
      await engine.close();
    },
  };
}
