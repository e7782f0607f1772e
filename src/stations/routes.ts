import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { StationService } from './service.js';

/** The stations sharing this database and this station's own state (admin token required). */
export const stationAdminRoutes: FastifyPluginAsyncTypebox<{ stations: StationService }> = async (app, { stations }) => {
  app.get('/api/stations', async () => stations.view());
};
