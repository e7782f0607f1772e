import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { recordsToCsv } from './csv.js';
import { DEFAULT_RECORD_PAGE, MAX_RECORD_PAGE, type RecordService } from './service.js';

const Search = Type.Optional(Type.String({ maxLength: 200, description: 'part of a MAC (any separators or case), an IP, a serial, a model or an eMMC CID' }));
const RecordListQuery = Type.Object({
  search: Search,
  cursor: Type.Optional(Type.String({ maxLength: 300, description: "the 'next' of the page before" })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_RECORD_PAGE, description: `default ${DEFAULT_RECORD_PAGE}` })),
});
const RecordParams = Type.Object({ key: Type.String({ minLength: 1, maxLength: 200, description: "a serial, or one of the device's MACs" }) });

/** Device records (admin token required): one per device, with every job and backup. */
export const recordAdminRoutes: FastifyPluginAsyncTypebox<{ records: RecordService }> = async (app, { records }) => {
  // Oldest first (by first seen); pass `next` back as `cursor` for the rest.
  app.get('/api/records', { schema: { querystring: RecordListQuery } }, async (request) => records.page(request.query));

  app.get('/api/records.csv', { schema: { querystring: Type.Object({ search: Search }) } }, async (request, reply) => {
    const stamp = new Date().toISOString().slice(0, 10);
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="cm4prov-records-${stamp}.csv"`)
      .send(recordsToCsv(await records.all(request.query.search)));
  });

  app.get('/api/records/:key', { schema: { params: RecordParams } }, async (request) => records.get(request.params.key));
};
