import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, renameSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { writeImageFile } from '../helpers/files.js';
import { addImage, MAC, pathOf, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

/** Every image file in a data folder, content-addressed (images/sha256/) or older (images/). */
const imageFiles = (dataDir: string) => (readdirSync(join(dataDir, 'images'), { recursive: true }) as string[]).filter((name) => name.endsWith('.img'));

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const listImages = async (server: Awaited<ReturnType<typeof startTestServer>>) => (await server.admin('GET', '/api/images')).body.images as any[];

test('images are uploaded streaming, listed with size and sha256, and one is the default', async (t) => {
  const server = await startTestServer(t);
  const a = await addImage(t, server, 'raspios-lite', 500_000);
  const b = await addImage(t, server, 'reterminal-2026.11', 700_001, { makeDefault: true });
  const images = await listImages(server);
  assert.deepEqual(images.map((i) => [i.name, i.size, i.sha256, i.default]), [
    ['raspios-lite', a.bytes, a.sha256, false],
    ['reterminal-2026.11', b.bytes, b.sha256, true],
  ]);
  const switched = await server.admin('POST', '/api/images/raspios-lite/default');
  assert.equal(switched.body.default, true);
  assert.equal((await listImages(server)).find((i) => i.name === 'reterminal-2026.11').default, false);
  assert.equal(imageFiles(server.dataDir).length, 2);
});

test('image names are checked: taken, reserved or malformed names are refused before any byte is stored', async (t) => {
  const server = await startTestServer(t);
  await addImage(t, server, 'base', 1000);
  for (const [name, status, pattern] of [['base', 409, /already exists/], ['golden', 409, /kept for the golden\.img/], ['../etc', 400, /not a usable image name/]] as const) {
    const reply = await fetch(`${server.url}/api/images?name=${encodeURIComponent(name)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}` },
      body: Buffer.alloc(10),
    });
    assert.equal(reply.status, status, name);
    assert.match(((await reply.json()) as any).message, pattern);
  }
  assert.equal(imageFiles(server.dataDir).length, 1);
  assert.deepEqual(readdirSync(join(server.dataDir, 'tmp')), []);
});

test('a cut image upload adds nothing', async (t) => {
  const server = await startTestServer(t);
  const failed = server.server.services.images.addFromStream(
    new Readable({
      read() {
        this.push(Buffer.alloc(1000));
        this.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
      },
    }),
    { name: 'broken', origin: null },
  );
  await assert.rejects(failed, /was not added: the connection was cut/);
  assert.deepEqual(await listImages(server), []);
  assert.deepEqual(readdirSync(join(server.dataDir, 'tmp')), []);
  assert.deepEqual(imageFiles(server.dataDir), []);
});

test('an image in use by a deploy cannot be removed; once free it can', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  await addImage(t, server, 'base', 1000, { makeDefault: true });
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const refused = await server.admin('DELETE', '/api/images/base');
  assert.equal(refused.status, 409);
  assert.match(refused.body.message, /in use by a queued or running deploy/);
  assert.equal((await listImages(server))[0].in_use, true);

  await server.admin('POST', `/api/jobs/${ordered.body.id}/cancel`);
  assert.equal((await server.admin('DELETE', '/api/images/base')).status, 204);
  assert.deepEqual(await listImages(server), []);
  await waitFor('the file to be removed', () => imageFiles(server.dataDir).length === 0);
  assert.equal((await server.admin('DELETE', '/api/images/base')).status, 404);
  const history = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(history.image.name, 'base', 'history still names the removed image');
});

test('golden.img in the data dir is the default image, hashed once at start', async (t) => {
  const dataDir = join(tempDir(t), 'data');
  const golden = join(dataDir, 'golden.img');
  await import('node:fs').then((fs) => fs.mkdirSync(dataDir, { recursive: true }));
  const goldenSha = writeImageFile(golden, 400_000);
  utimesSync(golden, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  const server = await startTestServer(t, { dataDir });
  const [image] = await listImages(server);
  assert.equal(image.name, 'golden');
  assert.equal(image.sha256, goldenSha);
  assert.equal(image.source, 'golden');
  assert.equal(image.default, true);
  const station = server.server.services.config.station;
  assert.deepEqual(image.copies.map((copy: { station: string; state: string }) => [copy.station, copy.state]), [[station, 'complete']], 'its copy here, complete');
  await server.restart();
  assert.equal((await listImages(server)).length, 1, 'the same version is not imported twice');
});

test('replacing golden.img publishes a new version while a running deploy keeps streaming the old bytes', async (t) => {
  const server = await startTestServer(t);
  const golden = join(server.dataDir, 'golden.img');
  const past = () => utimesSync(golden, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  const v1 = writeImageFile(golden, 300_000);
  past();
  await server.server.services.golden.check();
  await registerDevice(server);
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  const running = await poll(server);
  assert.equal(running.sha256, v1);

  // Overwrite in place, as `cp new.img golden.img` does.
  const v2Data = Buffer.alloc(250_000, 7);
  writeFileSync(golden, v2Data);
  past();
  await server.server.services.golden.check();
  const [current] = await listImages(server);
  assert.equal(current.sha256, sha256(v2Data));

  const streamed = Buffer.from(await (await fetch(running.url)).arrayBuffer());
  assert.equal(sha256(streamed), v1, 'the running deploy never sees its image change');
  assert.equal(imageFiles(server.dataDir).length, 2);

  await server.device('POST', pathOf(running.result_url), { status: 'ok', sha256: v1 });
  await waitFor('the old version to be deleted', () => imageFiles(server.dataDir).length === 1);
  await server.admin('POST', `/api/devices/${MAC}/deploy`, {});
  assert.equal((await poll(server)).sha256, sha256(v2Data), 'the next deploy gets the new version');
});

test('the watcher notices a golden.img moved into place, once it has settled', async (t) => {
  const server = await startTestServer(t);
  const staged = join(server.dataDir, 'golden.img.part');
  const sha = writeImageFile(staged, 100_000);
  renameSync(staged, join(server.dataDir, 'golden.img'));
  const image = await waitFor('golden.img to be imported', async () => (await listImages(server)).find((i) => i.name === 'golden'), 15_000);
  assert.equal(image.sha256, sha);
});
