import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { adminTokenPath } from './admin/token.js';
import { buildApp } from './app.js';
import type { Config } from './config.js';
import { createServices } from './services.js';
import type { InterfaceProbe } from './netboot/settings.js';
import type { Clock } from './shared/clock.js';

export interface RunningServer {
  url: string;
  port: number;
  httpServer: import('node:http').Server;
  services: ReturnType<typeof createServices>;
  close(): Promise<void>;
}

const WATCHDOG_INTERVAL_MS = 5_000;

/**
 * Runs the server: opens the data dir, finishes what a previous process left half-done,
 * listens, and starts the background work (golden.img watcher, stalled-job watchdog).
 */
export async function startServer(
  config: Config,
  options: { log?: Logger; clock?: Clock; initialAdminPassword?: string; interfaces?: InterfaceProbe } = {},
): Promise<RunningServer> {
  const log = options.log ?? pino({ level: config.logLevel, base: undefined });
  const services = createServices({ config, log, clock: options.clock, interfaces: options.interfaces });
  await services.recover(options.initialAdminPassword);
  const app = await buildApp({ services, log });
  await app.listen({ host: config.host, port: config.port });
  const { port } = app.server.address() as AddressInfo;

  await services.golden.start();
  services.netboot.start();
  const watchdog = setInterval(() => services.jobs.failStalled(), WATCHDOG_INTERVAL_MS);
  watchdog.unref();

  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info(
    { url, dataDir: config.dataDir, adminToken: adminTokenPath(config.dataDir), publicUrl: config.publicUrl ?? '(the host each device used)' },
    'cm4-provisioning server ready',
  );

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    httpServer: app.server,
    services,
    close() {
      closing ??= (async () => {
        clearInterval(watchdog);
        await services.golden.stop();
        await services.netboot.stop();
        await app.close();
        await services.close();
      })();
      return closing;
    },
  };
}
