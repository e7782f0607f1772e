import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync, readSync, renameSync, rmSync, statSync, truncateSync, utimesSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { deployDialog } from '../../src/dashboard/views/devices.js';
import { imageRows } from '../../src/dashboard/views/images.js';
import { runCli } from '../helpers/cli.js';
import { writeImageFile } from '../helpers/files.js';
import { addImage, MAC, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';

const MiB = 1024 * 1024;

const fileOf = async (server: TestServer, name: string) => {
  const { images } = server.server.services;
  return images.pathOf(await images.requireImage(name));
};
const viewOf = async (server: TestServer, name: string) => (await server.admin('GET', `/api/images/${name}`)).body;
const deploy = (server: TestServer, image: string) => server.admin('POST', `/api/devices/${MAC}/deploy`, { image });

/** Overwrites one byte in place, then puts the file's times back as they were. */
function flipByte(path: string, offset: number, keepTimes: boolean) {
  const before = statSync(path);
  const fd = openSync(path, 'r+');
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, offset);
  byte[0] = byte[0]! ^ 0xff;
  writeSync(fd, byte, 0, 1, offset);
  closeSync(fd);
  if (keepTimes) utimesSync(path, before.atime, before.mtime);
}

test('an image file deleted behind the server is marked broken at restart, refused for deploy with a 409, and removable', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'gone', 300_000, { makeDefault: true });
  await addImage(t, server, 'kept', 300_000);
  rmSync(await fileOf(server, 'gone'));
  await server.restart();

  const gone = await viewOf(server, 'gone');
  assert.equal(gone.broken, 'its file is missing from the data folder');
  assert.equal((await viewOf(server, 'kept')).broken, null);
  const refused = await deploy(server, 'gone');
  assert.equal(refused.status, 409);
  assert.match(refused.body.message, /^image 'gone' cannot be deployed: its file is missing from the data folder; /);
  const byDefault = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal(byDefault.status, 409, 'the default image is checked too');
  assert.doesNotMatch(refused.body.message, new RegExp(server.dataDir), 'no server path in the message');

  const rows = String(imageRows(await server.server.services.images.list(), []));
  assert.match(rows, /gone <span class="badge badge-default">default<\/span> <span class="badge badge-failed">broken<\/span><span class="error-text">Not deployable: its file is missing from the data folder\.<\/span>/);
  const { services } = server.server;
  const dialog = String(deployDialog(await services.devices.view(await services.devices.get(MAC)), await services.images.list(), 'emmc', Date.now()));
  assert.match(dialog, /<option value="gone" disabled>gone: broken: its file is missing from the data folder<\/option>/, 'the Deploy dialog shows it, disabled, with why');
  assert.match(dialog, /<option value="kept"[^>]*selected>kept<\/option>/, 'and offers the intact one');
  const listed = await runCli(['image', 'list'], { CM4PROV_SERVER: server.url, CM4PROV_DATA_DIR: server.dataDir });
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /^NAME .* BROKEN\n/);
  assert.match(listed.stdout, /\ngone .* its file is missing from the data folder\n/);
  assert.match(listed.stdout, /\nkept .* -\n/);

  assert.equal((await server.admin('DELETE', '/api/images/gone')).status, 204);
  assert.equal((await deploy(server, 'kept')).status, 201);
});

test('a file changed in its first MiB (size and mtime kept) or truncated is caught before a deploy', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'changed', 3 * MiB);
  await addImage(t, server, 'truncated', 3 * MiB);
  flipByte(await fileOf(server, 'changed'), 1000, true);
  truncateSync(await fileOf(server, 'truncated'), 2 * MiB);

  const changed = await deploy(server, 'changed');
  assert.equal(changed.status, 409);
  assert.match(changed.body.message, /^image 'changed' cannot be deployed: its file was changed: its first or last MiB differ from what was imported; /);
  const truncated = await deploy(server, 'truncated');
  assert.equal(truncated.status, 409);
  assert.match(truncated.body.message, /its file has 2097152 bytes, not the 3145728 it was imported with/);
  const { body } = await server.admin('GET', '/api/images');
  assert.deepEqual(
    body.images.map((image: any) => [image.name, Boolean(image.broken)]),
    [['changed', true], ['truncated', true]],
  );
});

test('a new mtime makes the whole file be hashed again: intact clears, changed in the middle stays broken', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'touched', 3 * MiB);
  await addImage(t, server, 'middle', 3 * MiB);
  const later = new Date(Date.now() + 60_000);
  utimesSync(await fileOf(server, 'touched'), later, later);
  flipByte(await fileOf(server, 'middle'), 1.5 * MiB, false); // neither the first nor the last MiB

  for (const name of ['touched', 'middle']) {
    const refused = await deploy(server, name);
    assert.equal(refused.status, 409, name);
    assert.match(refused.body.message, /modified after import \(new inode or mtime\): its whole sha256 is being checked again; try again/, name);
  }
  await server.server.services.images.integrityIdle();
  assert.equal((await viewOf(server, 'touched')).broken, null);
  assert.equal((await viewOf(server, 'middle')).broken, "its file no longer hashes to the image's sha256: it was changed after import");
  assert.equal((await deploy(server, 'middle')).status, 409);
  assert.equal((await deploy(server, 'touched')).status, 201, 'the touched but intact image deploys');
});

test('a file put back after it went missing is intact again', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'away', 500_000);
  const path = await fileOf(server, 'away');
  renameSync(path, `${path}.moved`);
  await server.restart();
  assert.match((await viewOf(server, 'away')).broken, /missing/);
  renameSync(`${path}.moved`, path);
  assert.equal((await deploy(server, 'away')).status, 201);
  assert.equal((await viewOf(server, 'away')).broken, null);
});

test('the device download of a file deleted or cut after the order is a 409 with a sentence, never an empty or short 200', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  const image = await addImage(t, server, 'base', 2 * MiB);
  assert.equal((await deploy(server, 'base')).status, 201);
  const job = await poll(server);
  const path = await fileOf(server, 'base');

  truncateSync(path, MiB);
  for (const method of ['GET', 'HEAD']) {
    const cut = await fetch(job.url, { method });
    assert.equal(cut.status, 409, method);
    if (method === 'GET') assert.match(((await cut.json()) as any).message, /has 1048576 bytes.*2097152/);
  }
  rmSync(path);
  const missing = await fetch(job.url);
  assert.equal(missing.status, 409);
  const message = ((await missing.json()) as any).message as string;
  assert.match(message, /missing/);
  assert.doesNotMatch(message, new RegExp(server.dataDir));
  const range = await fetch(job.url, { headers: { range: `bytes=0-${image.bytes - 1}` } });
  assert.equal(range.status, 409);
});

test('golden.img deleted leaves its library copy deployable; the copy deleted makes it broken', async (t) => {
  const dataDir = join(tempDir(t), 'data');
  mkdirSync(dataDir, { recursive: true });
  const golden = join(dataDir, 'golden.img');
  writeImageFile(golden, 400_000);
  utimesSync(golden, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  const server = await startTestServer(t, { dataDir });
  await registerDevice(server);
  rmSync(golden);
  await server.restart();
  assert.equal((await viewOf(server, 'golden')).broken, null);
  const ordered = await deploy(server, 'golden');
  assert.equal(ordered.status, 201);
  await server.admin('POST', `/api/jobs/${ordered.body.id}/cancel`);

  rmSync(await fileOf(server, 'golden'));
  await server.restart();
  assert.equal((await viewOf(server, 'golden')).broken, 'its file is missing from the data folder');
  assert.equal((await deploy(server, 'golden')).status, 409);
});

test('images stored before these checks get their baseline once their whole sha256 is confirmed', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'old-intact', 3 * MiB);
  await addImage(t, server, 'old-changed', 3 * MiB);
  flipByte(await fileOf(server, 'old-changed'), 1.5 * MiB, true);
  await server.server.services.database.db.updateTable('images').set({ file_identity: null, edges_sha256: null }).execute();
  await server.restart();
  await server.server.services.images.integrityIdle();

  const rows = await server.server.services.database.db.selectFrom('images').select(['name', 'edges_sha256', 'broken']).orderBy('name').execute();
  assert.deepEqual(
    rows.map((row) => [row.name, row.edges_sha256 !== null, row.broken]),
    [
      ['old-changed', false, "its file no longer hashes to the image's sha256: it was changed after import"],
      ['old-intact', true, null],
    ],
  );
  assert.equal((await deploy(server, 'old-changed')).status, 409);
  assert.equal((await deploy(server, 'old-intact')).status, 201);
});

test('a queued deploy whose image file went missing before the device polled is not handed out: it fails, not started', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'raspios', 300_000, { makeDefault: true });
  const ordered = await deploy(server, 'raspios');
  assert.equal(ordered.status, 201);
  rmSync(await fileOf(server, 'raspios'));
  assert.deepEqual(await poll(server), { action: 'none' }, 'the device is given nothing to write');
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'failed');
  assert.equal(job.started_at, null);
  assert.match(job.error, /^not started: image file: its file is missing from the data folder$/);
});
