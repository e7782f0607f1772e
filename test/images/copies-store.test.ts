import assert from 'node:assert/strict';
import type { StationDatabase } from '../../src/db/database.js';
import { createImageCopyStore } from '../../src/images/copies-store.js';
import { createImageStore, type NewImage } from '../../src/images/store.js';
import { createStationStore } from '../../src/stations/store.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// Per-station image copies (issue 15) on both databases: who holds which file, fetches that
// never overwrite a complete copy, and where a station can fetch one from.

/** 32 GiB: an eMMC-sized image, past 32-bit integers. */
const BIG = 32 * 1024 ** 3;

const image = (name: string): NewImage => ({
  name,
  file: `images/${name}.img`,
  size: BIG,
  sha256: 'a'.repeat(64),
  source: 'upload',
  origin: null,
  block_map_id: null,
  file_identity: '12:34',
  edges_sha256: 'b'.repeat(64),
});

async function setUp({ db }: StationDatabase) {
  return { images: createImageStore(db), copies: createImageCopyStore(db), stations: createStationStore(db) };
}

testOnBothDatabases('an image added on a station has that station\'s copy complete, in the same transaction as its row', async (_t, database) => {
  const { images, copies } = await setUp(database);
  const added = (await images.add(image('os'), 1000, undefined, 'line-a'))!;
  assert.deepEqual(await copies.ofImage(added.id), [
    { image_id: added.id, station: 'line-a', state: 'complete', bytes_done: BIG, bytes_total: BIG, source_station: null, error: null, file_identity: '12:34', broken: null, updated_at: 1000 },
  ]);
  assert.equal(await images.add(image('os'), 2000, undefined, 'line-b'), undefined, 'the name is taken');
  assert.deepEqual((await copies.ofImage(added.id)).map((row) => row.station), ['line-a'], 'the refused add left no copy behind');
  const plain = (await images.add(image('plain'), 1000))!;
  assert.deepEqual(await copies.ofImage(plain.id), [], 'without a station, no copy row');
});

testOnBothDatabases('a fetch starts, moves, completes; it never starts over a complete copy, and a failure never touches one', async (_t, database) => {
  const { images, copies } = await setUp(database);
  const { id } = (await images.add(image('os'), 1000, undefined, 'line-a'))!;
  assert.equal(await copies.startFetch(id, 'line-a', 'line-b', 10, 2000), false, 'line-a has it complete');
  await copies.fail(id, 'line-a', 'nope', 2000);
  assert.equal((await copies.get(id, 'line-a'))!.state, 'complete');

  assert.equal(await copies.startFetch(id, 'line-b', 'line-a', BIG, 2000), true);
  await copies.progress(id, 'line-b', 4096, 2500);
  assert.deepEqual(await copies.get(id, 'line-b'), {
    image_id: id, station: 'line-b', state: 'fetching', bytes_done: 4096, bytes_total: BIG, source_station: 'line-a', error: null, file_identity: null, broken: null, updated_at: 2500,
  });
  await copies.fail(id, 'line-b', 'chunk 3 hashes wrong', 3000);
  await copies.progress(id, 'line-b', 8192, 3100);
  const failed = (await copies.get(id, 'line-b'))!;
  assert.deepEqual([failed.state, failed.error, failed.bytes_done], ['failed', 'chunk 3 hashes wrong', 4096], 'progress only moves a running fetch');
  assert.equal(await copies.complete(id, 'line-b', BIG, '9:9', 3200), false, 'only a running fetch completes');

  assert.equal(await copies.startFetch(id, 'line-b', 'line-c', BIG, 4000), true, 'a failed one starts over');
  const again = (await copies.get(id, 'line-b'))!;
  assert.deepEqual([again.state, again.error, again.bytes_done, again.source_station], ['fetching', null, 0, 'line-c']);
  assert.equal(await copies.complete(id, 'line-b', BIG, '9:9', 5000), true);
  const done = (await copies.get(id, 'line-b'))!;
  assert.deepEqual([done.state, done.bytes_done, done.file_identity], ['complete', BIG, '9:9']);
  await copies.setIdentity(id, 'line-b', '10:10');
  assert.equal((await copies.get(id, 'line-b'))!.file_identity, '10:10');
});

testOnBothDatabases('what a station lacks, and the up stations with a url that can give it', async (_t, database) => {
  const { images, copies, stations } = await setUp(database);
  const one = (await images.add(image('one'), 1000, undefined, 'line-a'))!;
  const two = (await images.add(image('two'), 1000, undefined, 'line-b'))!;
  const gone = (await images.add(image('gone'), 1000, undefined, 'line-a'))!;
  await images.retire(gone.id, 1500);
  await copies.startFetch(two.id, 'line-a', 'line-b', BIG, 2000);
  assert.deepEqual((await copies.missingAt('line-a')).map((row) => row.name), ['two'], 'a fetching copy is still missing; a retired image is not');
  assert.deepEqual((await copies.missingAt('line-c')).map((row) => row.name), ['one', 'two']);

  await stations.announce('line-a', 'http://10.0.0.11:5000', 10_000);
  await stations.announce('line-b', null, 10_000);
  await stations.announce('line-d', 'http://10.0.0.14:5000', 10_000);
  await copies.startFetch(one.id, 'line-d', 'line-a', BIG, 2000);
  await copies.complete(one.id, 'line-d', BIG, '1:1', 3000);
  assert.deepEqual(await copies.sourcesOf(one.id, 'line-c', 5_000), [
    { name: 'line-a', url: 'http://10.0.0.11:5000' },
    { name: 'line-d', url: 'http://10.0.0.14:5000' },
  ]);
  assert.deepEqual(await copies.sourcesOf(one.id, 'line-a', 5_000), [{ name: 'line-d', url: 'http://10.0.0.14:5000' }], 'never itself');
  assert.deepEqual(await copies.sourcesOf(one.id, 'line-c', 10_001), [], 'none heard from since');
  assert.deepEqual(await copies.sourcesOf(two.id, 'line-c', 5_000), [], 'line-b gave no url; line-a is only fetching');
});

testOnBothDatabases('a retired image stays listed for the stations holding a copy until each removes its own', async (_t, database) => {
  const { images, copies } = await setUp(database);
  const old = (await images.add(image('old'), 1000, undefined, 'line-a'))!;
  await copies.startFetch(old.id, 'line-b', 'line-a', BIG, 1100);
  assert.deepEqual(await copies.retiredAt('line-a'), [], 'active images are not swept');
  await images.retire(old.id, 2000);
  assert.deepEqual((await copies.retiredAt('line-a')).map((row) => [row.id, row.file]), [[old.id, 'images/old.img']]);
  assert.deepEqual((await copies.retiredAt('line-b')).map((row) => row.id), [old.id], 'a half fetch may have left a file too');
  await copies.remove(old.id, 'line-a');
  assert.deepEqual(await copies.retiredAt('line-a'), []);
  assert.deepEqual((await copies.ofImage(old.id)).map((row) => row.station), ['line-b']);
});

testOnBothDatabases("a damaged copy is marked on its station only, counts as missing there, is no source, and is fetched again over itself", async (_t, database) => {
  const { images, copies, stations } = await setUp(database);
  await stations.announce('line-a', 'http://10.0.0.11:5000', 10_000);
  await stations.announce('line-b', 'http://10.0.0.12:5000', 10_000);
  const { id } = (await images.add(image('os'), 1000, undefined, 'line-a'))!;
  await copies.startFetch(id, 'line-b', 'line-a', BIG, 1100);
  await copies.complete(id, 'line-b', BIG, '2:2', 1200);
  assert.equal(await copies.intactElsewhere(id, 'line-b'), true);

  assert.equal(await copies.setBroken(id, 'line-b', 'its file is missing'), true);
  assert.equal(await copies.setBroken(id, 'line-b', 'its file is missing'), false, 'said once');
  assert.deepEqual((await copies.ofImage(id)).map((row) => [row.station, row.state, row.broken]), [['line-a', 'complete', null], ['line-b', 'complete', 'its file is missing']]);
  assert.equal((await images.get(id))!.broken, null, 'the image itself is not broken');
  assert.deepEqual((await copies.missingAt('line-b')).map((row) => row.name), ['os']);
  assert.deepEqual(await copies.missingAt('line-a'), []);
  assert.deepEqual(await copies.sourcesOf(id, 'line-c', 5_000), [{ name: 'line-a', url: 'http://10.0.0.11:5000' }], 'not from a damaged copy');
  assert.equal(await copies.intactElsewhere(id, 'line-a'), false, "line-b's copy is damaged");
  assert.deepEqual(await copies.heldAt('line-b'), []);
  assert.deepEqual(await copies.heldWithBytes('a'.repeat(64), 'line-b'), []);

  assert.equal(await copies.startFetch(id, 'line-b', 'line-a', BIG, 2000), true, 'fetched again over the damaged copy');
  const refetching = (await copies.get(id, 'line-b'))!;
  assert.deepEqual([refetching.state, refetching.broken], ['fetching', 'its file is missing'], 'damaged until the new file is in place');
  assert.equal(await copies.complete(id, 'line-b', BIG, '3:3', 2500), true);
  const repaired = (await copies.get(id, 'line-b'))!;
  assert.deepEqual([repaired.state, repaired.broken, repaired.file_identity], ['complete', null, '3:3']);
  assert.equal(await copies.startFetch(id, 'line-b', 'line-a', BIG, 3000), false, 'an intact complete copy is not fetched again');
});

testOnBothDatabases('the copies a station holds with given bytes, and a copy made complete from its own file', async (_t, database) => {
  const { images, copies } = await setUp(database);
  const one = (await images.add(image('one'), 1000, undefined, 'line-a'))!;
  const other = (await images.add({ ...image('other'), sha256: 'c'.repeat(64) }, 1000, undefined, 'line-a'))!;
  const gone = (await images.add(image('gone'), 1000, undefined, 'line-a'))!;
  await images.retire(gone.id, 1500);
  assert.deepEqual((await copies.heldWithBytes('a'.repeat(64), 'line-a')).map((row) => row.name), ['one'], 'active ones, with those bytes');
  assert.deepEqual(await copies.heldWithBytes('a'.repeat(64), 'line-b'), []);
  assert.deepEqual((await copies.heldAt('line-a')).map((row) => row.name), ['one', 'other']);
  assert.deepEqual((await images.withBytes('a'.repeat(64))).map((row) => row.name), ['one']);
  assert.deepEqual((await images.namingFile('images/gone.img')).map((row) => [row.name, row.retired_at]), [['gone', 1500]], 'retired rows too');

  const two = (await images.add(image('two'), 2000, undefined, 'line-b'))!;
  await copies.completeFromOwnFile(two.id, 'line-a', BIG, '12:34', 2100);
  assert.deepEqual(await copies.get(two.id, 'line-a'), {
    image_id: two.id, station: 'line-a', state: 'complete', bytes_done: BIG, bytes_total: BIG, source_station: 'line-a', error: null, file_identity: '12:34', broken: null, updated_at: 2100,
  });
  assert.deepEqual((await copies.missingAt('line-a')).map((row) => row.name), []);
  assert.equal(one.id + 1, other.id);
});

testOnBothDatabases('a copy of no image, or of an unknown state, is refused by the database', async (_t, { db }) => {
  const { images } = await setUp({ db } as StationDatabase);
  const { id } = (await images.add(image('os'), 1000))!;
  const row = (imageId: number, state: string) => ({ image_id: imageId, station: 'x', state, updated_at: 1 }) as never;
  await assert.rejects(db.insertInto('image_copies').values(row(id + 1000, 'complete')).execute(), /foreign key/i);
  await assert.rejects(db.insertInto('image_copies').values(row(id, 'copied')).execute(), /check constraint/i);
});
