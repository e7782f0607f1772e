import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { jobsToCsv } from './csv.js';
import type { JobService } from './service.js';
import { JOB_STATES } from './store.js';

const JobsQuery = Type.Object({
  device: Type.Optional(Type.String({ maxLength: 64 })),
  state: Type.Optional(
    Type.Union(JOB_STATES.map((state) => Type.Literal(state))),
  ),
  kind: Type.Optional(Type.Union([Type.Literal('deploy'), Type.Literal('backup')])),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'default 100 (10000 for CSV)' })),
  cursor: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,14}$', description: "the 'next' of the page before" })),
});
const JobIdParams = Type.Object({ id: Type.Integer({ minimum: 1 }) });

/** Job history and control (admin token required). */
export const jobAdminRoutes: FastifyPluginAsyncTypebox<{ jobs: JobService }> = async (app, { jobs }) => {
  // Newest first; `total` match the filter; pass `next` back as `cursor` for older jobs.
  app.get('/api/jobs', { schema: { querystring: JobsQuery } }, async (request) => {
    const { device, state, kind, limit, cursor } = request.query;
    const { rows, total, next } = await jobs.list({ mac: device, state, kind, limit: limit ?? 100, cursor: cursor === undefined ? undefined : Number(cursor) });
    return { jobs: await jobs.viewAll(rows), total, next: next === null ? null : String(next) };
  });

  app.get('/api/jobs.csv', { schema: { querystring: JobsQuery } }, async (request, reply) => {
    const { device, state, kind, limit, cursor } = request.query;
    const { rows } = await jobs.list({ mac: device, state, kind, limit: limit ?? 10_000, cursor: cursor === undefined ? undefined : Number(cursor) });
    const stamp = new Date().toISOString().slice(0, 10);
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="cm4prov-jobs-${stamp}.csv"`)
      .send(jobsToCsv(await jobs.viewAll(rows)));
  });

  app.get('/api/jobs/:id', { schema: { params: JobIdParams } }, async (request) => jobs.view(await jobs.get(request.params.id)));

  app.post('/api/jobs/:id/cancel', { schema: { params: JobIdParams } }, async (request) => jobs.view(await jobs.cancel(request.params.id)));
};
