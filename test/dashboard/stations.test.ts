import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Locator } from 'playwright-core';
import { stationsPage } from '../../src/dashboard/views/stations.js';
import { createImageCopyStore } from '../../src/images/copies-store.js';
import { createStationStore, type StationsView } from '../../src/stations/index.js';
import { launchBrowser, loggedInPage, screenshot } from '../helpers/browser.js';
import { startCli } from '../helpers/cli.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { freePort } from '../helpers/ports.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// The Stations page (issue 15): station line-a in this process, line-b a real `cm4prov serve` of
// its own on the same PostgreSQL (it fetches line-a's images over loopback), and line-c a station
// that once joined and is long gone, its rows written through the stores.

const PASSWORD = 'stations-page-password';
const MiB = 1024 * 1024;
const HOUR = 3_600_000;

let browser: Browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

const text = async (locator: Locator) => (await locator.innerText()).replace(/\s+/g, ' ').trim();

test('on PostgreSQL the page lists every station, up or down, and where each image is copied; it follows copies and stations live', async (t) => {
  const postgres = startTestPostgres(t);
  const portA = await freePort();
  const a = await startTestServer(t, { database: postgres.url, station: 'line-a', port: portA, stationUrl: `http://127.0.0.1:${portA}` }, { adminPassword: PASSWORD });
  const { services } = a.server;
  await addImage(t, a, 'os-1', 3 * MiB);
  await addImage(t, a, 'os-2', 2 * MiB);
  await services.caches.idle(); // their chunk streams, which the other stations fetch

  const portB = await freePort();
  const b = startCli(t, [
    'serve', '--host', '127.0.0.1', '--port', String(portB), '--data-dir', join(tempDir(t), 'data'), '--database', postgres.url,
    '--station', 'line-b', '--station-url', `http://127.0.0.1:${portB}`, '--log-level', 'warn',
  ], {});
  await waitFor('line-b answering', () => fetch(`http://127.0.0.1:${portB}/api/stations`).then((r) => r.status === 401, () => false));

  // line-c: no --station-url; last heard from two hours ago, in the middle of fetching os-1, and
  // after failing to fetch os-2.
  const { db } = services.database;
  const copies = createImageCopyStore(db);
  const [os1, os2] = [await services.images.requireImage('os-1'), await services.images.requireImage('os-2')];
  const gone = Date.now() - 2 * HOUR;
  await createStationStore(db).announce('line-c', null, gone);
  await copies.startFetch(os1.id, 'line-c', 'line-a', 4_000_000, gone);
  await copies.progress(os1.id, 'line-c', 1_800_000, gone);
  await copies.startFetch(os2.id, 'line-c', 'line-a', MiB, gone);
  await copies.fail(os2.id, 'line-c', 'chunk 3 (at byte 786432) from line-a does not hash to the map\'s sha256: the copy there is damaged', gone);
  await copies.setBroken(os2.id, 'line-c', 'its file was changed: its first or last MiB differ from what was imported');

  const page = await loggedInPage(browser, t, a.url, PASSWORD);
  await page.getByRole('link', { name: 'Stations' }).click();
  await page.waitForURL(`${a.url}/stations`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Stations');

  const own = page.locator('#this-station');
  assert.match(await text(own), /^Name line-a Database PostgreSQL, shared with the stations below Channel connected: live updates from other stations arrive as they happen Parked polls 0 /);

  const row = (name: string) => page.locator(`#station-${name}`);
  assert.match(await text(row('line-a')), /^line-a this station up \d+ s ago http:\/\/127\.0\.0\.1:\d+ \d{4}-\d\d-\d\d/);
  assert.match(await text(row('line-b')), new RegExp(`^line-b up \\d+ s ago http://127\\.0\\.0\\.1:${portB} \\d{4}-`));
  assert.match(await text(row('line-c')), /^line-c down 2 h ago no --station-url: others cannot fetch from it \d{4}-/);

  // Copies: line-b fetches both images from line-a (the page follows it); line-c's stay as they were.
  const copy = (image: { id: number }, station: string) => page.locator(`#copies-${image.id} li[data-station="${station}"]`);
  assert.equal(await text(copy(os1, 'line-a')), 'line-a: ✓ complete');
  assert.equal(await text(copy(os1, 'line-c')), 'line-c: was fetching from line-a: 45% (1.72 MiB of 3.81 MiB) when last heard from');
  assert.equal(
    await text(copy(os2, 'line-c')),
    "line-c: damaged: its file was changed: its first or last MiB differ from what was imported; fetch from line-a failed: chunk 3 (at byte 786432) from line-a does not hash to the map's sha256: the copy there is damaged",
  );
  await copy(os1, 'line-b').filter({ hasText: 'line-b: ✓ complete' }).waitFor({ timeout: 30_000 });
  await copy(os2, 'line-b').filter({ hasText: 'line-b: ✓ complete' }).waitFor({ timeout: 30_000 });

  // An image added now appears without a reload, and so does line-b's copy of it once fetched.
  await page.evaluate('window.unreloaded = true'); // gone if the page is loaded again
  const third = await addImage(t, a, 'os-3', MiB);
  const os3 = await services.images.requireImage(third.name);
  await copy(os3, 'line-a').filter({ hasText: '✓ complete' }).waitFor({ timeout: 30_000 });
  await copy(os3, 'line-b').filter({ hasText: 'line-b: ✓ complete' }).waitFor({ timeout: 30_000 });

  // A device's long-poll parked here is counted without a reload too.
  await registerDevice(a);
  const polling = new AbortController();
  t.after(() => polling.abort());
  fetch(`${a.url}/api/device-action-poll?mac=${MAC}&wait=120`, { signal: polling.signal }).catch(() => undefined);
  await own.filter({ hasText: /Parked polls\s*1 \(/ }).waitFor({ timeout: 30_000 });

  // line-b stops; once it is unheard of for longer than 30 s the page says it is down, by itself.
  b.kill('SIGTERM');
  assert.equal(await b.exited, 0);
  await createStationStore(db).heartbeat('line-b', Date.now() - 90_000); // "1 min" from 60 s to 120 s after it: the redraws below fall inside
  await row('line-b').filter({ hasText: 'down' }).waitFor({ timeout: 30_000 });
  assert.match(await text(row('line-b')), /^line-b down 1 min ago http:/);
  assert.equal(await page.evaluate('window.unreloaded'), true, 'the page was never reloaded');
  await screenshot(page, 'stations');

  // At 800 px the header, with Stations as its eighth page, is still one row of links all in
  // view, and the tables turn into cards: nothing pushes the page sideways.
  await page.setViewportSize({ width: 800, height: 900 });
  const box = async (locator: Locator) => (await locator.boundingBox())!;
  const [header, nav, logout] = [await box(page.locator('header.topbar')), await box(page.locator('header nav')), await box(page.getByRole('button', { name: 'Log out' }))];
  const links = await Promise.all((await page.locator('header nav a').all()).map(box));
  assert.equal(links.length, 8);
  for (const link of links) {
    assert.ok(Math.abs(link.y - links[0]!.y) <= 1, 'nav links share one row');
    assert.ok(link.x >= nav.x - 0.5 && link.x + link.width <= nav.x + nav.width + 0.5, `each nav link is fully in view (${link.x} + ${link.width} in ${nav.x} + ${nav.width})`);
  }
  assert.ok(header.height < 2 * links[0]!.height, `the header (${header.height}px) is one row`);
  assert.ok(nav.x + nav.width <= logout.x, 'the nav ends before Log out');
  assert.equal(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), true, 'nothing pushes the page wider than the window');
  await screenshot(page, 'stations-tablet');
});

test('on SQLite the page says plainly that this is the only station', async (t) => {
  const server = await startTestServer(t, { station: 'bench-1' }, { adminPassword: PASSWORD });
  const page = await loggedInPage(browser, t, server.url, PASSWORD);
  await page.goto(`${server.url}/stations`);
  assert.match(await text(page.locator('#this-station')), /^Name bench-1 Database SQLite in its data folder: this is the only station Parked polls 0 /);
  assert.match(await text(page.locator('#only-station')), /^This is the only station: its database is SQLite in its own data folder, which no other station shares\./);
  assert.equal(await page.locator('#station-rows, #copy-rows, [data-channel]').count(), 0, 'no table of stations or copies, no channel');
  assert.equal(await page.locator('header nav a[href="/stations"]').count(), 0, 'alone, the nav has no Stations page to offer');
});

test('a channel cut off from the other stations is said in words', () => {
  const view: StationsView = {
    station: 'line-a',
    database: 'postgres',
    channel: 'reconnecting',
    parked_polls: 2,
    stations: [{ name: 'line-a', url: null, started_at: '2026-11-30T10:00:00.000Z', last_seen_at: '2026-11-30T10:00:05.000Z', up: true }],
  };
  const html = String(stationsPage(view, [], Date.parse('2026-11-30T10:00:10.000Z')));
  assert.match(html, /<dd data-channel="reconnecting"><span class="badge badge-failed">reconnecting<\/span> live updates from other stations paused, reconnecting<\/dd>/);
  assert.match(html, /<dt>Parked polls<\/dt><dd>2 /);
});
