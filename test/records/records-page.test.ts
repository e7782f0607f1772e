import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser, logIn, screenshot } from '../helpers/browser.js';
import { registerDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';
import { buildCid, CM4_CID } from './cid.js';

const PASSWORD = 'one-record-per-device';
let browser: Browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

test('the Records page finds a device by serial and shows its eMMC and jobs when opened', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await registerDevice(server, 'dc:a6:32:00:00:01', { serial: '10000000c0ffee01', model: 'Raspberry Pi Compute Module 4 Rev 1.1', emmc_cid: buildCid(CM4_CID) });
  await registerDevice(server, 'dc:a6:32:00:00:02', { serial: '10000000c0ffee01' });
  await registerDevice(server, 'dc:a6:32:00:00:03', { serial: '10000000beefbeef' });
  const backup = (await server.admin('POST', '/api/devices/dc:a6:32:00:00:01/backup')).body;
  await server.admin('POST', '/api/devices/dc:a6:32:00:00:01/cancel');

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  t.after(() => context.close());
  const page = await context.newPage();
  await logIn(page, server.url, PASSWORD);
  await page.getByRole('link', { name: 'Records' }).click();
  await page.waitForURL(`${server.url}/records`);
  assert.equal(await page.locator('details.record').count(), 2, 'two devices: one serial with two MACs, and another');

  await page.getByLabel('Search').fill('c0ffee01');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/\/records\?search=c0ffee01$/);
  const records = page.locator('details.record');
  assert.equal(await records.count(), 1);
  assert.match((await page.getByRole('status').first().textContent()) ?? '', /1 device matches\./);
  const record = records.first();
  assert.match((await record.locator('summary').innerText()) ?? '', /10000000c0ffee01 · Raspberry Pi Compute Module 4 Rev 1\.1 · 1 job, 0 backups/);
  const jobRow = record.locator(`#record-job-${backup.id}`);
  assert.equal(await jobRow.isVisible(), false, 'closed until opened');
  await record.locator('summary').click();
  assert.equal(await jobRow.isVisible(), true);
  assert.match((await jobRow.innerText()) ?? '', /backup.*dc:a6:32:00:00:01.*operator.*cancelled/s);
  const facts = (await record.locator('dl').innerText()) ?? '';
  assert.match(facts, /dc:a6:32:00:00:01, dc:a6:32:00:00:02/);
  assert.match(facts, /Samsung BJTD4R rev 1\.2, serial 0xa1b2c3d4, made 2021-03 \(2005-03 if the eMMC predates v4\.41\)/);
  await screenshot(page, 'records');
});
