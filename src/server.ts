import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';
import { adminTokenPath } from './admin/token.js';
import { buildApp } from './app.js';
import type { Config, LogLevel } from './config.js';
import { capConnectionsPerAddress, type ConnectionCap } from './http/connection-cap.js';
import { DEFAULT_IDLE_LIMITS, limitIdleConnections, type IdleLimits } from './http/idle-connections.js';
import { openStationDatabase, type StationDatabase } from './db/database.js';
import { createPostgresChannel } from './db/pg-channel.js';
import { createServices } from './services.js';
import { guarded } from './shared/background.js';
import { lockDataDir } from './shared/data-lock.js';
import type { InterfaceProbe } from './netboot/settings.js';
import type { Clock } from './shared/clock.js';

export interface RunningServer {
  url: string;
  port: number;
  httpServer: import('node:http').Server;
  services: ReturnType<typeof createServices>;
  /** Open connections per client address. */
  connections: ConnectionCap;
  close(): Promise<void>;
}

/** Socket-level limits; tests shorten them. `maxPerAddress` 0: no cap. */
export interface ConnectionLimits extends IdleLimits {
  maxPerAddress: number;
}

/**
 * JSON lines (journald, pipes, tests), or, for a person watching a terminal, pino-pretty's
 * readable lines. Written synchronously, so the last lines before an exit are not lost.
 */
export function createServerLog(level: LogLevel, options: { pretty?: boolean } = {}): Logger {
  const settings = { level, base: undefined };
  if (!options.pretty) return pino(settings);
  return pino(settings, PinoPretty({ sync: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname' }));
}

const WATCHDOG_INTERVAL_MS = 5_000;
const SWEEP_INTERVAL_MS = 3_600_000;

/**
 * Runs the server: opens the data dir, finishes what a previous process left half-done,
 * listens, and starts the background work (golden.img watcher, stalled-job watchdog).
 */
export async function startServer(
  config: Config,
  options: {
    log?: Logger;
    clock?: Clock;
    initialAdminPassword?: string;
    interfaces?: InterfaceProbe;
    connections?: Partial<ConnectionLimits>;
    /** Tests: how long another station may stay silent in a request (stations/client.ts). */
    peerIdleMs?: number;
  } = {},
): Promise<RunningServer> {
  const log = options.log ?? createServerLog(config.logLevel);
  // Before anything touches the folder: a second server must not sweep the first one's uploads.
  const lock = lockDataDir(config.dataDir);
  let services: ReturnType<typeof createServices> | undefined;
  let app: Awaited<ReturnType<typeof buildApp>>;
  let database: StationDatabase | undefined;
  try {
    database = await openStationDatabase(config.database, config.dataDir);
    const channel = database.dialect === 'postgres' ? createPostgresChannel({ connectionString: config.database! }) : undefined;
    services = createServices({ config, log, clock: options.clock, interfaces: options.interfaces, database, channel, peerIdleMs: options.peerIdleMs });
    await services.recover(options.initialAdminPassword);
    app = await buildApp({ services, log });
  } catch (error) {
    await (services ? services.close() : database?.close())?.catch(() => {});
    lock.release();
    throw error;
  }
  const limits = { ...DEFAULT_IDLE_LIMITS, maxPerAddress: config.maxConnectionsPerAddress, ...options.connections };
  // A backup body may go silent for minutes (zstd over empty eMMC) while its device reports
  // progress: it is spared as long as its job is alive by the stall timeout's measure.
  limitIdleConnections(app.server, limits, { spare: (request) => services.transfers.uploadIsAlive(request.url ?? '', config.jobStallTimeout * 1000) });
  const connections = capConnectionsPerAddress(app.server, { limit: limits.maxPerAddress, log, clock: services.clock });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await services.close();
    lock.release();
    throw error;
  }
  const { port } = app.server.address() as AddressInfo;

  await services.golden.start();
  await services.netboot.start();
  await services.fetcher?.start();
  const watchdog = setInterval(guarded(log, 'ending stalled jobs', async () => {
    await services.stations.heartbeat();
    await services.jobs.failStalled();
    await services.firstBoot.expireDue(); // deploys whose first boot did not call back in time
  }), WATCHDOG_INTERVAL_MS);
  watchdog.unref();
  // Devices that only ever registered (a scan, a flood of made-up MACs) are forgotten after a while.
  const sweep = guarded(log, 'forgetting unknown devices', async () => {
    const forgotten = await services.devices.sweepUnknownDevices();
    if (forgotten) log.info({ forgotten }, 'forgot devices that never had work and were not seen for a while');
  });
  sweep();
  const sweeper = setInterval(sweep, SWEEP_INTERVAL_MS);
  sweeper.unref();

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
    connections,
    close() {
      closing ??= (async () => {
        clearInterval(watchdog);
        clearInterval(sweeper);
        await services.fetcher?.stop(); // a fetch cut here leaves nothing in images/ and starts over next time
        await services.golden.stop();
        await services.netboot.stop();
        await app.close();
        await services.close();
        lock.release();
      })();
      return closing;
    },
  };
}
