import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { DeviceService } from '../devices/service.js';
import { Mac } from '../devices/schemas.js';
import { describeBootEvent } from './log-parser.js';
import type { NetbootService } from './service.js';

const MacParams = Type.Object({ mac: Mac });

/** Netboot state, leases, boot stages and each device's boot policy (admin token required). */
export const netbootAdminRoutes: FastifyPluginAsyncTypebox<{ netboot: NetbootService; devices: DeviceService }> = async (app, { netboot, devices }) => {
  app.get('/api/netboot', async () => netboot.status());

  app.get('/api/netboot/leases', async () => ({ leases: netboot.leases() }));

  app.get(
    '/api/devices/:mac/boot-events',
    { schema: { params: MacParams, querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })) }) } },
    async (request) => {
      const device = await devices.get(request.params.mac);
      const events = (await netboot.bootEvents(device.mac, request.query.limit)).map((event) => ({
        at: new Date(event.at).toISOString(),
        kind: event.kind,
        ip: event.ip,
        file: event.file,
        text: describeBootEvent(event),
      }));
      return { mac: device.mac, events };
    },
  );

  app.post(
    '/api/devices/:mac/netboot',
    {
      schema: {
        params: MacParams,
        body: Type.Object({ enabled: Type.Boolean({ description: 'true: netboot again; false: boot from eMMC next (no PXE offer)' }) }),
      },
    },
    async (request) => {
      const device = await devices.get(request.params.mac);
      await netboot.setNetboot(device.mac, request.body.enabled);
      return devices.view(await devices.get(device.mac));
    },
  );
};
