import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { acceptRawBodies } from '../http/raw-body.js';
import { sendFile, type FileToSend } from '../http/send-file.js';
import type { JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import { JobParams, ProgressBody, ResultBody, TokenQuery } from './schemas.js';
import type { DeviceJobAccess, TransferService } from './service.js';

export interface TransferRoutesOptions {
  transfers: TransferService;
  jobs: JobService;
}

const numberHeader = (value: string | string[] | undefined) =>
  typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : undefined;

/** Device-side job URLs, each authorised by the job's token: /api/device-jobs/:job/... */
export const transferRoutes: FastifyPluginAsyncTypebox<TransferRoutesOptions> = async (app, { transfers, jobs }) => {
  const access = (params: { job: number }, query: { token?: string; mac?: string }) => ({ job: params.job, token: query.token, mac: query.mac });
  const summary = (id: number) => {
    const job = jobs.view(jobs.get(id));
    return { job: job.id, state: job.state, error: job.error, sha256: job.sha256 };
  };

  /** A file the job's device downloads (Range, HEAD); cancelling the job cuts the transfer. */
  const fileRoute = (url: string, fileFor: (access: DeviceJobAccess) => { job: JobRow; file: FileToSend }) =>
    app.route({
      method: ['GET', 'HEAD'],
      url,
      schema: { params: JobParams, querystring: TokenQuery },
      handler: async (request, reply) => {
        const { job, file } = fileFor(access(request.params, request.query));
        const transfer = sendFile(request, reply, file);
        if (transfer) transfers.trackStream(job, transfer);
        return reply;
      },
    });

  fileRoute('/api/device-jobs/:job/image', (device) => transfers.imageFor(device));
  fileRoute('/api/device-jobs/:job/chunks', (device) => transfers.chunksFor(device));

  app.get('/api/device-jobs/:job/manifest', { schema: { params: JobParams, querystring: TokenQuery } }, async (request, reply) =>
    reply.type('text/plain; charset=utf-8').send(transfers.manifestFor(access(request.params, request.query))),
  );

  // Upload bodies are streamed to disk by the handler, never parsed or buffered here.
  app.register(async (raw) => {
    acceptRawBodies(raw);
    raw.withTypeProvider<TypeBoxTypeProvider>().route({
      method: ['PUT', 'POST'],
      url: '/api/device-jobs/:job/upload',
      schema: { params: JobParams, querystring: TokenQuery },
      handler: async (request) => {
        const sha = request.headers['x-content-sha256'];
        const result = await transfers.upload(access(request.params, request.query), request.raw, {
          declaredBytes: numberHeader(request.headers['content-length']),
          zstd: request.headers['content-encoding'] === 'zstd',
          declaredSha256: typeof sha === 'string' ? sha : undefined,
          checksumFollows: request.headers['x-checksum-follows'] === 'sha256',
        });
        return { received_bytes: result.bytes, received_sha256: result.sha256, backup_id: result.stored?.id ?? null, ...summary(request.params.job) };
      },
    });
  });

  app.post('/api/device-jobs/:job/progress', { schema: { params: JobParams, querystring: TokenQuery, body: ProgressBody } }, async (request) => {
    const job = transfers.progress(access(request.params, request.query), request.body);
    return { job: job.id, state: job.state };
  });

  app.post('/api/device-jobs/:job/result', { schema: { params: JobParams, querystring: TokenQuery, body: ResultBody } }, async (request) => {
    const job = await transfers.result(access(request.params, request.query), request.body);
    return summary(job.id);
  });
};
