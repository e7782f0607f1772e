import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { JOB_EVENTS } from './events.js';
import { MAX_TEMPLATE_BYTES } from './label-template.js';
import type { NotifyService } from './service.js';

const IdParams = Type.Object({ id: Type.Integer({ minimum: 1 }) });
// Event names are checked by the service, which names the one it does not know.
const Events = Type.Array(Type.String({ maxLength: 40 }), { maxItems: 20, description: `any of ${JOB_EVENTS.join(', ')}; all when absent` });
const NewWebhookBody = Type.Object({
  url: Type.String({ minLength: 1, maxLength: 2000 }),
  // A form (the dashboard) sends one comma-separated string; the API and CLI send a list.
  events: Type.Optional(Type.Union([Events, Type.String({ maxLength: 400 })])),
  secret: Type.Optional(Type.String({ pattern: '^[\\x21-\\x7e]{16,256}$', description: '16 to 256 printable characters; made for you when absent' })),
});
const LabelBody = Type.Object({
  enabled: Type.Optional(Type.Boolean()),
  template: Type.Optional(Type.String({ maxLength: MAX_TEMPLATE_BYTES })),
  output: Type.Optional(Type.String({ minLength: 1, maxLength: 1000, description: 'tcp://host:9100 or an absolute spool folder path' })),
  backups: Type.Optional(Type.Boolean()),
});

const eventList = (events: string[] | string | undefined) =>
  typeof events === 'string' ? events.split(',').map((event) => event.trim()).filter(Boolean) : events;

/** Webhooks, their deliveries, and label settings and reprints (admin token required). */
export const notifyAdminRoutes: FastifyPluginAsyncTypebox<{ notify: NotifyService }> = async (app, { notify }) => {
  const { webhooks, labels } = notify;

  app.get('/api/webhooks', async () => ({ webhooks: await webhooks.list() }));

  // The reply holds the secret: the one time it is shown.
  app.post('/api/webhooks', { schema: { body: NewWebhookBody } }, async (request, reply) => {
    const { url, events, secret } = request.body;
    return reply.code(201).send(await webhooks.add({ url, events: eventList(events), secret }));
  });

  app.delete('/api/webhooks/:id', { schema: { params: IdParams } }, async (request) => {
    await webhooks.remove(request.params.id);
    return { deleted: request.params.id };
  });

  app.get(
    '/api/webhooks/:id/deliveries',
    { schema: { params: IdParams, querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }) } },
    async (request) => ({ deliveries: await webhooks.deliveries(request.params.id, request.query.limit ?? 50) }),
  );

  // Webhook deliveries and labels alike.
  app.post('/api/webhooks/deliveries/:id/retry', { schema: { params: IdParams } }, async (request) => webhooks.retry(request.params.id));

  app.get('/api/labels', async () => labels.settings());

  app.post('/api/labels', { schema: { body: LabelBody } }, async (request) => labels.save(request.body));

  app.post('/api/jobs/:id/label', { schema: { params: IdParams } }, async (request, reply) => reply.code(202).send(await labels.reprint(request.params.id)));
};
