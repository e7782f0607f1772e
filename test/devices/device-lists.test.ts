import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { insertRows } from '../helpers/rows.js';

const MANY = 20_000;
const DAY_MS = 24 * 3600_000;

/** `dc:a6:32:00:4e:1f` for 0x4e1f: a distinct, valid MAC per number. */
const macOf = (n: number) => `dc:a6:32:${[(n >> 16) & 255, (n >> 8) & 255, n & 255].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

/** Many devices at once, straight into the database (registering 20,000 over HTTP would take minutes). */
function insertDevices(server: TestServer, count: number, firstSeen: number) {
  return insertRows(server.server.services.database.db, 'devices', Array.from({ length: count }, (_, i) => {
    const n = i + 1;
    const at = firstSeen + n;
    return {
      mac: macOf(n), ip: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, serial: `10000000${n.toString(16).padStart(8, '0')}`,
      model: n % 2 ? 'CM4 Rev 1.1' : 'CM4 Lite', storage_bytes: 32e9, first_seen_at: at, last_seen_at: at, registered_at: at,
    };
  }));
}

/** A clock the test moves by hand. */
function manualClock(start = Date.UTC(2026, 0, 5, 9)) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

test('GET /api/devices pages through 20,000 devices: total and next walk them all once, in a stable order', async (t) => {
  const server = await startTestServer(t);
  await insertDevices(server, MANY, Date.now() - 3_600_000);
  const seen = new Set<string>();
  let cursor: string | null = null;
  let pages = 0;
  do {
    const reply: { status: number; body: any } = await server.admin('GET', `/api/devices?limit=500${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.equal(reply.body.total, MANY);
    assert.ok(reply.body.devices.length <= 500);
    for (const device of reply.body.devices) {
      assert.ok(!seen.has(device.mac), `${device.mac} listed twice`);
      seen.add(device.mac);
    }
    cursor = reply.body.next;
    pages++;
  } while (cursor);
  assert.equal(seen.size, MANY, 'no gaps');
  assert.equal(pages, MANY / 500);
  assert.deepEqual([...seen].slice(0, 3), [macOf(1), macOf(2), macOf(3)], 'first seen first');

  const plain = await server.admin('GET', '/api/devices');
  assert.equal(plain.body.devices.length, 100, 'a default page, not every device');
  assert.equal(typeof plain.body.next, 'string');
  const newest = await server.admin('GET', '/api/devices?order=newest&limit=2');
  assert.deepEqual(newest.body.devices.map((d: { mac: string }) => d.mac), [macOf(MANY), macOf(MANY - 1)]);
});

test('device search finds a MAC by any part in any notation, an IP, a serial and a model; state filters; bad paging gets a 400', async (t) => {
  const server = await startTestServer(t);
  await insertDevices(server, MANY, Date.now() - 3_600_000);
  const target = macOf(0x4a1f); // dc:a6:32:00:4a:1f
  const search = async (query: string) => (await server.admin('GET', `/api/devices?${query}`)).body;

  for (const part of ['00:4a:1f', '00-4A-1F', '004a1f', 'A6.3200.4A1F']) {
    const found = await search(`search=${encodeURIComponent(part)}`);
    assert.ok(found.devices.some((d: { mac: string }) => d.mac === target), `${part} finds ${target}`);
    assert.ok(found.total < 20, `${part} narrows the list (${found.total})`);
  }
  assert.deepEqual((await search('search=10.0.74.31')).devices.map((d: { mac: string }) => d.mac), [target], 'by IP');
  assert.deepEqual((await search('search=1000000000004a1f')).devices.map((d: { mac: string }) => d.mac), [target], 'by serial');
  assert.equal((await search('search=cm4%20lite&limit=1')).total, MANY / 2, 'by model, any case');
  assert.equal((await search('search=nothing-like-this')).total, 0);
  assert.equal((await search('search=50%25')).total, 0, 'a % in the search is a character, not a wildcard');

  // A device with work in progress is always findable by state, however long the list.
  assert.equal((await server.admin('POST', `/api/devices/${target}/backup`)).status, 201);
  const active = await search('state=active');
  assert.deepEqual(active.devices.map((d: { mac: string; active_job: unknown }) => [d.mac, Boolean(d.active_job)]), [[target, true]]);
  assert.equal((await search('state=queued')).total, 1);
  assert.equal((await search('state=stale')).total, MANY - 1, 'the rest were last seen an hour ago');

  const tooMany = await server.admin('GET', '/api/devices?limit=100000');
  assert.equal(tooMany.status, 400);
  const badCursor = await server.admin('GET', '/api/devices?cursor=page-2');
  assert.equal(badCursor.status, 400);
  assert.match(badCursor.body.message, /invalid cursor 'page-2': pass the 'next' value of the page before/);
  assert.equal((await server.admin('GET', '/api/devices?state=lost')).status, 400);
});

test('one address may add 20 new devices a minute: the 21st gets a 429 with a sentence and Retry-After; known MACs and a later minute are fine', async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  const register = (mac: string) =>
    fetch(`${server.url}/api/register-device`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mac }) });
  const statuses: number[] = [];
  let refused: Response | undefined;
  for (let n = 1; n <= 25; n++) {
    const reply = await register(macOf(n));
    statuses.push(reply.status);
    if (reply.status === 429) refused ??= reply;
    else await reply.arrayBuffer();
  }
  assert.deepEqual(statuses, [...Array(20).fill(200), ...Array(5).fill(429)]);
  const body = (await refused!.json()) as { error: string; message: string };
  assert.equal(body.error, 'too_many_requests');
  assert.match(body.message, /^127\.0\.0\.1 added 20 new devices in the last 60 s, the most allowed; try again in 60 s$/);

  assert.equal((await register(macOf(3))).status, 200, 'a known device registering again (its client restarted) is not limited');
  assert.equal((await server.device('GET', `/api/device-action-poll?mac=${macOf(4)}`)).status, 200, 'a known device polls');
  const unknownPoll = await server.device('GET', `/api/device-action-poll?mac=${macOf(99)}`);
  assert.equal(unknownPoll.status, 429, 'a poll from an unknown MAC would add a device: same limit');
  assert.equal((await server.admin('GET', '/api/devices')).body.total, 20, 'nothing over the limit was stored');

  clock.advance(61_000);
  assert.equal((await register(macOf(21))).status, 200, 'a minute later there is room again');
  // Needs the app's error handler to send an AppError's `headers` (see the report).
  assert.equal(refused!.headers.get('retry-after'), '60');
});

test('the age-out sweep forgets a device with no history unseen for 7 days, and keeps those with a job, a netboot choice or a recent visit', async (t) => {
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  const [unknown, withJob, netbootOff, recent] = [1, 2, 3, 4].map(macOf) as [string, string, string, string];
  for (const mac of [unknown, withJob, netbootOff, recent]) {
    assert.equal((await server.device('POST', '/api/register-device', { mac })).status, 200);
  }
  const { database, devices } = server.server.services;
  await database.db.insertInto('boot_events').values({ mac: unknown, at: clock.now(), kind: 'tftp', ip: '10.0.0.9', file: 'start4.elf' }).execute();
  const job = await server.admin('POST', `/api/devices/${withJob}/backup`);
  assert.equal(job.status, 201);
  assert.equal((await server.admin('POST', `/api/jobs/${job.body.id}/cancel`)).status, 200, 'ended: history, not work');
  assert.equal((await server.admin('POST', `/api/devices/${netbootOff}/netboot`, { enabled: false })).status, 200);

  clock.advance(6 * DAY_MS);
  assert.equal(await devices.sweepUnknownDevices(), 0, 'six days is not old enough');
  clock.advance(DAY_MS + 1);
  assert.equal((await server.device('GET', `/api/device-action-poll?mac=${recent}`)).status, 200);
  assert.equal(await devices.sweepUnknownDevices(), 1);

  assert.equal((await server.admin('GET', `/api/devices/${unknown}`)).status, 404, 'forgotten');
  for (const kept of [withJob, netbootOff, recent]) assert.equal((await server.admin('GET', `/api/devices/${kept}`)).status, 200, kept);
  assert.deepEqual(await database.db.selectFrom('boot_events').select('id').where('mac', '=', unknown).execute(), [], 'its boot events went with it');
  assert.equal((await server.admin('GET', `/api/jobs/${job.body.id}`)).body.device_mac, withJob, 'the job still names its device');
});
