import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import type { Browser, Locator, Page } from 'playwright-core';
import { launchBrowser, loggedInPage, screenshot } from '../helpers/browser.js';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { fatFile, importImage, makePartitionedImage, scratch } from '../device-files/helpers.js';
import { manualClock } from '../first-boot/helpers.js';

const PASSWORD = 'first-boot-on-the-dashboard';
/** Deployed by a person who waits for its first boot; the installed OS calls back. */
const A = 'dc:a6:32:00:13:a1';
/** Deployed by a rule; its first boot never calls back. */
const B = 'dc:a6:32:00:13:b2';
const rowOf = (page: Page, mac: string) => page.locator(`#device-${mac.replaceAll(':', '')}`);
const OS = 'Debian GNU/Linux 13 (trixie)';
const KERNEL = '6.12.0-rpi-v8';

let browser: Browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

/** A server on a clock the test moves, with the image 'os' (FAT partition 1 holds /cmdline.txt). */
async function firstBootServer(t: TestContext) {
  const dir = scratch(t);
  const clock = manualClock();
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD, clock });
  await importImage(server, makePartitionedImage(dir), 'os');
  return { dir, clock, server };
}

/** A logged-in dashboard page of its own. */
const openPage = (t: TestContext, server: TestServer, viewport?: { width: number; height: number }) => loggedInPage(browser, t, server.url, PASSWORD, { viewport });

/** The real client (with mtools and debugfs) on a fresh fake eMMC; returns its run and the eMMC file. */
async function startDevice(t: TestContext, server: TestServer, dir: string, mac: string) {
  const emmc = join(dir, `${mac.replaceAll(':', '')}.img`);
  await makeFakeEmmc(emmc, 64 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac, env: { WITH_FILE_TOOLS: '1', DEVICE_SERIAL: `10000000${mac.replaceAll(':', '').slice(-8)}` } });
  return { client, emmc };
}

const text = async (locator: Locator) => ((await locator.textContent()) ?? '').replace(/\s+/g, ' ').trim();

async function assertNoSidewaysScroll(page: Page, where: string) {
  const [scroll, inner] = (await page.evaluate('[document.documentElement.scrollWidth, window.innerWidth]')) as [number, number];
  assert.ok(scroll <= inner, `${where}: nothing pushes the page wider than the window (${scroll} > ${inner})`);
}

test('Wait for first boot in the Deploy dialog: the row says awaiting with the time left, then confirmed live; History and Records say so', async (t) => {
  const { dir, clock, server } = await firstBootServer(t);
  const page = await openPage(t, server);
  const { client, emmc } = await startDevice(t, server, dir, A);
  const row = rowOf(page, A);
  await row.waitFor({ timeout: 15_000 });

  await row.getByRole('button', { name: 'Deploy…' }).click();
  const dialog = page.getByRole('dialog', { name: `Deploy to ${A}` });
  await dialog.waitFor();
  const wait = dialog.getByLabel('Wait for first boot');
  const minutes = dialog.getByLabel('Timeout (minutes)');
  const hook = dialog.getByLabel('Hook');
  assert.equal(await wait.isChecked(), false, "off by default for a person's order");
  assert.equal(await minutes.inputValue(), '10');
  assert.equal(await minutes.isDisabled(), true, 'the timeout counts only with the box ticked');
  assert.equal(await hook.isDisabled(), true);
  assert.deepEqual(await hook.locator('option').allTextContents(), [
    'boot partition at /boot/firmware (Bookworm and later)',
    'boot partition at /boot (Bullseye and earlier)',
    'none: the profile carries the hook',
  ]);
  assert.equal(await hook.inputValue(), 'cmdline');

  // Hook "none" without a profile carrying one: the server's sentence, in the dialog; nothing queued.
  await wait.check();
  assert.equal(await minutes.isEnabled(), true);
  await hook.selectOption('none');
  await dialog.getByRole('button', { name: 'Overwrite eMMC' }).click();
  const error = dialog.locator('[data-dialog-error]');
  await error.waitFor();
  // The API's own 400 sentence for the same order, word for word.
  const refused = await server.admin('POST', `/api/devices/${A}/deploy`, { image: 'os', confirm_boot: true, first_boot_hook: 'none' });
  assert.equal(refused.status, 400);
  assert.match(refused.body.message, /^first_boot_hook is none, but .*\{\{first_boot_token\}\}/);
  assert.equal(await error.textContent(), refused.body.message);
  assert.equal(await dialog.isVisible(), true, 'the dialog stays open');
  assert.equal((await server.admin('GET', '/api/jobs')).body.jobs.length, 0, 'nothing was queued');

  // At 800 px the dialog with its first-boot fields fits the window.
  await page.setViewportSize({ width: 800, height: 900 });
  const box = (await dialog.boundingBox())!;
  assert.ok(box.x >= 0 && box.x + box.width <= 800, `the dialog fits 800 px (${box.x} + ${box.width})`);
  assert.equal(await dialog.evaluate((element) => element.scrollWidth <= element.clientWidth), true, 'nothing in the dialog scrolls sideways');
  const hookBox = (await hook.boundingBox())!;
  assert.ok(hookBox.x + hookBox.width <= box.x + box.width, 'the hook select stays inside the dialog');
  await screenshot(page, 'deploy-dialog-first-boot');
  await page.setViewportSize({ width: 1280, height: 900 });

  await hook.selectOption('cmdline');
  await minutes.fill('15');
  await dialog.getByRole('button', { name: 'Overwrite eMMC' }).click();
  await dialog.waitFor({ state: 'hidden' });
  const [ordered] = (await server.admin('GET', `/api/jobs?device=${A}`)).body.jobs;
  assert.deepEqual([ordered.first_boot.timeout_seconds, ordered.first_boot.hook], [900, 'cmdline'], '15 minutes are ordered as 900 s');

  // The real client deploys; the row says the first boot is awaited, and for how long.
  assert.equal(await client.exited, 0, client.output());
  const awaiting = row.locator('[data-first-boot="awaiting"]');
  await awaiting.waitFor({ timeout: 15_000 });
  assert.equal(await text(awaiting), 'awaiting first boot, 15 min left');
  assert.match(await text(row.locator('.job-cell')), /^✓ Deploy ok · .* read back by the device · awaiting first boot, 15 min left · \d{4}-\d\d-\d\d /);
  await page.evaluate('window.notReloaded = true');
  clock.advance(60_000);
  await row.locator('[data-first-boot="awaiting"]', { hasText: '14 min left' }).waitFor({ timeout: 10_000 });

  // What the installed OS's hook sends: the token the deploy wrote into the boot partition.
  const script = fatFile(emmc, '/cm4prov-firstboot.sh');
  const token = /^TOKEN='([^']+)'$/m.exec(script)?.[1];
  assert.ok(token, 'the hook script carries its one-time token');
  assert.match(fatFile(emmc, '/cmdline.txt'), /systemd\.run=\/boot\/firmware\/cm4prov-firstboot\.sh/, 'the cmdline hook (/boot/firmware) was chosen');
  const call = await server.device('POST', '/api/first-boot', { token, mac: A, os_release: OS, kernel: KERNEL });
  assert.equal(call.status, 200, call.text);

  const confirmed = row.locator('[data-first-boot="confirmed"]');
  await confirmed.waitFor({ timeout: 10_000 });
  assert.equal(await text(confirmed), `confirmed: booted ${OS} (${KERNEL})`);
  assert.equal(await row.locator('[data-first-boot="awaiting"]').count(), 0);
  assert.equal(await page.evaluate('window.notReloaded'), true, 'the row changed live, without a reload');
  await screenshot(page, 'devices-first-boot-confirmed');

  await page.getByRole('link', { name: 'History' }).click();
  const historyRow = page.locator(`#job-${ordered.id}`);
  assert.equal(await text(historyRow.locator('[data-first-boot]')), `confirmed: booted ${OS} (${KERNEL})`);
  assert.equal(await historyRow.locator('[data-first-boot]').getAttribute('title'), `ok · confirmed: booted ${OS} (${KERNEL})`);
  // As it reads on the screen: the badge, the verification, then the first boot on a line of its own.
  const result = (await historyRow.locator('[data-label="Result"]').innerText()).replace(/[ \t]+/g, ' ');
  assert.match(result, new RegExp(`^ok\\s+.* read back by the device\\n\\s*confirmed: booted ${OS.replace(/[()]/g, '\\$&')}`));

  await page.goto(`${server.url}/records?search=${A}`);
  await page.locator('details.record summary').click();
  const recordJob = page.locator(`#record-job-${ordered.id}`);
  await recordJob.waitFor();
  assert.equal(await text(recordJob.locator('[data-first-boot="confirmed"]')), `confirmed: booted ${OS} (${KERNEL})`);
  await page.setViewportSize({ width: 800, height: 900 });
  await assertNoSidewaysScroll(page, 'Records at 800 px');
});

test('the Rules form round-trips the first boot; a rule deploy nobody confirms is flagged on its row, netboot on, held with the reason', async (t) => {
  const { dir, clock, server } = await firstBootServer(t);
  const page = await openPage(t, server);
  await page.goto(`${server.url}/rules`);
  const form = page.locator('#rule-add');
  const confirm = form.getByLabel('Confirm first boot');
  const minutes = form.getByLabel('Timeout (minutes)');
  const hook = form.getByLabel('First-boot hook');
  assert.equal(await confirm.isChecked(), true, 'checked by default for a new rule');
  assert.equal(await minutes.inputValue(), '10');
  assert.equal(await hook.inputValue(), 'cmdline');

  // A rule for B only that waits 2 minutes for a hook in /boot.
  await form.getByLabel('Name').fill('line-b');
  await form.getByLabel('Does').selectOption('deploy');
  await form.getByLabel('Image').selectOption('os');
  await form.getByLabel('MAC').fill(B);
  await minutes.fill('2');
  await hook.selectOption('cmdline-boot');
  await form.getByRole('button', { name: 'Add rule' }).click();
  const lineB = page.locator('#rules-body tr', { has: page.locator('th', { hasText: 'line-b' }) });
  await lineB.waitFor();
  assert.equal(await text(lineB.locator('[data-label="First boot"]')), 'awaited up to 2 min; hook: boot partition at /boot (Bullseye and earlier)');

  // Unticked: the timeout and hook are not sent, and the rule says its deploys wait for nothing.
  assert.equal(await confirm.isChecked(), true, 'the form starts afresh, ticked');
  await form.getByLabel('Name').fill('no-wait');
  await form.getByLabel('MAC').fill('dc:a6:33');
  await confirm.uncheck();
  assert.equal(await minutes.isDisabled(), true);
  assert.equal(await hook.isDisabled(), true);
  await form.getByRole('button', { name: 'Add rule' }).click();
  const noWait = page.locator('#rules-body tr', { has: page.locator('th', { hasText: 'no-wait' }) });
  await noWait.waitFor();
  assert.equal(await text(noWait.locator('[data-label="First boot"]')), 'not asked for');
  assert.equal(await confirm.isChecked(), true, 'ticked again after the reset');
  assert.equal(await minutes.isEnabled(), true, 'and its timeout usable again');

  const rules = (await server.admin('GET', '/api/rules')).body.rules as Array<{ name: string; confirm_boot: boolean; confirm_timeout: number | null; first_boot_hook: string }>;
  assert.deepEqual(
    rules.map((rule) => [rule.name, rule.confirm_boot, rule.confirm_timeout, rule.first_boot_hook]),
    [['line-b', true, 120, 'cmdline-boot'], ['no-wait', false, null, 'cmdline']],
  );
  await screenshot(page, 'rules-first-boot');
  await page.setViewportSize({ width: 800, height: 900 });
  await assertNoSidewaysScroll(page, 'Rules at 800 px');
  await page.setViewportSize({ width: 1280, height: 900 });

  // B registers; the rule deploys it; its first boot is awaited for 2 minutes.
  await page.goto(server.url);
  const { client, emmc } = await startDevice(t, server, dir, B);
  const row = rowOf(page, B);
  await row.waitFor({ timeout: 15_000 });
  assert.equal(await client.exited, 0, client.output());
  assert.match(fatFile(emmc, '/cmdline.txt'), /systemd\.run=\/boot\/cm4prov-firstboot\.sh /, "the rule's hook (/boot) was written");
  await row.locator('[data-first-boot="awaiting"]', { hasText: 'awaiting first boot, 2 min left' }).waitFor({ timeout: 15_000 });
  assert.equal(await row.locator('[data-first-boot="not_confirmed"]').count(), 0);
  assert.match(await text(row), /Next boot: eMMC/, 'after the ok deploy it boots its eMMC');
  await page.evaluate('window.notReloaded = true');

  // No call: the deadline passes on the server's clock, and the watchdog's check runs.
  clock.advance(121_000);
  await server.server.services.firstBoot.expireDue();
  const flag = row.locator('[data-first-boot="not_confirmed"]');
  await flag.waitFor({ timeout: 10_000 });
  assert.equal(
    await text(flag),
    '! First boot not confirmed: no first-boot call within 2 min; netboot is on again, so its next boot brings it back into provisioning',
  );
  assert.match((await flag.getAttribute('class')) ?? '', /\bresult-unconfirmed\b/, 'flagged like a job sent but never confirmed');
  assert.match(await text(row), /Next boot: netboot/);
  const [job] = (await server.admin('GET', `/api/jobs?device=${B}`)).body.jobs;
  assert.equal(
    await text(row.locator('[data-rule-hold]')),
    `Held by rule line-b: its deploy (job ${job.id}) was not confirmed: no first-boot call within 2 min`,
  );
  assert.equal(await page.evaluate('window.notReloaded'), true, 'the row changed live, without a reload');
  await screenshot(page, 'devices-first-boot-not-confirmed');

  await page.setViewportSize({ width: 800, height: 900 });
  await assertNoSidewaysScroll(page, 'Devices at 800 px');
  assert.ok(((await row.boundingBox())?.width ?? Infinity) <= 800, 'the row fits the screen');
  await page.goto(`${server.url}/history`);
  const historyRow = page.locator(`#job-${job.id}`);
  const note = historyRow.locator('[data-first-boot="not_confirmed"]');
  assert.equal(await text(note), 'not confirmed: no first-boot call within 2 min');
  assert.match((await note.getAttribute('class')) ?? '', /\bresult-unconfirmed\b/);
  await assertNoSidewaysScroll(page, 'History at 800 px');
  await screenshot(page, 'history-first-boot');
  await page.goto(`${server.url}/rules`);
  await assertNoSidewaysScroll(page, 'Rules with a held device at 800 px');
  assert.match(await text(page.locator('ul.held')), new RegExp(`${B}, by rule line-b: its deploy \\(job ${job.id}\\) was not confirmed`));
});
