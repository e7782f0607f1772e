import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { setTimeout as sleep } from 'node:timers/promises';
import { Type } from 'typebox';
import type { AdminAuth } from '../admin/auth.js';
import type { LoginThrottle } from '../admin/login-throttle.js';
import type { PasswordStore } from '../admin/passwords.js';
import { SESSION_COOKIE, SESSION_IDLE_MS, sessionCookie, type Session, type SessionStore } from '../admin/sessions.js';
import type { BackupService } from '../backups/service.js';
import type { DeviceService } from '../devices/service.js';
import type { ImageLibrary } from '../images/library.js';
import type { JobService } from '../jobs/service.js';
import type { NetbootService } from '../netboot/service.js';
import type { Clock } from '../shared/clock.js';
import type { Assets } from './assets.js';
import type { SafeHtml } from './html.js';
import type { LiveViews } from './live.js';
import { backupsPage, promoteDialog } from './views/backups.js';
import { deployDialog, devicesPage } from './views/devices.js';
import { historyPage } from './views/history.js';
import { imagesPage } from './views/images.js';
import { netbootPage } from './views/netboot.js';
import { loginPage, page, type PageName } from './views/layout.js';

export interface DashboardOptions {
  auth: AdminAuth;
  sessions: SessionStore;
  passwords: PasswordStore;
  throttle: LoginThrottle;
  live: LiveViews;
  assets: Assets;
  devices: DeviceService;
  jobs: JobService;
  images: ImageLibrary;
  backups: BackupService;
  clock: Clock;
  netboot: NetbootService;
  defaultAfterSuccess: 'emmc' | 'netboot';
}

/** Only a path on this server may follow a login (no open redirect to another site). */
const localPath = (next: string | undefined) => (next && next.startsWith('/') && !next.startsWith('//') ? next : '/');

/** The operator dashboard: server-rendered pages, live over SSE, acting through the admin API. */
export const dashboardRoutes: FastifyPluginAsyncTypebox<DashboardOptions> = async (app, options) => {
  const { auth, sessions, passwords, throttle, live, assets, devices, jobs, images, backups, clock } = options;
  const sessionsByRequest = new WeakMap<FastifyRequest, Session>();

  const sendHtml = (reply: FastifyReply, body: SafeHtml, status = 200) =>
    reply.code(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(body.text);
  const sendPage = (request: FastifyRequest, reply: FastifyReply, title: string, name: PageName, content: SafeHtml) =>
    sendHtml(reply, page({ title, page: name, csrfToken: sessionsByRequest.get(request)!.csrfToken, assetVersion: assets.version }, content));

  app.get('/assets/:file', { schema: { params: Type.Object({ file: Type.String() }) } }, async (request, reply) => {
    const asset = assets.get(request.params.file);
    if (!asset) return reply.code(404).send({ error: 'not_found', message: `no asset ${request.params.file}` });
    return reply.type(asset.type).header('cache-control', 'public, max-age=31536000, immutable').send(asset.body);
  });

  app.get('/login', { schema: { querystring: Type.Object({ next: Type.Optional(Type.String()) }) } }, async (request, reply) =>
    sendHtml(reply, loginPage({ assetVersion: assets.version, next: localPath(request.query.next), noPassword: !passwords.isSet() })),
  );

  app.post(
    '/login',
    { schema: { body: Type.Object({ password: Type.Optional(Type.String({ maxLength: 1024 })), next: Type.Optional(Type.String()) }) } },
    async (request, reply) => {
      const next = localPath(request.body.next);
      if (!passwords.isSet()) return sendHtml(reply, loginPage({ assetVersion: assets.version, next, noPassword: true }), 409);
      const password = request.body.password ?? '';
      if (!password || !(await passwords.check(password))) {
        // Each failure from an address doubles the wait before the next answer.
        await sleep(throttle.failed(request.ip));
        const error = password ? 'Wrong password. Try again.' : 'Enter the admin password.';
        return sendHtml(reply, loginPage({ assetVersion: assets.version, next, error }), 401);
      }
      throttle.succeeded(request.ip);
      const { token } = sessions.create();
      reply.header('set-cookie', sessionCookie(token, { secure: request.protocol === 'https', maxAgeSeconds: SESSION_IDLE_MS / 1000 }));
      return reply.redirect(next, 303);
    },
  );

  app.post('/logout', { schema: { body: Type.Object({ _csrf: Type.Optional(Type.String()) }) } }, async (request, reply) => {
    const found = auth.sessionOf(request);
    if (found) {
      auth.checkCsrf(request, found.session, request.body?._csrf);
      sessions.destroy(found.token);
    }
    reply.header('set-cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`);
    return reply.redirect('/login', 303);
  });

  await app.register(async (scope) => {
    const pages = scope.withTypeProvider<TypeBoxTypeProvider>();
    pages.addHook('onRequest', async (request, reply) => {
      const found = auth.sessionOf(request);
      if (found) {
        sessionsByRequest.set(request, found.session);
        return;
      }
      const login = `/login?next=${encodeURIComponent(request.url)}`;
      if (request.headers['hx-request']) return reply.code(401).header('hx-redirect', login).send({ error: 'unauthorized', message: 'log in again' });
      return reply.redirect(login, 303);
    });

    pages.get('/', async (request, reply) => sendPage(request, reply, 'Devices', 'devices', devicesPage(devices.list(), clock.now())));

    pages.get('/images', async (request, reply) => sendPage(request, reply, 'Images', 'images', imagesPage(images.list(), images.imports())));

    pages.get('/backups', { schema: { querystring: Type.Object({ device: Type.Optional(Type.String({ maxLength: 64 })) }) } }, async (request, reply) => {
      const device = request.query.device || undefined;
      const macs = devices.list().map((d) => d.mac);
      return sendPage(request, reply, 'Backups', 'backups', backupsPage(backups.list(device), device, macs));
    });

    pages.get(
      '/history',
      { schema: { querystring: Type.Object({ device: Type.Optional(Type.String({ maxLength: 64 })), state: Type.Optional(Type.String({ maxLength: 20 })) }) } },
      async (request, reply) => {
        const device = request.query.device || undefined;
        const state = (['queued', 'running', 'ok', 'failed', 'cancelled'] as const).find((s) => s === request.query.state);
        const list = jobs.list({ mac: device, state, limit: 500 }).map((job) => jobs.view(job));
        const macs = devices.list().map((d) => d.mac);
        return sendPage(request, reply, 'History', 'history', historyPage(list, { device, state }, macs));
      },
    );

    pages.get('/netboot', async (request, reply) =>
      sendPage(request, reply, 'Netboot', 'netboot', netbootPage(options.netboot.status(), options.netboot.leases(), devices.list())),
    );

    pages.get('/dashboard/deploy-dialog/:mac', { schema: { params: Type.Object({ mac: Type.String({ maxLength: 64 }) }) } }, async (request, reply) =>
      sendHtml(reply, deployDialog(devices.view(devices.get(request.params.mac)), images.list(), options.defaultAfterSuccess)),
    );

    pages.get('/dashboard/promote-dialog/:id', { schema: { params: Type.Object({ id: Type.Integer({ minimum: 1 }) }) } }, async (request, reply) =>
      sendHtml(reply, promoteDialog(backups.view(backups.get(request.params.id)))),
    );

    pages.get(
      '/dashboard/events',
      {
        schema: {
          querystring: Type.Object({
            view: Type.Union([Type.Literal('devices'), Type.Literal('images'), Type.Literal('backups')]),
            device: Type.Optional(Type.String({ maxLength: 64 })),
          }),
        },
      },
      async (request, reply) => {
        reply.hijack();
        const stream = reply.raw;
        stream.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
        stream.write('retry: 2000\n\n');
        const stop = live.open(request.query.view, { device: request.query.device || undefined }, (update) => {
          // One SSE message; every line of the HTML goes in its own data: field (the spec joins them with \n).
          stream.write(`event: update\n${update.text.split('\n').map((line) => `data: ${line}`).join('\n')}\n\n`);
        });
        const keepAlive = setInterval(() => stream.write(': keep-alive\n\n'), 20_000);
        stream.on('close', () => {
          clearInterval(keepAlive);
          stop();
        });
      },
    );
  });
};
