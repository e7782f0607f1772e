import { sql } from 'kysely';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser, loggedInPage, screenshot } from '../helpers/browser.js';
import { runClient } from '../helpers/device-client.js';
import { makeExt4Image } from '../helpers/ext4.js';
import { makeFakeEmmc, sha256OfFile, writeImageFile } from '../helpers/files.js';
import { addImage, MAC } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';

const PASSWORD = 'provision-all-the-things';
const ROW = '#device-dca632000001';
let browser: Browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

/** A logged-in dashboard page of its own. */
const openPage = (t: TestContext, server: TestServer, viewport = { width: 1360, height: 800 }) => loggedInPage(browser, t, server.url, PASSWORD, { viewport, acceptDownloads: true });

test('deploy from the dashboard: the row appears live, the dialog names the device, progress moves, the result is verified', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  const image = await addImage(t, server, 'reterminal-bookworm', 48 * 1024 * 1024, { makeDefault: true });
  await addImage(t, server, 'raspios-lite', 1024 * 1024);
  const page = await openPage(t, server);
  assert.equal(await page.locator('#no-devices').isVisible(), true);

  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  // 16 MB/s (curl --limit-rate) keeps the deploy on screen long enough to watch it move.
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { RATE_LIMIT: '16M', DEVICE_SERIAL: '10000000c0ffee01', DEVICE_MODEL: 'Raspberry Pi Compute Module 4 Rev 1.1' } });
  const row = page.locator(ROW);
  await row.waitFor({ timeout: 15_000 });
  assert.equal(page.url(), `${server.url}/`, 'no reload');
  assert.match((await row.textContent()) ?? '', /dc:a6:32:00:00:01.*IP 127.0.0.1.*Compute Module 4 Rev 1.1.*Serial 10000000c0ffee01.*64\.0 MiB.*Waiting for work/s);
  assert.equal(await page.locator('#no-devices').isVisible(), false);

  await row.getByRole('button', { name: 'Deploy…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Deploy to dc:a6:32:00:00:01' });
  await dialog.waitFor();
  assert.match((await dialog.textContent()) ?? '', /Overwrite the eMMC of dc:a6:32:00:00:01 \(serial 10000000c0ffee01\)\?/);
  assert.equal(await dialog.getByLabel('Image', { exact: true }).inputValue(), 'reterminal-bookworm', 'the default image is preselected');
  assert.equal(await dialog.locator('[data-fact="sha256"]').textContent(), image.sha256);
  await dialog.getByLabel('Image', { exact: true }).selectOption('raspios-lite');
  assert.notEqual(await dialog.locator('[data-fact="sha256"]').textContent(), image.sha256, 'facts follow the choice');
  await dialog.getByLabel('Image', { exact: true }).selectOption('reterminal-bookworm');
  await screenshot(page, 'deploy-dialog');
  await dialog.getByRole('button', { name: 'Overwrite eMMC' }).click();
  await dialog.waitFor({ state: 'hidden' });

  const bar = row.getByRole('progressbar');
  await bar.waitFor({ timeout: 15_000 });
  const seen = new Set<number>();
  while (seen.size < 3 && (await bar.count()) > 0) {
    const value = Number(await bar.getAttribute('aria-valuenow').catch(() => null));
    if (!Number.isNaN(value)) seen.add(value);
    if (seen.size === 2) await screenshot(page, 'devices-deploying');
    await page.waitForTimeout(200);
  }
  assert.ok(seen.size >= 2, `the progress bar moved (values seen: ${[...seen].join(', ')})`);
  assert.match((await row.textContent()) ?? '', /MB\/s|Verifying|ok/);

  await row.getByText('Deploy ok').waitFor({ timeout: 30_000 });
  // A sparse deploy proved its mapped ranges, and says exactly that: not a whole-image sha256.
  assert.match((await row.locator('.job-cell').textContent()) ?? '', /Deploy ok · [\d.]+ MiB in \d+ mapped ranges verified/);
  assert.equal(await client.exited, 0, client.output());
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256);
  await screenshot(page, 'devices');

  await page.getByRole('link', { name: 'History' }).click();
  const history = page.locator('#history-rows tr').first();
  assert.match((await history.textContent()) ?? '', /dc:a6:32:00:00:01\s*deploy\s*operator\s*reterminal-bookworm.*MB\/s\s*ok/s);
  await screenshot(page, 'history');
  const csv = await page.request.get(`${server.url}/api/jobs.csv?device=${MAC}`);
  const lines = (await csv.text()).trim().split('\r\n');
  assert.equal(lines[0], 'job,device_mac,action,image,backup_id,state,ordered_by,created_at,started_at,ended_at,duration_seconds,bytes,throughput_mb_per_s,sha256,verified,verification,first_boot,first_boot_at,error');
  assert.match(lines[1]!, new RegExp(`^\\d+,dc:a6:32:00:00:01,deploy,reterminal-bookworm,,ok,.*,\\d+,[\\d.]+,${image.sha256},mapped_ranges,[\\d.]+ MiB in \\d+ mapped ranges verified,,,$`));
});

test('backup from the dashboard: listed live, downloads as the stored bytes, becomes an image, and is deleted with confirmation', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  const emmc = join(tempDir(t), 'emmc.img');
  const emmcSha = writeImageFile(emmc, 12 * 1024 * 1024);
  runClient(t, { server: server.url, target: emmc, mac: MAC });
  const page = await openPage(t, server);
  await page.locator(ROW).waitFor({ timeout: 15_000 });

  const backups = await page.context().newPage();
  await backups.goto(`${server.url}/backups`);
  await page.locator(ROW).getByRole('button', { name: 'Backup' }).click();
  await page.getByText(`Backup of ${MAC} queued`).waitFor();
  await page.locator(ROW).getByText('Backup ok').waitFor({ timeout: 30_000 });

  const backupRow = backups.locator('#backup-rows tr').first();
  await backupRow.waitFor({ timeout: 10_000 });
  assert.match((await backupRow.textContent()) ?? '', new RegExp(`dc:a6:32:00:00:01.*12\\.0 MiB.*${emmcSha}`, 's'));
  await screenshot(backups, 'backups');

  const [download] = await Promise.all([backups.waitForEvent('download'), backupRow.getByRole('link', { name: 'Download' }).click()]);
  const downloaded = readFileSync((await download.path())!);
  assert.equal(createHash('sha256').update(downloaded).digest('hex'), emmcSha, 'the downloaded bytes hash to the stored sha256');

  await backupRow.getByRole('button', { name: 'Make image…' }).click();
  const dialog = backups.getByRole('dialog', { name: /Make an image from backup #\d+/ });
  await dialog.getByLabel('Image name').fill('line-3-master');
  await dialog.getByRole('button', { name: 'Create image' }).click();
  await dialog.waitFor({ state: 'hidden' });
  const images = (await server.admin('GET', '/api/images')).body.images;
  assert.deepEqual(images.map((i: any) => [i.name, i.sha256, i.source]), [['line-3-master', emmcSha, 'backup']]);

  await backupRow.getByRole('button', { name: 'Delete' }).click();
  const confirm = backups.getByRole('dialog', { name: 'Please confirm' });
  assert.match((await confirm.textContent()) ?? '', /Delete backup #\d+ of dc:a6:32:00:00:01 \(12\.0 MiB\)\? This cannot be undone\./);
  await confirm.getByRole('button', { name: 'Yes' }).click();
  await backups.locator('#backup-rows tr').first().waitFor({ state: 'detached', timeout: 10_000 });
  assert.equal((await server.admin('GET', '/api/backups')).body.backups.length, 0);
  assert.equal((await server.admin('GET', '/api/images')).body.images.length, 1, 'the image made from it stays');
});

test('an image uploaded through the page streams to the server with progress and lands in the library', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  const page = await openPage(t, server);
  await page.getByRole('link', { name: 'Images' }).click();
  const file = join(tempDir(t), 'reterminal-2026.11.img');
  const sha = writeImageFile(file, 24 * 1024 * 1024);
  await page.getByLabel(/^Image file/).setInputFiles(file);
  assert.equal(await page.getByLabel('Name').inputValue(), 'reterminal-2026.11', 'named after the file');
  await page.getByLabel('Make it the default for Deploy').check();
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.getByText('Added reterminal-2026.11.').waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('#upload-progress').getAttribute('value'), '100');
  const row = page.locator('#image-rows tr', { hasText: 'reterminal-2026.11' });
  await row.waitFor({ timeout: 10_000 });
  assert.match((await row.textContent()) ?? '', new RegExp(`default.*24\\.0 MiB.*${sha}`, 's'));
  await screenshot(page, 'images');

  await page.getByLabel(/^Image file/).setInputFiles(file);
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.getByText(/Not added: an image named 'reterminal-2026.11' already exists/).waitFor();

  // A compressed image with bmaptool's map beside it: the map comes from the bmap.
  const { image, bmap } = makeExt4Image(tempDir(t), 32, { bmap: true });
  execFileSync('xz', ['-q', '-k', image]);
  await page.getByLabel('Name').fill('');
  await page.getByLabel(/^Image file/).setInputFiles(`${image}.xz`);
  await page.getByLabel(/^Block map/).setInputFiles(bmap!);
  assert.equal(await page.getByLabel('Name').inputValue(), 'rootfs');
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.getByText('Added rootfs.').waitFor({ timeout: 30_000 });
  const mappedRow = page.locator('#image-rows tr', { hasText: 'rootfs' });
  await mappedRow.getByText(/chunks \(bmap\)/).waitFor({ timeout: 10_000 });
  assert.equal((await server.admin('GET', '/api/images/rootfs')).body.sha256, await sha256OfFile(image));
});

test('on a tablet-sized screen the device list reads as cards, keyboard first', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  runClient(t, { server: server.url, target: emmc, mac: MAC });
  const page = await openPage(t, server, { width: 800, height: 1000 });
  await page.locator(ROW).waitFor({ timeout: 15_000 });
  const box = await page.locator(ROW).boundingBox();
  assert.ok(box && box.width <= 800, 'the row fits the screen');

  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate('document.activeElement?.textContent'), 'Skip to content');
  await page.locator(`${ROW} button`, { hasText: 'Deploy…' }).focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate('document.activeElement?.id'), 'deploy-dca632000001', 'focus returns to the button');
  await screenshot(page, 'devices-tablet');
});

test('cancelling a running deploy from its row works even while live updates redraw the row', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await addImage(t, server, 'raspios', 32 * 1024 * 1024, { makeDefault: true });
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { RATE_LIMIT: '2M' } });
  const page = await openPage(t, server);
  const row = page.locator(ROW);
  await row.waitFor({ timeout: 15_000 });
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  await row.getByRole('progressbar').waitFor({ timeout: 15_000 });

  await row.getByRole('button', { name: 'Cancel' }).click();
  const confirm = page.getByRole('dialog', { name: 'Please confirm' });
  assert.match((await confirm.textContent()) ?? '', /Cancel job \d+ \(deploy on dc:a6:32:00:00:01\)\? The eMMC will hold a partial image\./);
  await page.waitForTimeout(1500); // progress reports redraw the row behind the dialog meanwhile
  await confirm.getByRole('button', { name: 'Yes' }).click();
  await row.getByText(/Deploy cancelled: cancelled by the operator/).waitFor({ timeout: 10_000 });
  assert.equal((await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body.state, 'cancelled');
  assert.equal(await client.exited, 1, 'the device stops when its job is cancelled');
  assert.match(client.output(), /the server ended job \d+/);
});

test('a device not heard from for 90 s is shown as stale, and comes back when it polls', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await server.device('POST', '/api/register-device', { mac: MAC });
  const page = await openPage(t, server);
  const row = page.locator(ROW);
  assert.equal(await row.getAttribute('data-state'), 'ready');
  await sql`UPDATE devices SET last_seen_at = last_seen_at - 120000`.execute(server.server.services.database.db);
  await page.locator(`${ROW}[data-state="stale"]`).waitFor({ timeout: 10_000 });
  assert.match((await row.textContent()) ?? '', /Stale/);
  await server.device('GET', `/api/device-action-poll?mac=${MAC}`);
  await page.locator(`${ROW}[data-state="ready"]`).waitFor({ timeout: 5_000 });
});
