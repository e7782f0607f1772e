import { FIRST_BOOT_HOOKS } from '../first-boot/hook-files.js';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { JobService } from '../jobs/service.js';
import { DEFAULT_PAGE_SIZE } from './list-query.js';
import { DeviceListQuery, Mac } from './schemas.js';
import type { DeviceService } from './service.js';

const MacParams = Type.Object({ mac: Mac });
const After = Type.Optional(
  Type.Union([Type.Literal('emmc'), Type.Literal('netboot')], { description: 'what the device boots after the job ends ok' }),
);
const Finish = Type.Optional(
  Type.Union([Type.Literal('reboot'), Type.Literal('poweroff'), Type.Literal('wait')], {
    description: 'what the device does once the job ended ok: reboot (default), poweroff, or wait with its LED steady on',
  }),
);
const DeployBody = Type.Union([
  Type.Object({
    image: Type.Optional(Type.String({ maxLength: 128, description: 'image name; default image when absent' })),
    after: After,
    full_match: Type.Optional(Type.Boolean({ description: 'make the whole target equal the image, unmapped ranges zeroed' })),
    finish: Finish,
    profile: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'per-device files written after the image (see /api/profiles)' })),
    confirm_boot: Type.Optional(Type.Boolean({ description: 'the job ends ok · awaiting first boot, confirmed when the installed OS calls POST /api/first-boot' })),
    confirm_timeout: Type.Optional(Type.Integer({ minimum: 30, maximum: 86_400, description: 'seconds the first boot is awaited (default 600)' })),
    first_boot_hook: Type.Optional(Type.Union(FIRST_BOOT_HOOKS.map((hook) => Type.Literal(hook)), { description: 'with confirm_boot: the hook written into the image (default cmdline; none: the profile carries one)' })),
  }),
  Type.Null(),
]);
const BackupBody = Type.Union([Type.Object({ after: After, finish: Finish }), Type.Null()]);

/** Operator view and control of devices (admin token required). */
export const deviceAdminRoutes: FastifyPluginAsyncTypebox<{ devices: DeviceService; jobs: JobService }> = async (app, { devices, jobs }) => {
  // One page in a stable order (first seen, then MAC); pass `next` back as `cursor` for the rest.
  app.get('/api/devices', { schema: { querystring: DeviceListQuery } }, async (request) => {
    const { devices: page, total, next } = await devices.page({ ...request.query, limit: request.query.limit ?? DEFAULT_PAGE_SIZE });
    return { devices: page, total, next };
  });

  app.get('/api/devices/:mac', { schema: { params: MacParams } }, async (request) => devices.view(await devices.get(request.params.mac)));

  app.post('/api/devices/:mac/deploy', { schema: { params: MacParams, body: Type.Optional(DeployBody) } }, async (request, reply) => {
    const job = await jobs.orderDeploy(request.params.mac, request.body?.image, { after: request.body?.after, fullMatch: request.body?.full_match, finish: request.body?.finish, profile: request.body?.profile,
      confirmBoot: request.body?.confirm_boot, confirmTimeout: request.body?.confirm_timeout, firstBootHook: request.body?.first_boot_hook });
    return reply.code(201).send(await jobs.view(job));
  });

  app.post('/api/devices/:mac/backup', { schema: { params: MacParams, body: Type.Optional(BackupBody) } }, async (request, reply) => {
    const job = await jobs.orderBackup(request.params.mac, { after: request.body?.after, finish: request.body?.finish });
    return reply.code(201).send(await jobs.view(job));
  });

  app.post('/api/devices/:mac/cancel', { schema: { params: MacParams } }, async (request) =>
    jobs.view(await jobs.cancelForDevice(request.params.mac)),
  );
};
