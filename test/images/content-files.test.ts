import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { baselineOf } from '../../src/images/integrity.js';
import { addImage, MAC, pathOf, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// Image files named by their content (images/sha256/<hex>.img): the same bytes under two names
// are one file, kept while any image names it; rows made before keep their images/<uuid>.img.

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
/** Every image file in a data folder, content-addressed or not, relative to images/. */
const imageFiles = (dataDir: string) => (readdirSync(join(dataDir, 'images'), { recursive: true }) as string[]).filter((name) => name.endsWith('.img')).sort();

async function upload(server: TestServer, name: string, data: Buffer) {
  const response = await fetch(`${server.url}/api/images?name=${name}`, { method: 'POST', headers: { authorization: `Bearer ${server.token}` }, body: data });
  assert.equal(response.status, 201, await response.clone().text());
  return (await response.json()) as { id: number; sha256: string; block_map: { compression: { state: string } } };
}

/** What a device is handed for a deploy of `image`, and the bytes its URL serves. */
async function deployedBytes(server: TestServer, image: string) {
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  const job = await poll(server);
  assert.equal(job.action, 'deploy');
  const bytes = Buffer.from(await (await fetch(job.url)).arrayBuffer());
  await server.device('POST', pathOf(job.result_url), { status: 'ok', sha256: sha256(bytes) });
  assert.equal((await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body.state, 'ok');
  return bytes;
}

const fileRemoved = async (server: TestServer, id: number) =>
  (await server.server.services.database.db.selectFrom('images').select('file_removed').where('id', '=', id).executeTakeFirstOrThrow()).file_removed === 1;

test('the same bytes under two names are one file and one block map; removing one keeps the other deployable; removing both removes the file', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  const { images } = server.server.services;
  const first = await addImage(t, server, 'os', 900_000);
  const again = await upload(server, 'os-copy', first.data);
  const [a, b] = [await images.requireImage('os'), await images.requireImage('os-copy')];
  assert.equal(a.file, `images/sha256/${first.sha256}.img`);
  assert.equal(b.file, a.file, 'one file');
  assert.deepEqual(imageFiles(server.dataDir), [`sha256/${first.sha256}.img`]);
  assert.deepEqual(readdirSync(join(server.dataDir, 'tmp')), [], 'the second upload left no temp');
  assert.equal(b.block_map_id, a.block_map_id, 'one map, so one zstd cache');
  assert.equal(b.file_identity, a.file_identity);
  await server.server.services.caches.idle();
  assert.equal((await server.admin('GET', '/api/images/os-copy')).body.block_map.compression.state, 'ready');
  assert.equal(again.sha256, first.sha256);

  assert.equal((await server.admin('DELETE', '/api/images/os')).status, 204);
  await waitFor("os's claim on the file swept", () => fileRemoved(server, a.id));
  assert.deepEqual(imageFiles(server.dataDir), [`sha256/${first.sha256}.img`], 'kept: os-copy names it');
  assert.ok((await deployedBytes(server, 'os-copy')).equals(first.data), 'os-copy deploys from it');

  assert.equal((await server.admin('DELETE', '/api/images/os-copy')).status, 204);
  await waitFor('the file removed with the last image naming it', () => imageFiles(server.dataDir).length === 0);
});

test('an image row from before keeps its images/<uuid>.img and deploys from it; the same bytes added now get their sha256 name beside it', async (t) => {
  const server = await startTestServer(t);
  await registerDevice(server);
  const { images, database } = server.server.services;
  // As an older version stored it: a random name, no block map.
  const data = Buffer.alloc(700_000, 3);
  data.write('an image from before', 4096);
  const oldFile = join('images', `${randomUUID()}.img`);
  writeFileSync(join(server.dataDir, oldFile), data);
  const facts = baselineOf(join(server.dataDir, oldFile), data.length);
  await database.db
    .insertInto('images')
    .values({ name: 'old', file: oldFile, size: data.length, sha256: sha256(data), source: 'upload', origin: null, created_at: 1, file_identity: facts.identity, edges_sha256: facts.edgesSha256 })
    .execute();
  assert.ok((await deployedBytes(server, 'old')).equals(data));

  await upload(server, 'new', data);
  const added = await images.requireImage('new');
  assert.equal(added.file, `images/sha256/${sha256(data)}.img`);
  assert.deepEqual(imageFiles(server.dataDir), [oldFile.slice('images/'.length), `sha256/${sha256(data)}.img`].sort());

  const old = await images.requireImage('old');
  assert.equal((await server.admin('DELETE', '/api/images/old')).status, 204);
  await waitFor('the old file removed', () => fileRemoved(server, old.id));
  assert.deepEqual(imageFiles(server.dataDir), [`sha256/${sha256(data)}.img`]);
  assert.ok((await deployedBytes(server, 'new')).equals(data));
});

test('the same bytes added over a damaged file replace it; the image that had it is intact again once re-hashed', async (t) => {
  const server = await startTestServer(t);
  const { images } = server.server.services;
  const first = await addImage(t, server, 'os', 3 * 1024 * 1024);
  const path = join(server.dataDir, (await images.requireImage('os')).file);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from([0xff, 0x00, 0xff]), 0, 3, 1536 * 1024); // in the middle: only a whole hash sees it
  closeSync(fd);
  const damagedInode = statSync(path).ino;

  await upload(server, 'os-again', first.data);
  assert.notEqual(statSync(path).ino, damagedInode, 'replaced by the checked upload');
  assert.ok(readFileSync(path).equals(first.data));
  assert.deepEqual(imageFiles(server.dataDir), [`sha256/${first.sha256}.img`]);
  assert.equal(await images.fileProblem(await images.requireImage('os-again')), null);
  await waitFor('os intact again', async () => (await images.fileProblem(await images.requireImage('os'))) === null);
  await images.integrityIdle();
  assert.equal((await images.requireImage('os')).broken, null);
});

test('a backup promoted to an image lands at its sha256 name as a hard link; one with bytes stored already shares that file', async (t) => {
  const server = await startTestServer(t);
  const { images } = server.server.services;
  mkdirSync(join(server.dataDir, 'backups'), { recursive: true });
  const backup = join(server.dataDir, 'backups', 'b1.img');
  const data = Buffer.alloc(600_000, 9);
  writeFileSync(backup, data);
  const promoted = await images.adoptVerifiedFile(backup, { name: 'from-backup', size: data.length, sha256: sha256(data), origin: 'backup 1', blockMapId: null });
  assert.equal(promoted.file, `images/sha256/${sha256(data)}.img`);
  assert.equal(statSync(join(server.dataDir, promoted.file)).ino, statSync(backup).ino, 'a hard link, no copy');

  const stored = await addImage(t, server, 'stored', 500_000);
  const second = join(server.dataDir, 'backups', 'b2.img');
  writeFileSync(second, stored.data);
  const shared = await images.adoptVerifiedFile(second, { name: 'same-as-stored', size: stored.bytes, sha256: stored.sha256, origin: 'backup 2', blockMapId: null });
  assert.equal(shared.file, (await images.requireImage('stored')).file);
  assert.notEqual(statSync(join(server.dataDir, shared.file)).ino, statSync(second).ino, 'the stored file is kept, no link made');
  assert.deepEqual(imageFiles(server.dataDir), [`sha256/${sha256(data)}.img`, `sha256/${stored.sha256}.img`].sort());
  assert.deepEqual(readdirSync(join(server.dataDir, 'tmp')), []);
  assert.equal(await images.fileProblem(shared), null);
  assert.ok(existsSync(second), "the backup's own file is untouched");
});
