import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addImage, MAC, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';

test('a device registers with JSON or a form, MACs normalised, and re-registering refreshes IP and last-seen', async (t) => {
  const server = await startTestServer(t);
  const first = await server.device('POST', '/api/register-device', { mac: 'DC-A6-32-00-00-01', ip: '10.20.50.101', serial: '10000000abcdef01', model: 'Raspberry Pi Compute Module 4 Rev 1.1', storage_bytes: 32 * 2 ** 30, client_version: '0.2.0' });
  assert.equal(first.status, 200);
  assert.equal(first.body.mac, MAC);
  assert.match(first.body.poll_url, /\/api\/device-action-poll\?mac=dc:a6:32:00:00:01$/);
  const before = (await server.admin('GET', `/api/devices/${MAC}`)).body;
  assert.equal(before.serial, '10000000abcdef01');
  assert.equal(before.storage_bytes, 32 * 2 ** 30);

  await new Promise((resolve) => setTimeout(resolve, 5));
  const form = await server.device('POST', '/api/register-device', 'mac=dca6.3200.0001&ip=10.20.50.102&serial=', { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(form.status, 200, form.text);
  const after = (await server.admin('GET', `/api/devices/${MAC}`)).body;
  assert.equal(after.ip, '10.20.50.102');
  assert.equal(after.serial, '10000000abcdef01', 'a field the device did not send is kept');
  assert.ok(after.last_seen_at > before.last_seen_at);
  assert.equal((await server.admin('GET', '/api/devices')).body.devices.length, 1);
});

test('an IP left out is taken from the connection', async (t) => {
  const server = await startTestServer(t);
  await server.device('POST', '/api/register-device', { mac: MAC });
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).body.ip, '127.0.0.1');
});

test('invalid MACs and bodies get a 400 with a message', async (t) => {
  const server = await startTestServer(t);
  const cases: Array<[unknown, RegExp, Record<string, string>?]> = [
    [{ mac: 'not-a-mac' }, /invalid MAC address 'not-a-mac'/],
    [{ mac: 'ff:ff:ff:ff:ff:ff' }, /broadcast/],
    [{ ip: '10.20.50.1' }, /mac/],
    [{ mac: MAC, ip: '10.20.50.999' }, /invalid ip/],
    [{ mac: MAC, storage_bytes: 'lots' }, /storage_bytes/],
    ['{"mac": ', /JSON|body/i, { 'content-type': 'application/json' }],
  ];
  for (const [body, pattern, headers] of cases) {
    const reply = await server.device('POST', '/api/register-device', body, headers);
    assert.equal(reply.status, 400, `${JSON.stringify(body)} → ${reply.text}`);
    assert.match(reply.body.message, pattern);
  }
  const badPoll = await server.device('GET', '/api/device-action-poll?mac=12345');
  assert.equal(badPoll.status, 400);
  assert.match(badPoll.body.message, /invalid MAC/);
  const badWait = await server.device('GET', `/api/device-action-poll?mac=${MAC}&wait=9999`);
  assert.equal(badWait.status, 400);
  assert.equal((await server.admin('GET', '/api/devices')).body.devices.length, 0, 'nothing was stored');
});

test('poll answers none in JSON and in the shell-friendly env form', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  assert.deepEqual(await poll(server), { action: 'none' });
  const env = await server.device('GET', `/api/device-action-poll?mac=${MAC}&format=env`);
  assert.equal(env.status, 200);
  assert.equal(env.text, "ACTION='none'\n");
});

test('a deploy is handed out once, with url, size, sha256 and job, in JSON and env form', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  const image = await addImage(t, server, 'raspios', 300_000, { makeDefault: true });
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));

  const env = await server.device('GET', `/api/device-action-poll?mac=${MAC}&format=env`);
  const fields = Object.fromEntries(env.text.trim().split('\n').map((line) => {
    const [key, ...rest] = line.split('=');
    return [key, rest.join('=').replace(/^'|'$/g, '')];
  }));
  assert.equal(fields.ACTION, 'deploy');
  assert.equal(fields.JOB, String(ordered.body.id));
  assert.equal(fields.SIZE, String(image.bytes));
  assert.equal(fields.SHA256, image.sha256);
  assert.match(fields.URL!, new RegExp(`^${server.url}/api/device-jobs/${ordered.body.id}/image\\?token=[\\w-]{43}$`));
  assert.ok(fields.PROGRESS_URL && fields.RESULT_URL);

  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'running');
  assert.ok(job.started_at);
});

test('--public-url decides the host in the URLs handed to devices', async (t) => {
  const server = await startTestServer(t, { publicUrl: 'http://10.20.50.1:5000' });
  await registerDevice(server);
  await addImage(t, server, 'raspios', 1000, { makeDefault: true });
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const answer = await poll(server);
  assert.match(answer.url, /^http:\/\/10\.20\.50\.1:5000\/api\/device-jobs\/\d+\/image\?token=/);
});

test('a backup order carries the upload URL and the expected size', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server, MAC, { storage_bytes: 123456 });
  const ordered = await server.admin('POST', `/api/devices/${MAC}/backup`);
  assert.equal(ordered.status, 201);
  const answer = await poll(server);
  assert.equal(answer.action, 'backup');
  assert.equal(answer.size, 123456);
  assert.match(answer.upload_url, /\/api\/device-jobs\/\d+\/upload\?token=/);
});

test('a long-poll answers as soon as the operator acts, and with none when its wait runs out', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'raspios', 1000, { makeDefault: true });

  const emptyStarted = Date.now();
  assert.deepEqual(await poll(server, MAC, 1), { action: 'none' });
  assert.ok(Date.now() - emptyStarted >= 900, 'an empty long-poll is held for its wait');

  const waitSeconds = 20;
  const pending = poll(server, MAC, waitSeconds);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const orderedAt = Date.now();
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const answer = await pending;
  assert.equal(answer.action, 'deploy');
  assert.ok(Date.now() - orderedAt < waitSeconds * 1000, 'the answer arrived before the wait ran out');
});

test('a device that polls again while its job runs gets a clear answer: the job failed as abandoned', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'raspios', 1000, { makeDefault: true });
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal((await poll(server)).action, 'deploy');

  const again = await poll(server);
  assert.equal(again.action, 'none', 'the action is not handed out twice');
  assert.equal(again.abandoned_job, ordered.body.id);
  assert.match(again.message, /failed: abandoned: the device polled for new work/);
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'failed');
  assert.match(job.error, /partial image/);
  assert.deepEqual(await poll(server), { action: 'none' }, 'only once');
});

test('re-registering during a running job also abandons it', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/backup`);
  await poll(server);
  await registerDevice(server);
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'failed');
  assert.match(job.error, /registered again.*no backup was stored/);
});

test('--device-network keeps the device API to its CIDRs', async (t) => {
  const outside = await startTestServer(t, { deviceNetwork: '10.20.50.0/24' });
  const refused = await outside.device('POST', '/api/register-device', { mac: MAC });
  assert.equal(refused.status, 403);
  assert.match(refused.body.message, /127\.0\.0\.1 is not in the device network \(10\.20\.50\.0\/24\)/);
  assert.equal((await outside.device('GET', `/api/device-action-poll?mac=${MAC}`)).status, 403);
  assert.equal((await outside.admin('GET', '/api/devices')).status, 200, 'the admin API is not limited by it');

  const inside = await startTestServer(t, { deviceNetwork: '10.20.50.0/24,127.0.0.0/8' });
  assert.equal((await inside.device('POST', '/api/register-device', { mac: MAC })).status, 200);
});
