import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { firstBootView } from './view.js';
import { FIRST_BOOT_PATH, type FirstBootService } from './service.js';

const text = (description: string) => Type.Optional(Type.String({ maxLength: 500, description }));

/** JSON or a form (curl --data-urlencode): what the installed OS's first-boot hook sends. */
export const FirstBootBody = Type.Object(
  {
    token: Type.Optional(Type.String({ maxLength: 200, description: "the deploy's one-time first-boot token ({{first_boot_token}})" })),
    mac: Type.Optional(Type.String({ maxLength: 64, description: "the device's MAC; a different device's is refused" })),
    serial: text("the device's serial"),
    os_release: text('PRETTY_NAME from /etc/os-release'),
    kernel: text('uname -r'),
  },
  { additionalProperties: false },
);

/** The first-boot callback (device API, no admin token: the one-time token is the credential). */
export const firstBootRoutes: FastifyPluginAsyncTypebox<{ firstBoot: FirstBootService }> = async (app, { firstBoot }) => {
  app.post(FIRST_BOOT_PATH, { schema: { body: FirstBootBody } }, async (request) => {
    const job = await firstBoot.confirm(request.body ?? {});
    return { ok: true, job: job.id, first_boot: firstBootView(job) };
  });
};
