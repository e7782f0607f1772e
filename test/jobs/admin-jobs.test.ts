import { sql } from 'kysely';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addImage, MAC, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';

test('the admin API refuses requests without the bearer token, or with a wrong one', async (t) => {
  const server = await startTestServer(t);
  for (const [method, path] of [['GET', '/api/devices'], ['GET', '/api/jobs'], ['GET', '/api/images'], ['GET', '/api/backups'], ['POST', `/api/devices/${MAC}/deploy`]] as const) {
    const missing = await server.device(method, path);
    assert.equal(missing.status, 401, path);
    assert.match(missing.body.message, /Authorization: Bearer.*admin-token/);
    const wrong = await server.device(method, path, undefined, { authorization: 'Bearer nope' });
    assert.equal(wrong.status, 401, path);
    assert.match(wrong.body.message, /not valid/);
  }
});

test('ordering work: unknown device 404, nothing to deploy 409, a second job 409, an image too big for the eMMC 409', async (t) => {
  const server = await startTestServer(t);
  const unknown = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.message, /no device with MAC dc:a6:32:00:00:01 has registered/);

  await registerDevice(server, MAC, { storage_bytes: 100_000 });
  const noImage = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(noImage.status, 409);
  assert.match(noImage.body.message, /no image to deploy.*golden\.img/);

  await addImage(t, server, 'big', 200_000);
  const tooBig = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'big' });
  assert.equal(tooBig.status, 409);
  assert.match(tooBig.body.message, /larger than the eMMC/);
  const missingImage = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'nope' });
  assert.equal(missingImage.status, 404);

  const backup = await server.admin('POST', `/api/devices/${MAC}/backup`);
  assert.equal(backup.status, 201);
  const second = await server.admin('POST', `/api/devices/${MAC}/backup`);
  assert.equal(second.status, 409);
  assert.match(second.body.message, new RegExp(`already has job ${backup.body.id} \\(backup, queued\\); cancel it first`));
});

test('cancel ends a queued or running job, and its device is not given it', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'raspios', 1000, { makeDefault: true });
  const queued = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const cancelled = await server.admin('POST', `/api/devices/${MAC}/cancel`);
  assert.equal(cancelled.status, 200);
  assert.equal(cancelled.body.state, 'cancelled');
  assert.deepEqual(await poll(server), { action: 'none' });

  const again = await server.admin('POST', `/api/jobs/${queued.body.id}/cancel`);
  assert.equal(again.status, 409, 'an ended job cannot be cancelled');
  assert.equal((await server.admin('POST', `/api/devices/${MAC}/cancel`)).status, 404);
});

test('job history filters by device and state', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server, 'dc:a6:32:00:00:01');
  await registerDevice(server, 'dc:a6:32:00:00:02');
  await server.admin('POST', '/api/devices/dc:a6:32:00:00:01/backup');
  await server.admin('POST', '/api/devices/dc:a6:32:00:00:01/cancel');
  await server.admin('POST', '/api/devices/dc:a6:32:00:00:02/backup');
  assert.equal((await server.admin('GET', '/api/jobs')).body.jobs.length, 2);
  const forOne = (await server.admin('GET', '/api/jobs?device=DC-A6-32-00-00-02')).body.jobs;
  assert.deepEqual(forOne.map((job: any) => job.device_mac), ['dc:a6:32:00:00:02']);
  const cancelled = (await server.admin('GET', '/api/jobs?state=cancelled')).body.jobs;
  assert.deepEqual(cancelled.map((job: any) => job.device_mac), ['dc:a6:32:00:00:01']);
  assert.equal((await server.admin('GET', '/api/jobs?state=bogus')).status, 400);
  assert.equal((await server.admin('GET', '/api/jobs/999')).status, 404);
});

test('a running job with no word from its device for the stall timeout fails, saying so', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/backup`);
  await poll(server);
  const { services } = server.server;
  // Move the job's last sign of life into the past rather than waiting 10 minutes.
  await sql`UPDATE jobs SET last_activity_at = last_activity_at - ${11 * 60 * 1000} WHERE id = ${ordered.body.id}`.execute(services.database.db);
  const failed = await services.jobs.failStalled();
  assert.deepEqual(failed.map((job) => job.id), [ordered.body.id]);
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'failed');
  assert.match(job.error, /no word from the device for 6\d\d s/);
});
