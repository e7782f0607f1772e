import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser, logIn } from '../helpers/browser.js';
import { addImage, registerDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const PASSWORD = 'rules-page-password';

let browser: Browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

test('the Rules page lists rules in order, switches and moves them, pauses the line and shows held devices', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await addImage(t, server, 'raspios', 100_000, { makeDefault: true });
  const first = (await server.admin('POST', '/api/rules', { name: 'hold-new', action: 'hold' })).body;
  await server.admin('POST', '/api/rules', { name: 'cm4-line', mac: 'dc:a6:32', model: 'Compute Module 4', action: 'deploy', limit: 5 });
  await registerDevice(server, 'dc:a6:32:00:00:01');

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  await logIn(page, server.url, PASSWORD);
  await page.click('nav a[href="/rules"]');
  await page.waitForSelector('h1:text("Rules")');
  assert.deepEqual(await page.locator('table.rules tbody th').allTextContents(), ['hold-new', 'cm4-line']);
  assert.match(await page.locator(`#rule-${first.id} + tr`).innerText(), /MAC dc:a6:32, model contains "Compute Module 4"\s+deploy the default image\s+awaited up to 10 min; hook: boot partition at \/boot\/firmware \(Bookworm and later\)\s+0 of 5/);
  assert.match(await page.locator('ul.held').innerText(), /dc:a6:32:00:00:01, by rule hold-new: rule 'hold-new' holds new devices for a person/);

  // Move the deploy rule up: the list and the server agree.
  await page.locator('table.rules tbody tr').nth(1).getByRole('button', { name: 'Up' }).click();
  await waitFor('the new order', async () => (await page.locator('table.rules tbody th').allTextContents()).join() === 'cm4-line,hold-new');
  assert.deepEqual((await server.admin('GET', '/api/rules')).body.rules.map((rule: { name: string }) => rule.name), ['cm4-line', 'hold-new']);

  await page.locator(`#rule-${first.id}`).getByRole('button', { name: 'Turn off' }).click();
  await page.waitForSelector(`#rule-${first.id} .badge:text("off")`);
  assert.equal((await server.admin('GET', `/api/rules/${first.id}`)).body.enabled, false);

  await page.getByRole('button', { name: 'Pause line' }).click();
  await page.waitForSelector('#line-state:has-text("Line paused")');
  assert.equal((await server.admin('GET', '/api/line')).body.paused, true);
  await page.goto(`${server.url}/`);
  assert.match(await page.locator('[data-line-paused]').innerText(), /^The line is paused \(since .+\): rules order nothing/);
  assert.match(await page.locator('[data-rule-hold]').innerText(), /^Held by rule hold-new: rule 'hold-new' holds new devices for a person$/);
  await page.goto(`${server.url}/rules`);
  await page.getByRole('button', { name: 'Resume line' }).click();
  await page.waitForSelector('#line-state:has-text("Line running")');
  assert.equal((await server.admin('GET', '/api/line')).body.paused, false);
});
