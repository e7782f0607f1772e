import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { JobService } from '../jobs/service.js';
import { JobParams, TokenQuery } from '../transfers/schemas.js';
import { FileParams, ProfileBody, ProfileParams, TableBody } from './schemas.js';
import type { DeviceFilesService } from './service.js';

/** Profiles and the device table (admin token required). Table values are never logged. */
export const deviceFilesAdminRoutes: FastifyPluginAsyncTypebox<{ deviceFiles: DeviceFilesService }> = async (app, { deviceFiles }) => {
  app.addContentTypeParser(['text/csv', 'text/plain'], { parseAs: 'string' }, (_request, body, done) => done(null, body));

  app.get('/api/profiles', async () => ({ profiles: await deviceFiles.profiles(), variables: deviceFiles.variables() }));
  app.post('/api/profiles', { schema: { body: ProfileBody } }, async (request, reply) => reply.code(201).send(await deviceFiles.saveProfile(request.body)));
  app.get('/api/profiles/:name', { schema: { params: ProfileParams } }, async (request) => deviceFiles.profile(request.params.name));
  app.delete('/api/profiles/:name', { schema: { params: ProfileParams } }, async (request) => {
    await deviceFiles.deleteProfile(request.params.name);
    return { ok: true };
  });

  app.get('/api/device-table', async () => ({ table: await deviceFiles.table() }));
  app.post('/api/device-table', { schema: { body: TableBody } }, async (request) => ({
    table: await deviceFiles.importTable(typeof request.body === 'string' ? request.body : request.body.csv),
  }));
};

/** The files a deploy job writes, for the device holding its token: the list, then each file. */
export const deviceFilesRoutes: FastifyPluginAsyncTypebox<{ deviceFiles: DeviceFilesService; jobs: JobService }> = async (app, { deviceFiles, jobs }) => {
  const authorize = async (request: { params: { job: number }; query: { token?: string; mac?: string }; ip: string }) => {
    const job = await jobs.authorizeDevice({ job: request.params.job, token: request.query.token, mac: request.query.mac, ip: request.ip }, 'deploy');
    await jobs.touch(job.id); // fetching its files is a sign of life
    return job;
  };
  app.get('/api/device-jobs/:job/files', { schema: { params: JobParams, querystring: TokenQuery } }, async (request, reply) =>
    reply.type('text/plain; charset=utf-8').send(await deviceFiles.listText(await authorize(request))),
  );
  app.get('/api/device-jobs/:job/files/:idx', { schema: { params: FileParams, querystring: TokenQuery } }, async (request, reply) =>
    reply.type('application/octet-stream').send(await deviceFiles.content(await authorize(request), request.params.idx)),
  );
};
