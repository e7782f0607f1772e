import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { AdminAuth } from '../admin/auth.js';
import { createLogin } from '../admin/login.js';
import type { LoginThrottle } from '../admin/login-throttle.js';
import type { PasswordStore } from '../admin/passwords.js';
import { SESSION_COOKIE, SESSION_IDLE_MS, sessionCookie, type Session, type SessionStore } from '../admin/sessions.js';
import type { BackupService } from '../backups/service.js';
import { DeviceListQuery } from '../devices/schemas.js';
import type { DeviceService } from '../devices/service.js';
import { localPath } from '../http/local-path.js';
import type { ImageLibrary } from '../images/library.js';
import type { JobService } from '../jobs/service.js';
import { JOB_STATES } from '../jobs/store.js';
import type { NetbootService } from '../netboot/service.js';
import type { Clock } from '../shared/clock.js';
import { normalizeMac } from '../shared/mac.js';
import type { Assets } from './assets.js';
import type { SafeHtml } from './html.js';
import type { LiveViews } from './live.js';
import { backupsPage, promoteDialog } from './views/backups.js';
import { DEVICE_PAGE_SIZE } from './views/device-list.js';
import { deployDialog, deployFromForm, devicesPage } from './views/devices.js';
import { FIRST_BOOT_HOOKS } from '../first-boot/hook-files.js';
import { HISTORY_PAGE_SIZE, historyPage } from './views/history.js';
import { imagesPage } from './views/images.js';
import { netbootPage } from './views/netboot.js';
import { RECORDS_PAGE_SIZE, recordsPage } from './views/records.js';
import type { RecordService } from '../records/index.js';
import { loginPage, page, type PageName } from './views/layout.js';
import { DELIVERY_ROWS, NOTIFY_CHANGED, notifyPage, notifyUpdate, webhookAdded } from './views/notify.js';
import type { NotifyService } from '../notify/index.js';
import { applyRuleVerb, RULE_VERBS, ruleFromForm, rulesBody, rulesPage } from './views/rules.js';
import type { RuleService } from '../rules/index.js';
import { RuleBody } from '../rules/schemas.js';
import type { DeviceFilesService } from '../device-files/index.js';
import type { StationService } from '../stations/index.js';
import { stationsPage } from './views/stations.js';

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
  notify: NotifyService;
  records: RecordService;
  rules: RuleService;
  stations: Pick<StationService, 'view'>;
  /** Other stations may share this database (PostgreSQL): the nav offers the Stations page. */
  sharedDatabase: boolean;
  /** Profiles of per-device files, offered in the Deploy dialog and the "Add a rule" form; without it, neither offers one. */
  deviceFiles?: Pick<DeviceFilesService, 'profiles'>;
  defaultAfterSuccess: 'emmc' | 'netboot';
}

// The "Add a rule" form: the API's rule body, but the serial globs come as one comma-separated text,
// and the first boot's timeout in minutes.
const { serial: _serialList, confirm_timeout: _seconds, ...ruleFields } = RuleBody.properties;
const RuleFormSchema = Type.Object(
  { ...ruleFields, serial: Type.Optional(Type.String({ maxLength: 4000 })), confirm_timeout_minutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1440 })) },
  { additionalProperties: false },
);

const DevicePageSchema = Type.Omit(DeviceListQuery, ['limit']);

// The Deploy dialog: the API's deploy body, but the first boot's timeout in minutes (30 s..24 h in the API).
const DeployFormSchema = Type.Object(
  {
    image: Type.Optional(Type.String({ maxLength: 128 })),
    after: Type.Optional(Type.Union([Type.Literal('emmc'), Type.Literal('netboot')])),
    full_match: Type.Optional(Type.Boolean()),
    finish: Type.Optional(Type.Union([Type.Literal('reboot'), Type.Literal('poweroff'), Type.Literal('wait')])),
    profile: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    confirm_boot: Type.Optional(Type.Boolean()),
    confirm_timeout_minutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1440 })),
    first_boot_hook: Type.Optional(Type.Union(FIRST_BOOT_HOOKS.map((hook) => Type.Literal(hook)))),
  },
  { additionalProperties: false },
);
const IdCursor = Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,14}$', description: "the 'next' of the page before" }));

/** The reason a filter's MAC cannot be used, in the words the API would use; undefined when it can. */
function macProblem(text: string | undefined): string | undefined {
  try {
    if (text !== undefined) normalizeMac(text);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** The operator dashboard: server-rendered pages, live over SSE, acting through the admin API. */
export const dashboardRoutes: FastifyPluginAsyncTypebox<DashboardOptions> = async (app, options) => {
  const { auth, sessions, passwords, throttle, live, assets, devices, jobs, images, backups, clock } = options;
  const sessionsByRequest = new WeakMap<FastifyRequest, Session>();
  const profiles = async () => ((await options.deviceFiles?.profiles()) ?? []).map((profile) => ({ name: profile.name, files: profile.files.length }));

  const sendHtml = (reply: FastifyReply, body: SafeHtml, status = 200) =>
    reply.code(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(body.text);
  const sendPage = (request: FastifyRequest, reply: FastifyReply, title: string, name: PageName, content: SafeHtml) =>
    sendHtml(reply, page({ title, page: name, csrfToken: sessionsByRequest.get(request)!.csrfToken, assetVersion: assets.version, sharedDatabase: options.sharedDatabase }, content));

  app.get('/assets/:file', { schema: { params: Type.Object({ file: Type.String() }) } }, async (request, reply) => {
    const asset = assets.get(request.params.file);
    if (!asset) return reply.code(404).send({ error: 'not_found', message: `no asset ${request.params.file}` });
    return reply.type(asset.type).header('cache-control', 'public, max-age=31536000, immutable').send(asset.body);
  });

  app.get('/login', { schema: { querystring: Type.Object({ next: Type.Optional(Type.String()) }) } }, async (request, reply) =>
    sendHtml(reply, loginPage({ assetVersion: assets.version, next: localPath(request.query.next), noPassword: !(await passwords.isSet()) })),
  );

  const login = createLogin({ passwords, throttle, sessions });
  app.post(
    '/login',
    { schema: { body: Type.Object({ password: Type.Optional(Type.String({ maxLength: 1024 })), next: Type.Optional(Type.String()) }) } },
    async (request, reply) => {
      // Only a path on this server may follow a login (no open redirect to another site).
      const next = localPath(request.body.next);
      const outcome = await login.attempt(request.ip, request.body.password ?? '');
      if (!outcome.ok) {
        if (outcome.retryAfterSeconds) reply.header('retry-after', String(outcome.retryAfterSeconds));
        const message = outcome.noPassword ? {} : outcome.status === 401 ? { error: outcome.message } : { notice: outcome.message };
        return sendHtml(reply, loginPage({ assetVersion: assets.version, next, ...message, noPassword: outcome.noPassword }), outcome.status);
      }
      reply.header('set-cookie', sessionCookie(outcome.token, { secure: request.protocol === 'https', maxAgeSeconds: SESSION_IDLE_MS / 1000 }));
      return reply.redirect(next, 303);
    },
  );

  app.post('/logout', { schema: { body: Type.Object({ _csrf: Type.Optional(Type.String()) }) } }, async (request, reply) => {
    const found = await auth.sessionOf(request);
    if (found) {
      auth.checkCsrf(request, found.session, request.body?._csrf);
      await sessions.destroy(found.token);
    }
    reply.header('set-cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`);
    return reply.redirect('/login', 303);
  });

  await app.register(async (scope) => {
    const pages = scope.withTypeProvider<TypeBoxTypeProvider>();
    pages.addHook('onRequest', async (request, reply) => {
      const found = await auth.sessionOf(request);
      if (found) {
        sessionsByRequest.set(request, found.session);
        return;
      }
      const login = `/login?next=${encodeURIComponent(request.url)}`;
      if (request.headers['hx-request']) return reply.code(401).header('hx-redirect', login).send({ error: 'unauthorized', message: 'log in again' });
      return reply.redirect(login, 303);
    });

    // Lists show one page (the device list in a stable order, by cursor) and never all rows.
    pages.get('/', { schema: { querystring: DevicePageSchema } }, async (request, reply) => {
      const [page, active] = await Promise.all([devices.page({ ...request.query, limit: DEVICE_PAGE_SIZE }), devices.count({ state: 'active' })]);
      const listing = { query: request.query, ...page, active };
      return sendPage(request, reply, 'Devices', 'devices', devicesPage(listing, clock.now(), (await options.rules.line()).paused_at));
    });

    pages.get('/images', async (request, reply) => sendPage(request, reply, 'Images', 'images', imagesPage(await images.list(), images.imports())));

    pages.get('/backups', { schema: { querystring: Type.Object({ device: Type.Optional(Type.String({ maxLength: 64 })), cursor: IdCursor }) } }, async (request, reply) => {
      const device = request.query.device?.trim() || undefined;
      const error = macProblem(device);
      const filter = { device, cursor: request.query.cursor, error };
      const page = error ? { backups: [], total: 0, skipped: 0, next: null } : await backups.page({ mac: device, cursor: request.query.cursor ? Number(request.query.cursor) : undefined });
      return sendPage(request, reply, 'Backups', 'backups', backupsPage(page, filter));
    });

    pages.get(
      '/history',
      {
        schema: {
          querystring: Type.Object({ device: Type.Optional(Type.String({ maxLength: 64 })), state: Type.Optional(Type.String({ maxLength: 20 })), cursor: IdCursor }),
        },
      },
      async (request, reply) => {
        const device = request.query.device?.trim() || undefined;
        const { cursor } = request.query;
        const state = JOB_STATES.find((s) => s === request.query.state);
        const error = macProblem(device);
        const page = error ? { rows: [], total: 0, next: null } : await jobs.list({ mac: device, state, limit: HISTORY_PAGE_SIZE, cursor: cursor ? Number(cursor) : undefined });
        const list = await jobs.viewAll(page.rows);
        const more = { total: page.total, next: page.next === null ? null : String(page.next) };
        return sendPage(request, reply, 'History', 'history', historyPage(list, { device, state, cursor, error }, more, { labels: Boolean((await options.notify.labels.settings()).output) }));
      },
    );

    pages.get(
      '/records',
      { schema: { querystring: Type.Object({ search: Type.Optional(Type.String({ maxLength: 200 })), cursor: Type.Optional(Type.String({ maxLength: 300 })) }) } },
      async (request, reply) => {
        const search = request.query.search?.trim() || undefined;
        const page = await options.records.page({ search, cursor: request.query.cursor, limit: RECORDS_PAGE_SIZE });
        return sendPage(request, reply, 'Records', 'records', recordsPage({ search, cursor: request.query.cursor, ...page }));
      },
    );

    pages.get('/rules', async (request, reply) => {
      const choices = { images: (await images.list()).filter((image) => !image.broken), profiles: await profiles() };
      return sendPage(request, reply, 'Rules', 'rules', rulesPage(await options.rules.list(), await options.rules.line(), await options.rules.held(), choices));
    });
    // The same service call as POST /api/rules; a refusal is the API's 400/409 with its sentence.
    pages.post('/dashboard/rules/add', { schema: { body: RuleFormSchema } }, async (request, reply) => {
      auth.checkCsrf(request, sessionsByRequest.get(request)!);
      await options.rules.add(ruleFromForm(request.body));
      return sendHtml(reply, rulesBody(await options.rules.list(), await options.rules.line(), await options.rules.held()));
    });
    pages.post('/dashboard/rules', { schema: { body: Type.Object({ verb: Type.Union(RULE_VERBS.map((verb) => Type.Literal(verb))), id: Type.Optional(Type.Integer({ minimum: 1 })) }) } }, async (request, reply) => {
      auth.checkCsrf(request, sessionsByRequest.get(request)!);
      await applyRuleVerb(options.rules, request.body.verb, request.body.id);
      return sendHtml(reply, rulesBody(await options.rules.list(), await options.rules.line(), await options.rules.held()));
    });

    // Webhooks & labels sits under History (where Reprint is), keeping the top bar one row.
    const { notify } = options;
    pages.get('/notify', async (request, reply) =>
      sendPage(request, reply, 'Webhooks & labels', 'history', notifyPage(await notify.webhooks.list(), await notify.webhooks.recentDeliveries(DELIVERY_ROWS), await notify.labels.settings())),
    );
    // The page polls this: the outbox changes in the worker, which tells no live stream.
    const notifyTables = async () => notifyUpdate(await notify.webhooks.list(), await notify.webhooks.recentDeliveries(DELIVERY_ROWS), (await notify.labels.settings()).recent);
    pages.get('/dashboard/notify/live', async (_request, reply) => sendHtml(reply, await notifyTables()));
    // Send again (webhook deliveries and labels alike). The answer asks the page's poll to run now
    // rather than redrawing the tables itself: that would detach the button before its toast.
    pages.post('/dashboard/notify/deliveries/:id/retry', { schema: { params: Type.Object({ id: Type.Integer({ minimum: 1 }) }) } }, async (request, reply) => {
      auth.checkCsrf(request, sessionsByRequest.get(request)!);
      await notify.webhooks.retry(request.params.id);
      return reply.code(204).header('hx-trigger', NOTIFY_CHANGED).send();
    });
    // Adding a webhook here, not through the API, so that the page can show its secret once.
    pages.post('/dashboard/webhooks', { schema: { body: Type.Object({ url: Type.String({ maxLength: 2000 }), events: Type.Optional(Type.String({ maxLength: 400 })) }) } }, async (request, reply) => {
      auth.checkCsrf(request, sessionsByRequest.get(request)!);
      const events = request.body.events?.split(',').map((event) => event.trim()).filter(Boolean);
      const hook = await options.notify.webhooks.add({ url: request.body.url, events: events?.length ? events : undefined });
      return sendHtml(reply, webhookAdded(hook, await options.notify.webhooks.list()));
    });

    pages.get('/stations', async (request, reply) =>
      sendPage(request, reply, 'Stations', 'stations', stationsPage(await options.stations.view(), await images.list(), clock.now())),
    );

    pages.get('/netboot', async (request, reply) => {
      const leases = options.netboot.leases();
      // Only the devices behind the leases: never every device ever seen.
      return sendPage(request, reply, 'Netboot', 'netboot', netbootPage(options.netboot.status(), leases, await devices.viewsOf(leases.map((lease) => lease.mac))));
    });

    pages.get('/dashboard/deploy-dialog/:mac', { schema: { params: Type.Object({ mac: Type.String({ maxLength: 64 }) }) } }, async (request, reply) =>
      sendHtml(reply, deployDialog(await devices.view(await devices.get(request.params.mac)), await images.list(), options.defaultAfterSuccess, clock.now(), await profiles())),
    );

    // The same service call as POST /api/devices/:mac/deploy; a refusal is the API's status and sentence.
    pages.post('/dashboard/devices/:mac/deploy', { schema: { params: Type.Object({ mac: Type.String({ maxLength: 64 }) }), body: DeployFormSchema } }, async (request, reply) => {
      auth.checkCsrf(request, sessionsByRequest.get(request)!);
      const { image, options: order } = deployFromForm(request.body);
      return reply.code(201).send(await jobs.view(await jobs.orderDeploy(request.params.mac, image, order)));
    });

    pages.get('/dashboard/promote-dialog/:id', { schema: { params: Type.Object({ id: Type.Integer({ minimum: 1 }) }) } }, async (request, reply) =>
      sendHtml(reply, promoteDialog(backups.view(await backups.get(request.params.id)))),
    );

    pages.get(
      '/dashboard/events',
      {
        schema: {
          querystring: Type.Object({
            view: Type.Union([Type.Literal('devices'), Type.Literal('images'), Type.Literal('backups'), Type.Literal('stations')]),
            device: Type.Optional(Type.String({ maxLength: 64 })),
            // The page's own query, so that the stream sends only what that page shows.
            ...DevicePageSchema.properties,
          }),
        },
      },
      async (request, reply) => {
        const { view, device, ...query } = request.query;
        const stream = reply.raw;
        // The stream starts with the first message: a bad query (a malformed cursor) is still a 400.
        const start = () => {
          reply.hijack();
          stream.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
          stream.write('retry: 2000\n\n');
        };
        // Listened for before the first await: a viewer gone meanwhile must not leave a stream open.
        let stop: (() => void) | undefined;
        let keepAlive: NodeJS.Timeout | undefined;
        let closed = false;
        stream.on('close', () => {
          closed = true;
          clearInterval(keepAlive);
          stop?.();
        });
        stop = await live.open(view, { ...query, device: device || undefined }, (update) => {
          if (!stream.headersSent) start();
          // One SSE message; every line of the HTML goes in its own data: field (the spec joins them with \n).
          stream.write(`event: update\n${update.text.split('\n').map((line) => `data: ${line}`).join('\n')}\n\n`);
        });
        if (closed) return stop();
        if (!stream.headersSent) start();
        keepAlive = setInterval(() => stream.write(': keep-alive\n\n'), 20_000);
      },
    );
  });
};
