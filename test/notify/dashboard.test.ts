import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser, logIn } from '../helpers/browser.js';
import { runClient } from '../helpers/device-client.js';
import { writeImageFile } from '../helpers/files.js';
import { MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { MAX_ATTEMPTS, MAX_RETRY_MS } from '../../src/notify/worker.js';
import { movableClock, startReceiver } from './listeners.js';

const PASSWORD = 'provision-all-the-things';
let browser: Browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

test('dashboard: add a webhook (its secret shown once), set up labels, and Reprint a finished job from History', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  await logIn(page, server.url, PASSWORD);

  await page.goto(`${server.url}/history`);
  await page.getByRole('link', { name: 'Webhooks & labels' }).click();
  await page.waitForURL(`${server.url}/notify`);
  await page.getByLabel('URL').fill('http://127.0.0.1:9/hook');
  await page.getByRole('button', { name: 'Add webhook' }).click();
  const secret = await page.locator('#webhook-added code').textContent();
  assert.match(secret ?? '', /^[0-9a-f]{64}$/);
  assert.equal(await page.locator('#webhook-1 code').first().textContent(), 'http://127.0.0.1:9/hook', 'the table shows the new webhook');
  const { webhooks } = (await server.admin('GET', '/api/webhooks')).body;
  assert.equal(webhooks[0].secret_hint, `…${secret!.slice(-4)}`, 'the secret shown is the one the server signs with');

  const spool = tempDir(t);
  await page.getByLabel('Print a label').selectOption('true');
  await page.getByLabel('For backups too').selectOption('true');
  await page.getByLabel('Printer or spool folder').fill(spool);
  await page.getByLabel('ZPL template').fill('^XA^FD{{mac}} job {{job_id}}^FS^XZ');
  await page.getByRole('button', { name: 'Save label settings' }).click();
  await page.locator('.toast-ok', { hasText: 'Label settings saved' }).waitFor();
  assert.equal((await server.admin('GET', '/api/labels')).body.enabled, true);

  const emmc = join(tempDir(t), 'emmc.img');
  writeImageFile(emmc, 4 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC });
  await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const job = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  assert.equal(await client.exited, 0, client.output());
  await waitFor('the first label', () => readdirSync(spool).filter((name) => name.endsWith('.zpl')).length === 1);

  await page.goto(`${server.url}/history`);
  await page.locator(`#reprint-${job.id}`).click();
  await page.locator('.toast-ok', { hasText: `Label of job ${job.id} queued` }).waitFor();
  const files = await waitFor('the reprinted label', () => {
    const names = readdirSync(spool).filter((name) => name.endsWith('.zpl'));
    return names.length === 2 ? names : undefined;
  });
  for (const name of files) assert.equal(readFileSync(join(spool, name), 'utf8'), `^XA^FD${MAC} job ${job.id}^FS^XZ`);
});

test('dashboard: the deliveries table follows the outbox by itself, and Send again delivers a delivery that was given up', async (t) => {
  const clock = movableClock();
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD, clock });
  const { notify } = server.server.services;
  const receiver = await startReceiver(t);
  receiver.answerWith(() => 500);
  await server.admin('POST', '/api/webhooks', { url: receiver.url, events: ['job.queued'] });
  await registerDevice(server);
  await registerDevice(server, 'dc:a6:32:00:00:02');
  await server.admin('POST', `/api/devices/${MAC}/backup`);
  const deliveries = async () => (await server.admin('GET', '/api/webhooks/1/deliveries')).body.deliveries as any[];
  const [first] = await waitFor('a first failed attempt', async () => ((await deliveries())[0]?.attempts === 1 ? deliveries() : undefined));
  for (let attempt = 2; attempt <= MAX_ATTEMPTS; attempt++) {
    clock.advance(MAX_RETRY_MS);
    await notify.deliverDue();
  }
  assert.deepEqual([(await deliveries())[0].state, receiver.received.length], ['failed', MAX_ATTEMPTS], 'given up after the last attempt');

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  await logIn(page, server.url, PASSWORD);
  await page.goto(`${server.url}/notify`);
  const row = page.locator(`#delivery-${first.id}`);
  assert.equal(await row.locator('.badge').textContent(), 'failed');
  assert.match((await row.locator('.error-text').textContent()) ?? '', /the receiver answered HTTP 500 \(20 attempts\)/);

  // A new event while the page is open shows up without a reload.
  await server.admin('POST', '/api/devices/dc:a6:32:00:00:02/backup');
  const [second] = await waitFor('the second delivery queued', async () => ((await deliveries()).length === 2 ? deliveries() : undefined));
  await page.locator(`#delivery-${second.id}`).waitFor();

  receiver.answerWith(() => 200);
  await row.getByRole('button', { name: 'Send again' }).click();
  await page.locator('.toast-ok', { hasText: `Delivery ${first.id} queued again` }).waitFor();
  await row.locator('.badge', { hasText: 'sent' }).waitFor();
  const sent = (await deliveries()).find((delivery) => delivery.id === first.id);
  assert.deepEqual([sent.state, sent.attempts, sent.last_status], ['delivered', 1, 200], 'sent again from a first attempt');
  assert.deepEqual(receiver.accepted().map((r) => Number(r.headers['x-cm4prov-delivery'])), [first.id]);
  assert.equal(await row.getByRole('button', { name: 'Send again' }).count(), 1, 'a sent delivery can be sent again too');
});
