import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchBrowser, logIn, screenshot } from '../helpers/browser.js';
import { addImage, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const PASSWORD = 'production-line-password';
const IN_TABLE = 'dc:a6:32:00:00:01';
const NOT_IN_TABLE = 'dc:a6:32:00:00:02';

let browser: Browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

/** A server with a default image, a profile that needs the device table, and a table with a row for IN_TABLE only. */
async function lineServer(t: Parameters<typeof startTestServer>[0]): Promise<TestServer> {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await addImage(t, server, 'raspios', 100_000, { makeDefault: true });
  await addImage(t, server, 'lite', 50_000);
  const profile = await server.admin('POST', '/api/profiles', {
    name: 'lab',
    files: [{ partition: 1, fs: 'vfat', path: '/network-config', template: 'wifi: {{table.wifi_key}}\n' }],
  });
  assert.equal(profile.status, 201);
  assert.equal((await server.admin('POST', '/api/device-table', { csv: `mac,wifi_key\n${IN_TABLE},hunter2\n` })).status, 200);
  await registerDevice(server, IN_TABLE);
  await registerDevice(server, NOT_IN_TABLE);
  return server;
}

async function openPage(t: Parameters<typeof startTestServer>[0], server: TestServer, path: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  await logIn(page, server.url, PASSWORD);
  if (path !== '/') await page.goto(`${server.url}${path}`);
  return page;
}

test('the Deploy dialog offers the profiles and the finish; a refused order shows the server sentence and queues nothing', async (t) => {
  const server = await lineServer(t);
  const page = await openPage(t, server, '/');

  // The device without a table row: the order is refused, in the dialog, with the API's sentence.
  await page.click('#deploy-dca632000002');
  const dialog = page.getByRole('dialog', { name: `Deploy to ${NOT_IN_TABLE}` });
  await dialog.waitFor();
  const profiles = dialog.getByLabel('Per-device files');
  assert.deepEqual(await profiles.locator('option').allTextContents(), ['none', 'lab (1 file)']);
  assert.equal(await profiles.inputValue(), '', 'none is the default');
  assert.equal(await dialog.getByLabel('reboots (default)').isChecked(), true);
  await profiles.selectOption('lab');
  await dialog.getByRole('button', { name: 'Overwrite eMMC' }).click();
  const error = dialog.locator('[data-dialog-error]');
  await error.waitFor();
  assert.equal(
    await error.textContent(),
    `file /network-config (partition 1) of profile 'lab' needs {{table.wifi_key}} for ${NOT_IN_TABLE}, but the device table has no row for mac ${NOT_IN_TABLE}; nothing was queued`,
  );
  assert.equal(await dialog.isVisible(), true, 'the dialog stays open');
  assert.equal((await server.admin('GET', '/api/jobs')).body.jobs.length, 0, 'no job was created');
  await dialog.getByRole('button', { name: 'Keep the eMMC' }).click();
  await dialog.waitFor({ state: 'hidden' });

  // The device with a row: the profile and "wait" are ordered.
  await page.click('#deploy-dca632000001');
  const second = page.getByRole('dialog', { name: `Deploy to ${IN_TABLE}` });
  await second.waitFor();
  await second.getByLabel('Per-device files').selectOption('lab');
  await second.getByLabel('waits with its activity LED steady on').check();
  await screenshot(page, 'deploy-dialog-profile');
  await second.getByRole('button', { name: 'Overwrite eMMC' }).click();
  await second.waitFor({ state: 'hidden' });
  const jobs = (await server.admin('GET', '/api/jobs')).body.jobs as Array<{ id: number; device_mac: string; finish: string }>;
  assert.deepEqual(jobs.map((job) => [job.device_mac, job.finish]), [[IN_TABLE, 'wait']]);
  const job = (await server.admin('GET', `/api/jobs/${jobs[0]!.id}`)).body;
  assert.deepEqual(job.files.map((file: { partition: number; path: string }) => [file.partition, file.path]), [[1, '/network-config']]);
});

test('the Rules page adds a rule through its form; a duplicate name shows the 409 sentence; the row shows profile and finish', async (t) => {
  const server = await lineServer(t);
  const page = await openPage(t, server, '/rules');
  await page.waitForSelector('h1:text("Rules")');
  const form = page.locator('#rule-add');

  await form.getByLabel('Name').fill('line-a');
  await form.getByLabel('Does').selectOption('deploy');
  assert.equal(await form.getByLabel('Image').inputValue(), '', 'the default image is preselected');
  assert.match((await form.getByLabel('Image').locator('option').first().textContent()) ?? '', /^the default image \(now raspios\)$/);
  await form.getByLabel('Image').selectOption('lite');
  await form.getByLabel('Per-device files').selectOption('lab');
  // A MAC prefix no registered device has: the new rule must not act during the test.
  await form.getByLabel('MAC').fill('dc:a6:33');
  await form.getByLabel('Serials').fill('10000000c0*, 10000000be* ');
  await form.getByLabel('Model contains').fill('Compute Module 4');
  await form.getByLabel('Limit').fill('5');
  await form.getByLabel('Retries').fill('2');
  await form.getByLabel('After success the device').selectOption('poweroff');
  await form.getByRole('button', { name: 'Add rule' }).click();

  const row = page.locator('table.rules tbody tr', { has: page.locator('th', { hasText: 'line-a' }) });
  await row.waitFor();
  assert.match(await row.locator('[data-label="Matches"]').innerText(), /^MAC dc:a6:33, serial 10000000c0\* or 10000000be\*, model contains "Compute Module 4"$/);
  assert.equal(await row.locator('[data-label="Does"]').innerText(), "deploy 'lite'; per-device files 'lab'; then the device powers off; retries 2");
  assert.equal(await row.locator('[data-label="Devices"]').innerText(), '0 of 5');
  assert.equal(await form.getByLabel('Name').inputValue(), '', 'the form starts afresh');

  const rules = (await server.admin('GET', '/api/rules')).body.rules;
  assert.equal(rules.length, 1);
  const { id: _id, position: _position, ...rule } = rules[0];
  assert.deepEqual(rule, {
    name: 'line-a',
    enabled: true,
    match: { mac: 'dc:a6:33', serial: ['10000000c0*', '10000000be*'], model: 'Compute Module 4', emmc_min_bytes: null, emmc_max_bytes: null, holds_image: null },
    action: 'deploy',
    image: 'lite',
    after: null,
    full_match: false,
    limit: 5,
    retries: 2,
    provision_again: false,
    finish: 'poweroff',
    profile: 'lab',
    confirm_boot: true,
    confirm_timeout: null,
    first_boot_hook: 'cmdline',
    does: "deploy 'lite'",
    devices: 0,
  });

  // The same name again: the API's 409 sentence in the form, nothing added.
  await form.getByLabel('Name').fill('line-a');
  await form.getByLabel('Does').selectOption('hold');
  await form.getByRole('button', { name: 'Add rule' }).click();
  const error = form.locator('[data-dialog-error]');
  await error.waitFor();
  assert.equal(await error.textContent(), "there is already a rule named 'line-a'");
  assert.equal((await server.admin('GET', '/api/rules')).body.rules.length, 1);

  // A new name: added, and the refusal is gone.
  await form.getByLabel('Name').fill('hold-rest');
  await form.getByRole('button', { name: 'Add rule' }).click();
  await page.locator('table.rules tbody th', { hasText: 'hold-rest' }).waitFor();
  await error.waitFor({ state: 'hidden' });
  assert.deepEqual(await page.locator('table.rules tbody th').allTextContents(), ['line-a', 'hold-rest']);
  assert.equal(await page.locator('table.rules tbody tr').nth(1).locator('[data-label="Does"]').innerText(), 'hold it for a person');
  assert.equal((await server.admin('GET', '/api/rules')).body.rules[1].action, 'hold');
  await screenshot(page, 'rules-add');
});
