import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { sendFile, type FileToSend } from '../http/send-file.js';
import { WholeNumber } from '../http/whole-number.js';
import type { CopyServing } from './copy-serving.js';

const IdParams = Type.Object({ id: WholeNumber({ minimum: 1 }) });

export interface PeerRoutesOptions {
  copies: CopyServing;
  /** A backup whose file is on this station. */
  backupFile: (id: number) => Promise<FileToSend>;
}

/**
 * Routes for the other stations sharing the database, each request proven by the station secret
 * (secret.ts; neither the admin token nor the device API). Files with Range, as sendFile serves them.
 */
export const stationPeerRoutes: FastifyPluginAsyncTypebox<PeerRoutesOptions> = async (app, { copies, backupFile }) => {
  const fileRoute = (url: string, fileOf: (id: number) => Promise<FileToSend>) =>
    app.route({
      method: ['GET', 'HEAD'],
      url,
      schema: { params: IdParams },
      handler: async (request, reply) => {
        sendFile(request, reply, await fileOf(request.params.id));
        return reply;
      },
    });
  fileRoute('/api/station/images/:id/chunks', (id) => copies.chunksFile(id));
  fileRoute('/api/station/images/:id/raw', (id) => copies.rawFile(id));
  app.get(
    '/api/station/images/:id/sparse',
    { schema: { params: IdParams, querystring: Type.Object({ start: WholeNumber({ minimum: 0 }), end: WholeNumber({ minimum: 1 }) }) } },
    async (request, reply) => reply.type('application/octet-stream').send(await copies.sparseRange(request.params.id, request.query.start, request.query.end)),
  );
  fileRoute('/api/station/backups/:id', backupFile);
};
