import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
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

/** The bytes a file reply carries: its Content-Range when it answered a Range request, else the whole file. */
function sentRange(reply: FastifyReply, size: number) {
  const match = /^bytes (\d+)-(\d+)\/\d+$/.exec(String(reply.getHeader('content-range') ?? ''));
  return match ? { start: Number(match[1]), end: Number(match[2]), size } : { start: 0, end: size - 1, size };
}

/** Device-side job URLs, each authorised by the job's token: /api/device-jobs/:job/... */
export const transferRoutes: FastifyPluginAsyncTypebox<TransferRoutesOptions> = async (app, { transfers, jobs }) => {
  const access = (request: { params: { job: number }; query: { token?: string; mac?: string }; ip: string }) => ({
    job: request.params.job,
    token: request.query.token,
    mac: request.query.mac,
    ip: request.ip,
  });
  const summary = async (id: number) => {
    const job = await jobs.view(await jobs.get(id));
    return { job: job.id, state: job.state, error: job.error, sha256: job.sha256 };
  };

  /** A file the job's device downloads (Range, HEAD); cancelling the job cuts the transfer. */
  const fileRoute = (url: string, what: 'image' | 'chunks', fileFor: (access: DeviceJobAccess) => Promise<{ job: JobRow; file: FileToSend }>) =>
    app.route({
      method: ['GET', 'HEAD'],
      url,
      schema: { params: JobParams, querystring: TokenQuery },
      handler: async (request, reply) => {
        const { job, file } = await fileFor(access(request));
        const transfer = sendFile(request, reply, file);
        if (transfer) transfers.trackStream(job, { stream: transfer, socket: request.raw.socket, range: sentRange(reply, file.size) }, what);
        return reply;
      },
    });

  fileRoute('/api/device-jobs/:job/image', 'image', (device) => transfers.imageFor(device));
  fileRoute('/api/device-jobs/:job/chunks', 'chunks', (device) => transfers.chunksFor(device));

  app.get('/api/device-jobs/:job/manifest', { schema: { params: JobParams, querystring: TokenQuery } }, async (request, reply) => {
    const manifest = await transfers.manifestFor(access(request));
    return reply.type('text/plain; charset=utf-8').send(manifest);
  });

  // Upload bodies are streamed to disk by the handler, never parsed or buffered here.
  app.register(async (raw) => {
    acceptRawBodies(raw);
    raw.withTypeProvider<TypeBoxTypeProvider>().route({
      method: ['PUT', 'POST'],
      url: '/api/device-jobs/:job/upload',
      schema: { params: JobParams, querystring: TokenQuery },
      handler: async (request) => {
        const sha = request.headers['x-content-sha256'];
        const result = await transfers.upload(access(request), request.raw, {
          declaredBytes: numberHeader(request.headers['content-length']),
          zstd: request.headers['content-encoding'] === 'zstd',
          declaredSha256: typeof sha === 'string' ? sha : undefined,
          checksumFollows: request.headers['x-checksum-follows'] === 'sha256',
        });
        return { received_bytes: result.bytes, received_sha256: result.sha256, backup_id: result.stored?.id ?? null, ...(await summary(request.params.job)) };
      },
    });
  });

  app.post('/api/device-jobs/:job/progress', { schema: { params: JobParams, querystring: TokenQuery, body: ProgressBody } }, async (request) => {
    const job = await transfers.progress(access(request), request.body);
    return { job: job.id, state: job.state };
  });

  app.post('/api/device-jobs/:job/result', { schema: { params: JobParams, querystring: TokenQuery, body: ResultBody } }, async (request) => {
    const job = await transfers.result(access(request), request.body);
    return summary(job.id);
  });
};
