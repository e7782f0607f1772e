import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startCuttingProxy } from '../helpers/cutting-proxy.js';
import { CLIENT_SCRIPT, runClient } from '../helpers/device-client.js';
import { makeFakeEmmc, sha256OfFile, writeImageFile } from '../helpers/files.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const EMMC_BYTES = 64 * 1024 * 1024;

async function jobOf(server: TestServer, id: number) {
  return (await server.admin('GET', `/api/jobs/${id}`)).body;
}

async function waitForRegistration(server: TestServer) {
  await waitFor('the client to register', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
}

test('deploy: the real client writes the image onto its eMMC file, verifies it, and the job ends ok', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  const image = await addImage(t, server, 'raspios', 5 * 1024 * 1024 + 123, { makeDefault: true });
  const client = runClient(t, { server: server.url, target: emmc, mac: 'DC-A6-32-00-00-01', env: { DEVICE_SERIAL: '10000000c0ffee01', DEVICE_MODEL: 'Raspberry Pi Compute Module 4 Rev 1.1' } });
  await waitForRegistration(server);
  const device = (await server.admin('GET', `/api/devices/${MAC}`)).body;
  assert.equal(device.storage_bytes, EMMC_BYTES, 'the client reports its target size');
  assert.equal(device.serial, '10000000c0ffee01');
  assert.equal(device.client_version, /^CLIENT_VERSION=(.+)$/m.exec(readFileSync(CLIENT_SCRIPT, 'utf8'))![1], 'the client reports its version');

  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(await client.exited, 0, client.output());
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256, 'the eMMC holds the image');
  assert.equal((readFileSync(emmc).length), EMMC_BYTES, 'a file target keeps its size');
  const job = await jobOf(server, ordered.body.id);
  assert.equal(job.state, 'ok', job.error);
  assert.equal(job.sha256, image.sha256);
  assert.equal(job.transfer.mode, 'sparse', 'only the mapped chunks travelled');
  const mapped = (await server.admin('GET', '/api/images/raspios')).body.block_map.mapped_bytes;
  assert.ok(mapped < image.bytes, 'the zero run in the image was not sent');
  assert.equal(job.bytes_written, mapped);
  assert.equal(job.bytes_verified, mapped);
  assert.match(client.output(), /all \d+ mapped ranges \(\d+ bytes\) verified/);
});

test('backup: the real client uploads its eMMC and the stored backup hashes to the same sha256', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  const emmcSha = writeImageFile(emmc, 24 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC });
  await waitForRegistration(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/backup`);
  assert.equal(await client.exited, 0, client.output());
  const job = await jobOf(server, ordered.body.id);
  assert.equal(job.state, 'ok', job.error);
  const backup = (await server.admin('GET', `/api/backups/${job.backup_id}`)).body;
  assert.equal(backup.sha256, emmcSha);
  assert.equal(backup.size, 24 * 1024 * 1024);
  const stored = readdirSync(join(server.dataDir, 'backups', 'dca632000001'));
  assert.equal(await sha256OfFile(join(server.dataDir, 'backups', 'dca632000001', stored[0]!)), emmcSha);
});

test("the operator's order reaches a long-polling client before the poll's wait runs out", async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  await addImage(t, server, 'raspios', 100_000, { makeDefault: true });
  const wait = 30;
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { POLL_WAIT: String(wait), POLL_INTERVAL: String(wait) } });
  await client.waitForOutput(/waiting for the operator/);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  await client.waitForOutput(/job \d+: deploy/, (wait - 1) * 1000);
  const job = await jobOf(server, ordered.body.id);
  assert.ok(Date.parse(job.started_at) - Date.parse(job.created_at) < wait * 1000, 'handed out within the wait');
  assert.equal(await client.exited, 0, client.output());
});

test('the client refuses an image larger than its target, and the job says so', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 1024 * 1024);
  await addImage(t, server, 'raspios', 2 * 1024 * 1024, { makeDefault: true });
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC });
  await client.waitForOutput(/waiting for the operator/);
  // The server refuses what it knows will not fit; pretend it was told a larger size.
  await registerDevice(server, MAC, { storage_bytes: EMMC_BYTES });
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(await client.exited, 1);
  const job = await jobOf(server, ordered.body.id);
  assert.equal(job.state, 'failed');
  assert.match(job.error, /larger than .*emmc\.img \(1048576 bytes\)/);
  assert.equal(await sha256OfFile(emmc), await sha256OfFile(emmc), 'untouched');
  assert.equal(readFileSync(emmc).every((byte) => byte === 0), true, 'nothing was written');
});

test('killing curl mid-upload leaves no backup row and no stray file, and the job says why', async (t) => {
  const server = await startTestServer(t);
  const dir = tempDir(t);
  const emmc = join(dir, 'emmc.img');
  await makeFakeEmmc(emmc, 2 * 1024 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { TRANSFER_RETRIES: '1' } });
  await waitForRegistration(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/backup`);
  const tmp = join(server.dataDir, 'tmp');
  await waitFor('the upload to start', () => readdirSync(tmp).some((name) => name.endsWith('.part')), 30_000, 10);

  const curl = findProcess(client.child.pid!, 'curl');
  assert.ok(curl, 'the client is uploading with curl');
  process.kill(curl, 'SIGKILL');

  assert.equal(await client.exited, 1, client.output());
  const job = await jobOf(server, ordered.body.id);
  assert.equal(job.state, 'failed');
  assert.match(job.error, /backup upload failed/);
  assert.equal((await server.admin('GET', '/api/backups')).body.backups.length, 0);
  await waitFor('temp files to go', () => readdirSync(tmp).length === 0);
  assert.deepEqual(readdirSync(join(server.dataDir, 'backups')), []);
});

test('a pending action survives a server restart and the client still gets it', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  const image = await addImage(t, server, 'raspios', 1024 * 1024, { makeDefault: true });
  await registerDevice(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});

  await server.restart();
  assert.equal((await server.admin('GET', `/api/devices/${MAC}`)).body.mac, MAC, 'the device is still known');
  assert.equal((await jobOf(server, ordered.body.id)).state, 'queued', 'the action is still pending');

  const client = runClient(t, { server: server.url, target: emmc, mac: MAC });
  assert.equal(await client.exited, 0, client.output());
  assert.equal((await jobOf(server, ordered.body.id)).state, 'ok');
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256);
});

test('a client whose server restarts while it waits reconnects and takes the next order', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  await addImage(t, server, 'raspios', 100_000, { makeDefault: true });
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC });
  await client.waitForOutput(/waiting for the operator/);
  await server.restart();
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(await client.exited, 0, client.output());
  assert.equal((await jobOf(server, ordered.body.id)).state, 'ok');
  assert.match(client.output(), /polling failed .*retrying/);
});

/** A process named `name` in the process group `group` (the client's own children only). */
function findProcess(group: number, name: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (comm === name && Number(fields[2]) === group) return Number(entry);
    } catch {
      // The process ended while we looked.
    }
  }
  return undefined;
}


test('a whole-image deploy (DEPLOY_MODE=full) cut mid-download resumes from where it stopped (HTTP Range), not from byte 0', async (t) => {
  const server = await startTestServer(t);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  const image = await addImage(t, server, 'raspios', 8 * 1024 * 1024, { makeDefault: true });
  const proxy = await startCuttingProxy(t, new URL(server.url), /^GET \/api\/device-jobs\/\d+\/image/, 3 * 1024 * 1024);
  const client = runClient(t, { server: proxy.url, target: emmc, mac: MAC, env: { DEPLOY_MODE: 'full' } });
  await waitForRegistration(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(await client.exited, 0, client.output());
  assert.equal((await jobOf(server, ordered.body.id)).state, 'ok');
  assert.equal(await sha256OfFile(emmc, image.bytes), image.sha256);
  assert.match(client.output(), /image download cut at \d+ of 8388608 bytes .*resuming/);
  const resumedFrom = proxy.ranges.filter((range) => range !== 'none').map((range) => Number(/bytes=(\d+)-/.exec(range)?.[1]));
  assert.equal(resumedFrom.length, 1, 'one resumed request');
  assert.ok(resumedFrom[0]! > 0 && resumedFrom[0]! <= 3 * 1024 * 1024, `resumed from ${resumedFrom[0]}`);
});
