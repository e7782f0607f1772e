import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { launchBrowser, logIn } from '../helpers/browser.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { insertRows } from '../helpers/rows.js';

const PASSWORD = 'bounded-lists-only';
const MANY = 20_000;
const macOf = (n: number) => `dc:a6:32:${[(n >> 16) & 255, (n >> 8) & 255, n & 255].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
const rowsIn = (html: string) => html.match(/<tr id="device-/g)?.length ?? 0;

/** 20,000 devices straight into the database, first seen a second apart an hour ago. */
function insertDevices(server: TestServer, count: number) {
  const start = Date.now() - 3_600_000;
  return insertRows(server.server.services.database.db, 'devices', Array.from({ length: count }, (_, i) => {
    const n = i + 1;
    return { mac: macOf(n), ip: `10.0.${(n >> 8) & 255}.${n & 255}`, serial: `serial-${n}`, model: 'CM4', first_seen_at: start + n, last_seen_at: start + n, registered_at: start + n };
  }));
}

async function logInOverHttp(server: TestServer): Promise<string> {
  const reply = await fetch(`${server.url}/login`, { method: 'POST', body: new URLSearchParams({ password: PASSWORD, next: '/' }), redirect: 'manual' });
  assert.equal(reply.status, 303);
  return reply.headers.get('set-cookie')!.split(';')[0]!;
}

async function getPage(server: TestServer, cookie: string, path: string): Promise<string> {
  const reply = await fetch(`${server.url}${path}`, { headers: { cookie } });
  assert.equal(reply.status, 200, path);
  return reply.text();
}

/** The `update` messages of a dashboard event stream, one at a time, as the HTML they carry. */
async function openStream(t: TestContext, server: TestServer, cookie: string, query: string) {
  const controller = new AbortController();
  t.after(() => controller.abort());
  const response = await fetch(`${server.url}/dashboard/events?${query}`, { headers: { cookie }, signal: controller.signal });
  assert.equal(response.status, 200);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  return async function next(): Promise<string> {
    for (;;) {
      const end = buffer.indexOf('\n\n');
      if (end >= 0) {
        const message = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!message.startsWith('event: update')) continue;
        return message.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n');
      }
      const { value, done } = await reader.read();
      if (done) throw new Error('the stream ended');
      buffer += value;
    }
  };
}

test('the Devices page shows one page of 20,000 devices with the total, pages on by cursor, and its search narrows the list', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await insertDevices(server, MANY);
  const cookie = await logInOverHttp(server);

  const first = await getPage(server, cookie, '/');
  assert.equal(rowsIn(first), 100);
  assert.match(first, /Showing 1–100 of 20,000 devices — search to find one\./);
  const next = /<a href="(\/\?cursor=[^"]+)" rel="next">Next 100 →<\/a>/.exec(first)?.[1];
  assert.ok(next, 'a link to the next page');
  const second = await getPage(server, cookie, next.replaceAll('&amp;', '&'));
  assert.equal(rowsIn(second), 100);
  assert.match(second, /Showing 101–200 of 20,000 devices/);
  assert.match(second, new RegExp(`<tr id="device-${macOf(101).replaceAll(':', '')}"`), 'it starts where the first page ended');

  const found = await getPage(server, cookie, '/?search=00-4E-1F');
  assert.equal(rowsIn(found), 1);
  assert.match(found, /<code>dc:a6:32:00:4e:1f<\/code>/);
  assert.match(found, /1 device match\./);
  assert.match(found, /sse-connect="\/dashboard\/events\?view=devices&amp;search=00-4E-1F"/, 'the live stream asks for the same rows');
  const none = await getPage(server, cookie, '/?search=no-such-device');
  assert.equal(rowsIn(none), 0);
  assert.match(none, /No device matches this search\./);

  assert.equal((await server.admin('POST', `/api/devices/${macOf(15_000)}/backup`)).status, 201);
  const withWork = await getPage(server, cookie, '/');
  assert.match(withWork, /1 device has a job queued or running: <a href="\/\?state=active">show them<\/a>/, 'work far down the list is one click away');
  assert.equal(rowsIn(await getPage(server, cookie, '/?state=active')), 1);
});

test('the devices stream starts with at most a page, changes off the page render nothing, and a new device beyond the page is only counted', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await insertDevices(server, MANY);
  const cookie = await logInOverHttp(server);

  const next = await openStream(t, server, cookie, 'view=devices');
  const opening = await next();
  assert.equal(rowsIn(opening), 100, 'a page of rows, not 20,000');
  assert.match(opening, /Showing 1–100 of 20,000 devices/);

  // A flood of changes to devices not on the page, then one to a device on it: only that row comes.
  for (let n = 5_000; n < 6_000; n++) server.server.services.bus.emit('device.changed', { mac: macOf(n) });
  assert.equal((await server.device('GET', `/api/device-action-poll?mac=${macOf(7)}`)).status, 200);
  let update = await next();
  while (!update.includes('<tr')) update = await next();
  assert.deepEqual(update.match(/<tr id="device-\w+"/g), [`<tr id="device-${macOf(7).replaceAll(':', '')}"`]);

  const newcomer = 'dc:a6:32:aa:00:01';
  assert.equal((await server.device('POST', '/api/register-device', { mac: newcomer })).status, 200);
  update = await next();
  while (!update.includes('new device since')) update = await next();
  assert.match(update, /1 new device since this page loaded — <a href="\/\?order=newest">show<\/a>/);
  assert.equal(rowsIn(update), 0, 'the full page gets no row for it');

  // A page with room (a search nothing matched yet) takes the new device as a row.
  const searching = await openStream(t, server, cookie, 'view=devices&search=aa:00:02');
  assert.equal(rowsIn(await searching()), 0);
  assert.equal((await server.device('POST', '/api/register-device', { mac: 'dc:a6:32:aa:00:02' })).status, 200);
  update = await searching();
  while (!update.includes('<tr')) update = await searching();
  assert.match(update, /hx-swap-oob="beforeend:#device-rows"><tr id="device-dca632aa0002"/);
  assert.match(update, /1 device match\./);
});

test('History shows 100 jobs at a time with the total; the jobs API pages with total and next', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await insertDevices(server, 10);
  await insertRows(server.server.services.database.db, 'jobs', Array.from({ length: 250 }, (_, i) => (
    { device_mac: macOf(((i + 1) % 10) + 1), kind: 'backup', state: 'cancelled', token: 'x', created_at: Date.now() - (i + 1) }
  )));
  const cookie = await logInOverHttp(server);
  const history = await getPage(server, cookie, '/history');
  assert.equal(history.match(/<tr id="job-/g)?.length, 100);
  assert.match(history, /Showing 100 of 250 jobs, newest first/);
  const older = /<a href="(\/history\?cursor=\d+)" rel="next">/.exec(history)?.[1];
  assert.ok(older);
  assert.match(await getPage(server, cookie, older), /<tr id="job-150">/);
  assert.match(await getPage(server, cookie, '/history?device=nonsense'), /invalid MAC address &#39;nonsense&#39;/);

  const ids = new Set<number>();
  let cursor: string | null = null;
  do {
    const reply: { status: number; body: any } = await server.admin('GET', `/api/jobs?limit=60${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(reply.body.total, 250);
    for (const job of reply.body.jobs) {
      assert.ok(!ids.has(job.id), `job ${job.id} twice`);
      ids.add(job.id);
    }
    cursor = reply.body.next;
  } while (cursor);
  assert.equal(ids.size, 250);
});

test('typing in the search box narrows the Devices page in place, with a URL to come back to', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await insertDevices(server, MANY);
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await browser.newPage();
  await logIn(page, server.url, PASSWORD);
  assert.equal(await page.locator('#device-rows tr').count(), 100);
  await page.getByLabel('Search').fill('00:3a:98');
  await page.locator('#device-summary', { hasText: '1 device match.' }).waitFor();
  assert.equal(await page.locator('#device-rows tr').count(), 1);
  assert.equal(await page.locator('#device-dca632003a98').isVisible(), true);
  assert.equal(new URL(page.url()).searchParams.get('search'), '00:3a:98');
});
