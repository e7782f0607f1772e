import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { MoveBody, ReleaseBody, RuleBody, RuleParams, RulePatch, TestQuery } from './schemas.js';
import type { RuleService } from './service.js';

/** Rules and the Pause line switch (admin token required). */
export const ruleAdminRoutes: FastifyPluginAsyncTypebox<{ rules: RuleService }> = async (app, { rules }) => {
  app.get('/api/rules', async () => ({ rules: await rules.list(), line: await rules.line(), held: await rules.held() }));
  app.post('/api/rules', { schema: { body: RuleBody } }, async (request, reply) => reply.code(201).send(await rules.add(request.body)));
  // Which rule would act on a device now, and why each other one would not.
  app.get('/api/rules/test', { schema: { querystring: TestQuery } }, async (request) => rules.test(request.query.mac));
  app.get('/api/rules/:id', { schema: { params: RuleParams } }, async (request) => rules.get(request.params.id));
  app.patch('/api/rules/:id', { schema: { params: RuleParams, body: RulePatch } }, async (request) => rules.update(request.params.id, request.body));
  app.post('/api/rules/:id/enable', { schema: { params: RuleParams } }, async (request) => rules.update(request.params.id, { enabled: true }));
  app.post('/api/rules/:id/disable', { schema: { params: RuleParams } }, async (request) => rules.update(request.params.id, { enabled: false }));
  app.delete('/api/rules/:id', { schema: { params: RuleParams } }, async (request) => rules.remove(request.params.id));
  app.post('/api/rules/:id/move', { schema: { params: RuleParams, body: MoveBody } }, async (request) => ({ rules: await rules.move(request.params.id, request.body.position) }));
  // Forgets what the rule did with a device (a held one, or one it provisioned), so it may act again.
  app.post('/api/rules/:id/release', { schema: { params: RuleParams, body: ReleaseBody } }, async (request) => {
    await rules.release(request.params.id, request.body.mac);
    return { ok: true };
  });

  app.get('/api/line', async () => rules.line());
  app.post('/api/line/pause', async () => rules.pause());
  app.post('/api/line/resume', async () => rules.resume());
};
