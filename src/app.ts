import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import { backupAdminRoutes } from './backups/routes.js';
import { loadAssets } from './dashboard/assets.js';
import { dashboardRoutes } from './dashboard/routes.js';
import { deviceAdminRoutes } from './devices/admin-routes.js';
import { deviceRoutes } from './devices/device-routes.js';
import { crossOriginGuard } from './http/cross-origin-guard.js';
import { deviceNetworkGuard } from './http/device-network.js';
import { errorReply, redactUrl } from './http/error-reply.js';
import { unavailablePage } from './dashboard/views/layout.js';
import { requireStation, stationAdminRoutes, stationPeerRoutes } from './stations/index.js';
import { wholeNumberKeyword } from './http/whole-number.js';
import type { AppError } from './shared/errors.js';
import { imageAdminRoutes } from './images/routes.js';
import { jobAdminRoutes } from './jobs/routes.js';
import type { Services } from './services.js';
import { createAllowList } from './shared/network.js';
import { netbootAdminRoutes } from './netboot/routes.js';
import { transferRoutes } from './transfers/routes.js';
import { notifyAdminRoutes } from './notify/index.js';
import { ruleAdminRoutes } from './rules/index.js';
import { recordAdminRoutes } from './records/index.js';
import { deviceFilesAdminRoutes, deviceFilesRoutes } from './device-files/index.js';
import { firstBootRoutes } from './first-boot/index.js';

export interface AppOptions {
  services: Services;
  log: Logger;
}

/**
 * Builds the HTTP app (device API, admin API) around the services. Never listens: the server
 * entry point or a test does that.
 */
export async function buildApp({ services, log }: AppOptions): Promise<FastifyInstance> {
  const { config } = services;
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // A 32 GB backup upload or a long-poll must never be cut by a whole-request timer. Sockets
    // that move no bytes are cut by src/http/idle-connections.ts, which server.ts applies.
    requestTimeout: 0,
    connectionTimeout: 0,
    keepAliveTimeout: 75_000,
    // Long-polls would hold a graceful close for their whole wait.
    forceCloseConnections: true,
    // Devices poll all day: a log line per request would drown what matters.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { coerceTypes: true }, plugins: [wholeNumberKeyword] },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // sh clients post forms (curl --data-urlencode); an empty field means "not given".
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries([...new URLSearchParams(body as string)].filter(([, value]) => value !== '')));
  });

  app.setErrorHandler((error: FastifyError | AppError, request, reply) => {
    const { status, body, headers, log: worthLogging } = errorReply(error);
    if (worthLogging) request.log.error({ err: error, method: request.method, url: redactUrl(request.url) }, 'request failed');
    // A person opening a dashboard page gets a page that says so and reloads itself, not JSON.
    const browsing = request.method === 'GET' && !request.headers['hx-request'] && /\btext\/html\b/.test(request.headers.accept ?? '');
    if (status === 503 && browsing) return reply.code(status).headers(headers).type('text/html; charset=utf-8').send(unavailablePage(body.message, 5).text);
    return reply.code(status).headers(headers).send(body);
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: 'not_found', message: `no such endpoint: ${request.method} ${request.url.split('?')[0]}` }),
  );

  await app.register(async (deviceApi) => {
    deviceApi.addHook('onRequest', deviceNetworkGuard(createAllowList(config.deviceNetwork)));
    deviceApi.addHook('onRequest', crossOriginGuard());
    await deviceApi.register(deviceRoutes, { devices: services.devices, jobs: services.jobs, identity: services.identity, publicUrl: config.publicUrl });
    await deviceApi.register(transferRoutes, { transfers: services.transfers, jobs: services.jobs });
    await deviceApi.register(deviceFilesRoutes, { deviceFiles: services.deviceFiles, jobs: services.jobs });
    await deviceApi.register(firstBootRoutes, { firstBoot: services.firstBoot });
  });

  // Other stations sharing the database: their secret, not the admin token (stations/secret.ts).
  await app.register(async (peerApi) => {
    peerApi.addHook('onRequest', requireStation(services.stationSecret));
    await peerApi.register(stationPeerRoutes, { copies: services.copyServing, backupFile: (id) => services.backups.localFile(id) });
  });

  await app.register(async (adminApi) => {
    adminApi.addHook('onRequest', services.auth.requireOperator);
    await adminApi.register(deviceAdminRoutes, { devices: services.devices, jobs: services.jobs });
    await adminApi.register(jobAdminRoutes, { jobs: services.jobs });
    await adminApi.register(stationAdminRoutes, { stations: services.stations });
    await adminApi.register(imageAdminRoutes, { images: services.images });
    await adminApi.register(backupAdminRoutes, { backups: services.backups });
    await adminApi.register(netbootAdminRoutes, { netboot: services.netboot, devices: services.devices });
    await adminApi.register(notifyAdminRoutes, { notify: services.notify });
    await adminApi.register(ruleAdminRoutes, { rules: services.rules });
    await adminApi.register(recordAdminRoutes, { records: services.records });
    await adminApi.register(deviceFilesAdminRoutes, { deviceFiles: services.deviceFiles });
  });

  await app.register(dashboardRoutes, {
    auth: services.auth,
    sessions: services.sessions,
    passwords: services.passwords,
    throttle: services.loginThrottle,
    live: services.live,
    assets: loadAssets(),
    devices: services.devices,
    jobs: services.jobs,
    images: services.images,
    backups: services.backups,
    clock: services.clock,
    netboot: services.netboot,
    deviceFiles: services.deviceFiles,
    notify: services.notify,
    records: services.records,
    rules: services.rules,
    stations: services.stations,
    sharedDatabase: services.database.dialect === 'postgres',
    defaultAfterSuccess: config.afterSuccess,
  });

  return app;
}
