import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const EMMC_BYTES = 16 * 1024 * 1024;

async function finished(server: TestServer, id: number) {
  let job: { state: string; error: string | null; backup_id: number | null } | undefined;
  await waitFor(`job ${id} to end`, async () => {
    job = (await server.admin('GET', `/api/jobs/${id}`)).body;
    return !['queued', 'running'].includes(job!.state);
  });
  return job!;
}

test('AFTER_JOB=poll: one client serves a deploy, a failed deploy and a backup, and is still waiting after them', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  const image = await addImage(t, server, 'trial', 3 * 1024 * 1024 + 17, { makeDefault: true });
  await addImage(t, server, 'too-big', EMMC_BYTES * 2);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { AFTER_JOB: 'poll' } });
  await client.waitForOutput(/waiting for the operator/);

  const deploy = (await server.admin('POST', `/api/devices/${MAC}/deploy`, {})).body;
  assert.equal((await finished(server, deploy.id)).state, 'ok');
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256, 'the eMMC file holds the image');
  await client.waitForOutput(new RegExp(`job ${deploy.id} ended with status 0; waiting for the next job`));

  // The server refuses what it knows will not fit: tell it a larger size, so the client is the one to fail.
  await registerDevice(server, MAC, { storage_bytes: EMMC_BYTES * 4 });
  const failing = (await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'too-big' })).body;
  const failed = await finished(server, failing.id);
  assert.equal(failed.state, 'failed');
  assert.match(failed.error ?? '', /larger than/);
  await client.waitForOutput(new RegExp(`job ${failing.id} ended with status 1; waiting for the next job`));
  await registerDevice(server, MAC, { storage_bytes: EMMC_BYTES });

  const backup = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  const backedUp = await finished(server, backup.id);
  assert.equal(backedUp.state, 'ok', backedUp.error ?? '');
  const stored = (await server.admin('GET', `/api/backups/${backedUp.backup_id}`)).body;
  assert.equal(stored.sha256, await sha256OfFile(emmc), 'the backup is the eMMC the first deploy wrote');
  await client.waitForOutput(new RegExp(`job ${backup.id} ended with status 0; waiting for the next job`));
  assert.equal(client.child.exitCode, null, 'the client is still serving');
});

test('the default (AFTER_JOB=exit) ends after one job, as the initramfs expects, and a wrong AFTER_JOB is a setting error', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  await addImage(t, server, 'trial', 1024 * 1024, { makeDefault: true });
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC });
  await client.waitForOutput(/waiting for the operator/);
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(await client.exited, 0, client.output());

  const wrong = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { AFTER_JOB: 'reboot' } });
  assert.equal(await wrong.exited, 2);
  assert.match(wrong.output(), /ERROR: AFTER_JOB must be exit or poll, not 'reboot'\n$/);
});

test("a setting error's line ends with its sentence, not with the exit status", async (t) => {
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 1024 * 1024);
  const client = runClient(t, { server: '', target: emmc, mac: MAC });
  assert.equal(await client.exited, 2);
  assert.match(client.output(), /ERROR: no server: set PROVISIONING_SERVER or provisioning_server= on the kernel command line\n$/);
});
