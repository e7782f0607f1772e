import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { sendRelayed } from '../http/relayed-reply.js';
import { sendFile } from '../http/send-file.js';
import { WholeNumber } from '../http/whole-number.js';
import { BACKUP_PAGE_SIZE, MAX_BACKUP_PAGE, type BackupService } from './service.js';

const IdParams = Type.Object({ id: WholeNumber({ minimum: 1 }) });
const ListQuery = Type.Object({
  device: Type.Optional(Type.String({ maxLength: 64 })),
  limit: Type.Optional(WholeNumber({ minimum: 1, maximum: MAX_BACKUP_PAGE, description: `default ${BACKUP_PAGE_SIZE}` })),
  cursor: Type.Optional(WholeNumber({ minimum: 1, description: "the `next` of the page before" })),
});

/** What a download from another station passes on of the request: which bytes, and of which version. */
const PASSED_ON = ['range', 'if-range', 'if-none-match'] as const;

/** Stored backups (admin token required): list, download (streamed, resumable), delete. */
export const backupAdminRoutes: FastifyPluginAsyncTypebox<{ backups: BackupService }> = async (app, { backups }) => {
  app.get('/api/backups', { schema: { querystring: ListQuery } }, async (request) => {
    const { device, limit, cursor } = request.query;
    return backups.page({ mac: device, limit, cursor });
  });

  app.get('/api/backups/:id', { schema: { params: IdParams } }, async (request) => backups.view(await backups.get(request.params.id)));

  app.route({
    method: ['GET', 'HEAD'],
    url: '/api/backups/:id/download',
    schema: { params: IdParams },
    handler: async (request, reply) => {
      const cut = new AbortController();
      reply.raw.once('close', () => cut.abort()); // the requester went: so does the request to the other station
      const headers = Object.fromEntries(PASSED_ON.flatMap((name) => (typeof request.headers[name] === 'string' ? [[name, request.headers[name]]] : [])));
      const download = await backups.download(request.params.id, { method: request.method === 'HEAD' ? 'HEAD' : 'GET', headers, signal: cut.signal });
      if ('relayed' in download) return sendRelayed(reply, download.relayed);
      sendFile(request, reply, download.file);
      return reply;
    },
  });

  app.post(
    '/api/backups/:id/promote',
    { schema: { params: IdParams, body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 128, description: 'name of the new image' }) }) } },
    async (request, reply) => reply.code(201).send(await backups.promoteToImage(request.params.id, request.body.name)),
  );

  app.delete('/api/backups/:id', { schema: { params: IdParams } }, async (request, reply) => {
    await backups.remove(request.params.id);
    return reply.code(204).send();
  });
};
