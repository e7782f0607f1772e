import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import type { Browser, Locator, Page } from 'playwright-core';
import { launchBrowser, loggedInPage } from '../helpers/browser.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const PASSWORD = 'a-newcomers-first-hour';
const MiB = 1024 * 1024;
const SILENT = 'dc:a6:32:00:00:0a';
const FRESH = 'dc:a6:32:00:00:0b';
const NETBOOT_ONLY = 'dc:a6:32:00:00:0c';
const rowOf = (mac: string) => `#device-${mac.replaceAll(':', '')}`;

let browser: Browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

/** Starts at the real time (so the browser's "N s ago" agrees) and moves only when told. */
function manualClock() {
  let now = Date.now();
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

/** A logged-in dashboard page of its own. */
const openPage = (t: TestContext, server: TestServer, viewport?: { width: number; height: number }) => loggedInPage(browser, t, server.url, PASSWORD, { viewport });

const activeJob = async (server: TestServer, mac: string) => (await server.admin('GET', `/api/devices/${mac}`)).body.active_job;

test('work for a device whose client is not polling can be ordered, but the dialog and the row say it waits for the client', async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD, clock });
  await addImage(t, server, 'raspios', MiB, { makeDefault: true });
  await registerDevice(server, SILENT);
  clock.advance(120_000); // past STALE_AFTER_MS (90 s) for SILENT only
  await registerDevice(server, FRESH);
  // Seen by DHCP/TFTP only: no client has registered.
  await server.server.services.database.db
    .insertInto('devices')
    .values({ mac: NETBOOT_ONLY, ip: '10.20.50.120', first_seen_at: clock.now(), last_seen_at: clock.now(), boot_stage: 'loaded kernel8.img', boot_stage_at: clock.now() })
    .execute();
  const silentSeenAt = (await server.admin('GET', `/api/devices/${SILENT}`)).body.last_seen_at;
  const page = await openPage(t, server);

  const silent = page.locator(rowOf(SILENT));
  assert.equal(await silent.getAttribute('data-state'), 'stale');
  assert.match((await silent.locator('[data-silence]').textContent()) ?? '', /^Client not polling; last heard \d+ (s|min) ago$/);
  const fresh = page.locator(rowOf(FRESH));
  assert.match((await fresh.textContent()) ?? '', /Waiting for work/);
  assert.equal(await fresh.locator('[data-silence]').count(), 0, 'a device that polls has no silence note');

  // Deploy to the silent device: warned, and keeping the eMMC orders nothing.
  await silent.getByRole('button', { name: 'Deploy…' }).click();
  const silentDialog = page.getByRole('dialog', { name: `Deploy to ${SILENT}` });
  await silentDialog.waitFor();
  const warning = silentDialog.locator('[data-poll-warning]');
  assert.match(
    (await warning.textContent())?.replace(/\s+/g, ' ') ?? '',
    new RegExp(`^${SILENT} was last heard from \\d+ (s|min) ago \\(.+\\): its client is not polling\\. The deploy can be ordered, but starts only when its client polls again: netboot the device, or start device/provisioning-client\\.sh on it\\.$`),
  );
  assert.equal(await warning.locator('time[data-relative]').getAttribute('datetime'), silentSeenAt);
  assert.match((await silentDialog.getByRole('button', { name: 'Overwrite eMMC' }).getAttribute('aria-describedby')) ?? '', /poll-warning/);
  await silentDialog.getByRole('button', { name: 'Keep the eMMC' }).click();
  await silentDialog.waitFor({ state: 'hidden' });
  assert.equal(await activeJob(server, SILENT), null);

  // Deploy to a device that polls: no warning.
  await fresh.getByRole('button', { name: 'Deploy…' }).click();
  const freshDialog = page.getByRole('dialog', { name: `Deploy to ${FRESH}` });
  await freshDialog.waitFor();
  assert.equal(await freshDialog.locator('[data-poll-warning]').count(), 0);
  assert.doesNotMatch((await freshDialog.textContent()) ?? '', /not polling|starts only when/);
  await freshDialog.getByRole('button', { name: 'Keep the eMMC' }).click();
  await freshDialog.waitFor({ state: 'hidden' });

  // Backup of the silent device asks first; "Do not queue it" queues nothing, the other button does.
  await silent.getByRole('button', { name: 'Backup' }).click();
  const confirm = page.getByRole('dialog', { name: 'Please confirm' });
  assert.equal(
    await confirm.locator('p').textContent(),
    `${SILENT} has not been heard from for more than 90 s: its client is not polling. The backup starts only when it polls again: netboot the device, or start device/provisioning-client.sh on it. Queue it anyway?`,
  );
  await confirm.getByRole('button', { name: 'Do not queue it' }).click();
  await confirm.waitFor({ state: 'hidden' });
  assert.equal(await activeJob(server, SILENT), null);
  await silent.getByRole('button', { name: 'Backup' }).click();
  await confirm.getByRole('button', { name: 'Queue the backup' }).click();
  await page.getByText(`Backup of ${SILENT} queued; it starts when its client polls`).waitFor();
  assert.equal((await activeJob(server, SILENT))?.state, 'queued');
  await page.locator(`${rowOf(SILENT)}[data-state="queued"]`).waitFor({ timeout: 10_000 });
  assert.match((await silent.locator('[data-silence]').textContent()) ?? '', /^Client not polling/, 'the queued job says why it has not started');

  // Backup of a device that polls is queued at once.
  await fresh.getByRole('button', { name: 'Backup' }).click();
  await page.getByText(`Backup of ${FRESH} queued`).waitFor();
  assert.equal(await page.locator('dialog[open]').count(), 0, 'no question asked');
  assert.equal((await activeJob(server, FRESH))?.state, 'queued');

  // A device seen only netbooting: warned, and the deploy is placed.
  const netbootOnly = page.locator(rowOf(NETBOOT_ONLY));
  await netbootOnly.getByRole('button', { name: 'Deploy…' }).click();
  const netbootDialog = page.getByRole('dialog', { name: `Deploy to ${NETBOOT_ONLY}` });
  await netbootDialog.waitFor();
  assert.match(
    (await netbootDialog.locator('[data-poll-warning]').textContent())?.replace(/\s+/g, ' ') ?? '',
    new RegExp(`^${NETBOOT_ONLY} has not run its provisioning client yet; it was last seen \\d+ s ago \\(.+\\); its last boot step: loaded kernel8\\.img\\. The deploy can be ordered, but starts only when its client polls: netboot the device`),
  );
  await netbootDialog.getByRole('button', { name: 'Overwrite eMMC' }).click();
  await page.getByText(`Deploy to ${NETBOOT_ONLY} queued; it starts when its client polls`).waitFor();
  assert.equal((await activeJob(server, NETBOOT_ONLY))?.state, 'queued');
});

test('the Deploy dialog lists an image larger than the eMMC disabled, with the reason, and preselects one that fits', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await registerDevice(server, MAC, { storage_bytes: 2 * MiB });
  await addImage(t, server, 'fits', MiB);
  await addImage(t, server, 'too-big', 3 * MiB, { makeDefault: true });
  const page = await openPage(t, server);
  await page.locator(rowOf(MAC)).getByRole('button', { name: 'Deploy…' }).click();
  const dialog = page.getByRole('dialog', { name: `Deploy to ${MAC}` });
  await dialog.waitFor();
  const select = dialog.getByLabel('Image', { exact: true });
  assert.equal(await select.inputValue(), 'fits', 'the default does not fit, so the image that does is chosen');
  const tooBig = select.locator('option[value="too-big"]');
  assert.equal(await tooBig.isDisabled(), true);
  assert.equal(await tooBig.textContent(), 'too-big: 3.00 MiB, larger than this eMMC');
  assert.equal(await select.locator('option[value="fits"]').isDisabled(), false);
});

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}
const middle = (box: Box) => box.y + box.height / 2;

async function boxOf(locator: Locator): Promise<Box> {
  const box = await locator.boundingBox();
  assert.ok(box, 'the element is rendered');
  return box;
}

/** The top bar is one row: links side by side and fully visible, nothing overlapping. */
async function assertOneRowHeader(page: Page, where: string) {
  const header = await boxOf(page.locator('header.topbar'));
  const brand = await boxOf(page.locator('header .brand'));
  const nav = await boxOf(page.locator('header nav'));
  const logout = await boxOf(page.getByRole('button', { name: 'Log out' }));
  const links = await Promise.all((await page.locator('header nav a').all()).map(boxOf));
  assert.equal(links.length, 7);
  for (const link of links) {
    assert.ok(Math.abs(link.y - links[0]!.y) <= 1, `${where}: nav links share one row`);
    assert.ok(link.x >= nav.x - 0.5 && link.x + link.width <= nav.x + nav.width + 0.5, `${where}: each nav link is fully in view`);
  }
  // A second row would add at least one more link's height.
  assert.ok(header.height < 2 * links[0]!.height, `${where}: the header (${header.height}px) is one row of links (${links[0]!.height}px)`);
  assert.ok(brand.x + brand.width <= nav.x && nav.x + nav.width <= logout.x, `${where}: brand, nav and Log out do not overlap`);
  assert.ok(Math.abs(middle(logout) - middle(links[0]!)) <= 4, `${where}: Log out sits in the same row`);
}

/** Each label in `form` is level with its control (same row, centres within 4 px) and left of it. */
async function assertLabelsBesideControls(form: Locator, where: string) {
  for (const label of await form.locator('label').all()) {
    const id = await label.getAttribute('for');
    const control = form.locator(`[id="${id}"]`);
    const [l, c] = [await boxOf(label), await boxOf(control)];
    const text = (await label.textContent())?.trim();
    assert.ok(Math.abs(middle(l) - middle(c)) <= 4, `${where}: "${text}" is level with its control (${middle(l)} vs ${middle(c)})`);
    const type = await control.getAttribute('type');
    if (type !== 'checkbox') assert.ok(l.x + l.width <= c.x, `${where}: "${text}" is left of its control`);
  }
}

async function assertNoSidewaysScroll(page: Page, where: string) {
  assert.equal(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), true, `${where}: nothing pushes the page wider than the window`);
}

for (const width of [800, 1280]) {
  test(`at ${width} px the header is one row, form labels sit beside their controls, and no page scrolls sideways`, async (t) => {
    const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
    await addImage(t, server, 'reterminal-bookworm-2026.11', MiB, { makeDefault: true });
    await registerDevice(server, MAC, { serial: '10000000c0ffee01', model: 'Raspberry Pi Compute Module 4 Rev 1.1' });
    await registerDevice(server, FRESH);
    await server.admin('POST', `/api/devices/${FRESH}/deploy`, {});
    const page = await openPage(t, server, { width, height: 900 });

    for (const [name, path] of [['Devices', '/'], ['Rules', '/rules'], ['Images', '/images'], ['Backups', '/backups'], ['Records', '/records'], ['History', '/history'], ['Netboot', '/netboot']] as const) {
      await page.goto(`${server.url}${path}`);
      const where = `${name} at ${width} px`;
      await assertOneRowHeader(page, where);
      await assertNoSidewaysScroll(page, where);
      const filters = page.locator('form.filters');
      if (await filters.count()) await assertLabelsBesideControls(filters, where);
    }

    await page.goto(`${server.url}/images`);
    const upload = page.locator('#image-upload');
    await assertLabelsBesideControls(upload, `upload form at ${width} px`);
    const lefts = await Promise.all(['#upload-file', '#upload-bmap', '#upload-name', '#upload-default'].map(async (id) => (await boxOf(upload.locator(id))).x));
    for (const left of lefts) assert.ok(Math.abs(left - lefts[0]!) <= 1, `upload controls share one left edge (${lefts.join(', ')})`);
  });
}
