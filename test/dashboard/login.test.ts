import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser, logIn, screenshot } from '../helpers/browser.js';
import { MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';

const PASSWORD = 'provision-all-the-things';
let browser: Browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

test('every page needs a login; the login page comes back to the page asked for', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  const page = await browser.newPage();
  t.after(() => page.close());
  for (const path of ['/', '/images', '/backups', '/history']) {
    const response = await page.goto(`${server.url}${path}`);
    assert.equal(new URL(page.url()).pathname, '/login', path);
    assert.equal(response?.status(), 200);
  }
  await screenshot(page, 'login');
  await page.getByLabel('Admin password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${server.url}/history`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'History');
});

test('a wrong password is refused with a clear message, and the cookie is HttpOnly and SameSite=Strict', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(`${server.url}/login`);
  await page.getByLabel('Admin password').fill('guess-1234');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').waitFor();
  assert.equal((await page.getByRole('alert').textContent())?.trim(), 'Wrong password. Try again.');
  assert.equal(await page.getByLabel('Admin password').getAttribute('aria-invalid'), 'true');
  assert.deepEqual(await context.cookies(), [], 'no session for a wrong password');

  await logIn(page, server.url, PASSWORD);
  const [cookie] = await context.cookies();
  assert.equal(cookie?.name, 'cm4prov_session');
  assert.equal(cookie?.httpOnly, true);
  assert.equal(cookie?.sameSite, 'Strict');

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(/\/login$/);
  await page.goto(`${server.url}/`);
  assert.equal(new URL(page.url()).pathname, '/login', 'logged out for real');
});

test('each failed login from an address waits longer before answering', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  const waits = [1, 2, 3].map(() => server.server.services.loginThrottle.failed('10.20.50.66'));
  assert.deepEqual(waits, [500, 1000, 2000]);
  server.server.services.loginThrottle.succeeded('10.20.50.66');
  assert.equal(server.server.services.loginThrottle.failed('10.20.50.66'), 500);
});

test('without a password the login page says how to set one, and `cm4prov admin password` sets it', async (t) => {
  const server = await startTestServer(t);
  const page = await browser.newPage();
  t.after(() => page.close());
  await page.goto(`${server.url}/login`);
  assert.match((await page.getByRole('alert').textContent()) ?? '', /No admin password yet.*cm4prov admin password/s);
  await server.server.services.passwords.set(PASSWORD);
  await logIn(page, server.url, PASSWORD);
});

test('a state-changing request with the session cookie but without its CSRF token is refused', async (t) => {
  const server = await startTestServer(t, {}, { adminPassword: PASSWORD });
  await registerDevice(server);
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  await logIn(page, server.url, PASSWORD);

  const forged = await page.request.post(`${server.url}/api/devices/${MAC}/backup`);
  assert.equal(forged.status(), 403);
  assert.match((await forged.json()).message, /lacks the CSRF token/);
  const wrong = await page.request.post(`${server.url}/api/devices/${MAC}/backup`, { headers: { 'x-csrf-token': 'not-it' } });
  assert.equal(wrong.status(), 403);
  const logout = await page.request.post(`${server.url}/logout`, { form: {} });
  assert.equal(logout.status(), 403, 'logging out needs the token too');
  assert.equal((await server.admin('GET', '/api/jobs')).body.jobs.length, 0, 'nothing was queued');

  const token = await page.locator('meta[name="csrf-token"]').getAttribute('content');
  const genuine = await page.request.post(`${server.url}/api/devices/${MAC}/backup`, { headers: { 'x-csrf-token': token! } });
  assert.equal(genuine.status(), 201);
  const reading = await page.request.get(`${server.url}/api/jobs`);
  assert.equal(reading.status(), 200, 'reads need no CSRF token');
});
