import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startCuttingProxy } from '../helpers/cutting-proxy.js';
import { runClient } from '../helpers/device-client.js';
import { makeExt4Image } from '../helpers/ext4.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { MAC } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const EMMC_BYTES = 96 * 1024 * 1024;

async function ext4Image(t: TestContext, server: TestServer, name = 'os') {
  const { image } = makeExt4Image(tempDir(t), 64);
  const response = await fetch(`${server.url}/api/images?name=${name}&default=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}` },
    body: readFileSync(image),
  });
  assert.equal(response.status, 201);
  await server.server.services.caches.idle();
  const view = (await server.admin('GET', `/api/images/${name}`)).body;
  return { file: image, view, sha256: view.sha256 as string, size: view.size as number, mapped: view.block_map.mapped_bytes as number };
}

/** The target with the image's unmapped ranges as zeros must equal the image there too (zero-detected map). */
async function targetHoldsImage(emmc: string, image: { file: string; size: number; sha256: string }) {
  assert.equal(await sha256OfFile(emmc, image.size), image.sha256, 'the target holds the image, byte for byte');
}

async function deploy(t: TestContext, server: TestServer, env: Record<string, string> = {}, body: Record<string, unknown> = {}) {
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  // Old data on the eMMC: what discard must clear where the image has nothing.
  writeFileSync(emmc, Buffer.alloc(8 * 1024 * 1024, 0xa5), { flag: 'r+' });
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env });
  await waitFor('the client', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, body);
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body)); // a refused order would leave the client polling
  const code = await client.exited;
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  return { emmc, client, code, job };
}

test('sparse deploy with zstd: only the compressed mapped chunks travel, each is read back, the target ends up holding the image', async (t) => {
  const server = await startTestServer(t);
  const image = await ext4Image(t, server);
  assert.equal(image.view.block_map.compression.state, 'ready');
  const { emmc, client, code, job } = await deploy(t, server);
  assert.equal(code, 0, client.output());
  assert.equal(job.state, 'ok', job.error);
  assert.deepEqual(job.transfer, { mode: 'sparse', encoding: 'zstd', full_match: false });
  assert.equal(job.sha256, image.sha256);
  assert.equal(job.bytes_written, image.mapped);
  assert.equal(job.bytes_verified, image.mapped);
  assert.equal(job.discarded, true);
  assert.ok(image.mapped < image.size / 2, `mapped ${image.mapped} of ${image.size}`);
  assert.match(client.output(), /mapped chunks only, zstd/);
  await targetHoldsImage(emmc, image);
});

test('without zstd on the device the mapped ranges come plain, over one connection', async (t) => {
  const server = await startTestServer(t);
  const image = await ext4Image(t, server);
  const { emmc, client, code, job } = await deploy(t, server, { PATH_WITHOUT_ZSTD: '1' });
  assert.equal(code, 0, client.output());
  assert.deepEqual(job.transfer, { mode: 'sparse', encoding: 'identity', full_match: false });
  await targetHoldsImage(emmc, image);
});

test('full match: the whole target is checked against the image with one hash', async (t) => {
  const server = await startTestServer(t);
  const image = await ext4Image(t, server);
  const { emmc, client, code, job } = await deploy(t, server, {}, { full_match: true });
  assert.equal(code, 0, client.output());
  assert.equal(job.state, 'ok', job.error);
  assert.equal(job.transfer.full_match, true);
  assert.match(client.output(), /unmapped ranges are zeros already/);
  await targetHoldsImage(emmc, image);
});

test('a chunk stream cut in the middle resumes at the first chunk that does not verify, not at byte 0', async (t) => {
  const server = await startTestServer(t);
  const image = await ext4Image(t, server);
  const cache = (await server.server.services.blockMaps.get((await server.server.services.images.requireImage('os')).block_map_id!))!;
  const proxy = await startCuttingProxy(t, new URL(server.url), /\/chunks\?/, Math.floor(cache.cache_bytes! / 2));
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  const client = runClient(t, { server: proxy.url, target: emmc, mac: MAC });
  await waitFor('the client', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(await client.exited, 0, client.output());
  assert.equal((await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body.state, 'ok');
  assert.match(client.output(), /chunk stream cut at range (\d+) of \d+ .*resuming from it/);
  const resumedAt = Number(/chunk stream cut at range (\d+)/.exec(client.output())![1]);
  assert.ok(resumedAt > 0, 'not from the first chunk');
  const frames = await server.server.services.blockMaps.chunks(cache.id);
  assert.deepEqual(proxy.ranges, [`bytes=0-`, `bytes=${frames[resumedAt]!.zoffset}-`], 'the second request starts at that chunk');
  await targetHoldsImage(emmc, image);
});

test('a chunk that arrives whole but reads back wrong fails the job, naming the range', async (t) => {
  const server = await startTestServer(t);
  await ext4Image(t, server);
  const stored = await server.server.services.images.requireImage('os');
  const chunk = (await server.server.services.blockMaps.chunks(stored.block_map_id!))[1]!;
  // The map and the bytes disagree (a map recorded wrong, or bytes that changed where the cheap
  // file check cannot see): the device writes the bytes it is sent, reads them back, and must
  // refuse the chunk. Changing the file itself is refused earlier, at the order (images/integrity).
  const expected = 'ab'.repeat(32);
  await server.server.services.database.db.updateTable('block_map_chunks').set({ sha256: expected }).where('map_id', '=', stored.block_map_id!).where('idx', '=', 1).execute();
  const { client, code, job } = await deploy(t, server, { PATH_WITHOUT_ZSTD: '1' });
  assert.equal(code, 1, client.output());
  assert.equal(job.state, 'failed');
  assert.match(job.error, new RegExp(`^range 1 \\(offset ${chunk.offset}, length ${chunk.length}\\) reads back as sha256 ${chunk.sha256}, not ${expected}$`));
});

test('a client that does not say it can write chunks still gets the whole image (the original protocol)', async (t) => {
  const server = await startTestServer(t);
  const image = await ext4Image(t, server);
  const { emmc, client, code, job } = await deploy(t, server, { DEPLOY_MODE: 'full' });
  assert.equal(code, 0, client.output());
  assert.equal(job.transfer.mode, 'full');
  assert.equal(job.bytes_done, image.size);
  await targetHoldsImage(emmc, image);
});
test('a backup travels zstd-compressed, is stored sparse with a block map, and deploys back as fast as any image', async (t) => {
  const server = await startTestServer(t);
  const dir = tempDir(t);
  const { image } = makeExt4Image(dir, 64);
  const source = join(dir, 'emmc-a.img');
  await makeFakeEmmc(source, EMMC_BYTES);
  writeFileSync(source, readFileSync(image), { flag: 'r+' });
  const sourceSha = await sha256OfFile(source);

  const first = runClient(t, { server: server.url, target: source, mac: MAC });
  await waitFor('device A', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const backup = await server.admin('POST', `/api/devices/${MAC}/backup`);
  assert.equal(await first.exited, 0, first.output());
  const job = (await server.admin('GET', `/api/jobs/${backup.body.id}`)).body;
  assert.equal(job.state, 'ok', job.error);
  assert.equal(job.transfer.encoding, 'zstd', 'compressed on the device');
  assert.match(first.output(), /backup of .* \(\d+ bytes, zstd on the wire\)/);
  const stored = await server.server.services.backups.get(job.backup_id);
  assert.equal(stored.sha256, sourceSha);
  const onDisk = statSync(server.server.services.backups.pathOf(stored));
  assert.ok(onDisk.blocks * 512 < EMMC_BYTES / 4, 'stored sparse: the empty eMMC takes little disk');

  const promoted = await server.admin('POST', `/api/backups/${job.backup_id}/promote`, { name: 'line-master' });
  assert.equal(promoted.status, 201);
  assert.equal(promoted.body.block_map.source, 'zeros');
  await server.server.services.caches.idle();
  const target = join(dir, 'emmc-b.img');
  await makeFakeEmmc(target, EMMC_BYTES);
  const second = runClient(t, { server: server.url, target, mac: 'dc:a6:32:00:00:02' });
  await waitFor('device B', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 2);
  const deployed = await server.admin('POST', '/api/devices/dc:a6:32:00:00:02/deploy', { image: 'line-master' });
  assert.equal(await second.exited, 0, second.output());
  const deployJob = (await server.admin('GET', `/api/jobs/${deployed.body.id}`)).body;
  assert.equal(deployJob.state, 'ok', deployJob.error);
  assert.deepEqual(deployJob.transfer, { mode: 'sparse', encoding: 'zstd', full_match: false });
  assert.ok(deployJob.bytes_written < EMMC_BYTES / 4, 'only the mapped part of the backup travelled');
  assert.equal(await sha256OfFile(target), sourceSha, 'device B now holds what device A had');
});
