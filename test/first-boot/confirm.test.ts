import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestServer } from '../helpers/server.js';
import { scratch } from '../device-files/helpers.js';
import { deployWithClient, firstBootCall, manualClock, prepareLine } from './helpers.js';

const MAC = 'dc:a6:32:00:13:01';

async function orderConfirmed(server: Awaited<ReturnType<typeof startTestServer>>, mac: string, extra: Record<string, unknown> = {}) {
  await server.device('POST', '/api/register-device', { mac, storage_bytes: 64 * 1024 * 1024 });
  const ordered = await server.admin('POST', `/api/devices/${mac}/deploy`, { image: 'os', profile: 'boot', confirm_boot: true, ...extra });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  return ordered.body;
}

/** The rendered content of the job's first file (kept while the job is active). */
const jobFile = (server: Awaited<ReturnType<typeof startTestServer>>, jobId: number) =>
  server.server.services.database.db.selectFrom('job_files').select('content').where('job_id', '=', jobId).where('idx', '=', 0).executeTakeFirstOrThrow();

test('first boot: a real deploy ends ok · awaiting first boot; a wrong token is 404, the right one confirms once, a reuse is 409', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  await prepareLine(server, dir);
  const ordered = await orderConfirmed(server, MAC);
  assert.equal(ordered.first_boot.state, 'not_yet');

  const token = await deployWithClient(t, server, dir, MAC);
  assert.match(token, /^[A-Za-z0-9_-]{43}$/, 'the one-time token was rendered into the boot partition');
  const ended = (await server.admin('GET', `/api/jobs/${ordered.id}`)).body;
  assert.equal(ended.state, 'ok');
  assert.equal(ended.first_boot.state, 'awaiting');
  assert.equal(ended.first_boot.summary, 'awaiting first boot');
  assert.equal(Date.parse(ended.first_boot.deadline_at) - Date.parse(ended.ended_at), 600_000);
  const stored = await server.server.services.database.db.selectFrom('jobs').select('boot_token_hash').where('id', '=', ordered.id).executeTakeFirstOrThrow();
  assert.notEqual(stored.boot_token_hash, token, 'only a hash of the token is kept');
  assert.match(stored.boot_token_hash!, /^[0-9a-f]{64}$/);

  const wrong = await server.device('POST', '/api/first-boot', firstBootCall(`${token.slice(0, -1)}A`, MAC));
  assert.equal(wrong.status, 404);
  assert.equal(wrong.body.message, 'no deploy is waiting for this first-boot token');
  const otherDevice = await server.device('POST', '/api/first-boot', firstBootCall(token, 'dc:a6:32:00:13:99'));
  assert.equal(otherDevice.status, 409);
  assert.equal(otherDevice.body.message, `job ${ordered.id} deployed device ${MAC}, not dc:a6:32:00:13:99`);
  assert.equal((await server.admin('GET', `/api/jobs/${ordered.id}`)).body.first_boot.state, 'awaiting', 'refused calls change nothing');

  // The hook posts a form, as curl --data-urlencode does.
  const form = new URLSearchParams(firstBootCall(token, MAC)).toString();
  const confirmed = await server.device('POST', '/api/first-boot', form, { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(confirmed.status, 200, confirmed.text);
  assert.equal(confirmed.body.first_boot.state, 'confirmed');
  const job = (await server.admin('GET', `/api/jobs/${ordered.id}`)).body;
  assert.equal(job.state, 'ok');
  assert.deepEqual(
    [job.first_boot.state, job.first_boot.os_release, job.first_boot.kernel, job.first_boot.summary],
    ['confirmed', 'Debian GNU/Linux 13 (trixie)', '6.12.0-rpi-v8', 'confirmed: booted Debian GNU/Linux 13 (trixie) (6.12.0-rpi-v8)'],
  );

  const reused = await server.device('POST', '/api/first-boot', firstBootCall(token, MAC));
  assert.equal(reused.status, 409);
  assert.equal(reused.body.message, `job ${ordered.id}'s first boot was already confirmed at ${job.first_boot.confirmed_at}`);
});

test('first boot: the token of a job cancelled while queued is refused with its state', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  await prepareLine(server, dir);
  const ordered = await orderConfirmed(server, MAC);
  // The rendered file is the only place the token exists; it is kept only while the job is active.
  const file = await jobFile(server, ordered.id);
  const token = file.content!.toString().trim();
  const early = await server.device('POST', '/api/first-boot', firstBootCall(token, MAC));
  assert.equal(early.status, 409);
  assert.equal(early.body.message, `job ${ordered.id} is still queued; its first boot can be confirmed only after it ends ok`);
  assert.equal((await server.admin('POST', `/api/jobs/${ordered.id}/cancel`)).status, 200);
  const after = await server.device('POST', '/api/first-boot', firstBootCall(token, MAC));
  assert.equal(after.status, 409);
  assert.equal(after.body.message, `job ${ordered.id} ended cancelled, so no first boot is awaited`);
  assert.equal((await server.admin('GET', `/api/jobs/${ordered.id}`)).body.first_boot.summary, 'no first boot awaited: the job ended cancelled');
});

test('first boot: {{first_boot_url}} is where the device\'s client reached the server; a deploy without confirm_boot has no token to render', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t);
  await prepareLine(server, dir);
  await server.admin('POST', '/api/profiles', { name: 'url', files: [{ partition: 1, fs: 'vfat', path: '/fb-url.txt', template: '{{first_boot_url}}\n' }] });
  await server.device('POST', '/api/register-device', { mac: MAC, storage_bytes: 64 * 1024 * 1024 });
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'url', confirm_boot: true });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  const file = await jobFile(server, ordered.body.id);
  assert.equal(file.content!.toString(), `${server.url}/api/first-boot\n`, 'no --public-url: the host its client used');
  assert.equal((await server.admin('POST', `/api/jobs/${ordered.body.id}/cancel`)).status, 200);
  const noConfirm = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'boot' });
  assert.equal(noConfirm.status, 400);
  assert.match(noConfirm.body.message, /this deploy does not ask for first-boot confirmation/);
});

test('first boot: with --public-url the callback URL is rendered into the files', async (t) => {
  const dir = scratch(t);
  const server = await startTestServer(t, { publicUrl: 'http://10.20.50.1:8080' });
  await prepareLine(server, dir);
  await server.admin('POST', '/api/profiles', { name: 'url', files: [{ partition: 1, fs: 'vfat', path: '/fb-url.txt', template: '{{first_boot_url}}\n' }] });
  await server.device('POST', '/api/register-device', { mac: MAC, storage_bytes: 64 * 1024 * 1024 });
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'os', profile: 'url', confirm_boot: true });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  const file = await jobFile(server, ordered.body.id);
  assert.equal(file.content!.toString(), 'http://10.20.50.1:8080/api/first-boot\n', '--public-url wins over the host the client used');
});

test('first boot: no call within the timeout → not confirmed, netboot switched back on, a late call refused', async (t) => {
  const dir = scratch(t);
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  await prepareLine(server, dir);
  const ordered = await orderConfirmed(server, MAC, { confirm_timeout: 120 });
  const token = await deployWithClient(t, server, dir, MAC);
  const { firstBoot } = server.server.services;
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).body.netboot.enabled, false, 'after an ok deploy the device boots its eMMC');

  clock.advance(119_000);
  assert.deepEqual(await firstBoot.expireDue(), [], 'still within the 2 minutes');
  clock.advance(2_000);
  assert.deepEqual((await firstBoot.expireDue()).map((job) => job.id), [ordered.id]);
  assert.deepEqual(await firstBoot.expireDue(), [], 'once');

  const job = (await server.admin('GET', `/api/jobs/${ordered.id}`)).body;
  assert.deepEqual([job.state, job.first_boot.state, job.first_boot.summary], ['ok', 'not_confirmed', 'not confirmed: no first-boot call within 2 min']);
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).body.netboot.enabled, true, 'its next boot brings it back into provisioning');
  const late = await server.device('POST', '/api/first-boot', firstBootCall(token, MAC));
  assert.equal(late.status, 409);
  assert.equal(late.body.message, `job ${ordered.id} is not confirmed: no first-boot call came within 2 min; a call now confirms nothing`);
});

test('first boot: a newer job for the device supersedes an awaited first boot, so its old deadline never switches netboot on under the new work', async (t) => {
  const dir = scratch(t);
  const clock = manualClock();
  const server = await startTestServer(t, {}, { clock });
  await prepareLine(server, dir);
  const ordered = await orderConfirmed(server, MAC, { confirm_timeout: 60 });
  const token = await deployWithClient(t, server, dir, MAC);
  assert.equal((await server.admin('GET', `/api/jobs/${ordered.id}`)).body.first_boot.state, 'awaiting');

  const backup = await server.admin('POST', `/api/devices/${MAC}/backup`, { after: 'emmc' });
  assert.equal(backup.status, 201, JSON.stringify(backup.body));
  const old = (await server.admin('GET', `/api/jobs/${ordered.id}`)).body;
  assert.deepEqual([old.state, old.first_boot.state, old.first_boot.summary], ['ok', 'superseded', 'first boot no longer awaited: a newer job was ordered for the device before it called']);
  assert.equal((await server.admin('POST', `/api/jobs/${backup.body.id}/cancel`)).status, 200);
  assert.equal((await server.admin('POST', `/api/devices/${MAC}/netboot`, { enabled: false })).status, 200);

  clock.advance(61_000);
  assert.deepEqual(await server.server.services.firstBoot.expireDue(), [], 'nothing is awaited any more');
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).body.netboot.enabled, false, "the old deadline did not switch netboot on");
  const late = await server.device('POST', '/api/first-boot', firstBootCall(token, MAC));
  assert.equal(late.status, 409);
  assert.equal(late.body.message, `job ${ordered.id}'s first boot is no longer awaited: a newer job for ${MAC} was ordered before this call came`);
});
