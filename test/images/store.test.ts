import assert from 'node:assert/strict';
import { createBlockMapStore } from '../../src/blockmap/store.js';
import type { StationDatabase } from '../../src/db/database.js';
import { createImageStore, type NewImage } from '../../src/images/store.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// The image store on both databases (issue 15): the same rows, refusals and conditional writes.

/** 32 GiB: an eMMC-sized image, past 32-bit integers (PostgreSQL's BIGINT must come back a number). */
const BIG = 32 * 1024 ** 3;

const image = (name: string, extra: Partial<NewImage> = {}): NewImage => ({
  name,
  file: `images/${name}.img`,
  size: 1000,
  sha256: 'a'.repeat(64),
  source: 'upload',
  origin: `${name}.img`,
  block_map_id: null,
  file_identity: '12:34',
  edges_sha256: 'b'.repeat(64),
  ...extra,
});

async function mapId({ db }: StationDatabase): Promise<number> {
  return createBlockMapStore(db).add({ size: 1, sha256: '', sparseSha256: 's'.repeat(64), mappedBytes: 0, chunks: [], mapSource: 'zeros' }, 1);
}

testOnBothDatabases('an added image reads back by id and by active name; the list is the active ones by name', async (_t, { db }) => {
  const store = createImageStore(db);
  const zeta = (await store.add(image('zeta', { size: BIG, source: 'golden' }), 1000))!;
  const alpha = (await store.add(image('alpha'), 2000))!;
  assert.deepEqual(zeta, {
    id: zeta.id,
    ...image('zeta', { size: BIG, source: 'golden' }),
    created_at: 1000,
    retired_at: null,
    file_removed: 0,
    broken: null,
  });
  assert.deepEqual(await store.get(zeta.id), zeta, 'numbers come back as numbers on both');
  assert.deepEqual(await store.byName('alpha'), alpha);
  assert.equal(await store.byName('beta'), undefined);
  assert.equal(await store.get(zeta.id + alpha.id + 1), undefined);
  assert.deepEqual((await store.list()).map((row) => row.name), ['alpha', 'zeta']);
});

testOnBothDatabases('a second active image of a name is refused: add gives undefined and changes nothing, a replacement included', async (_t, { db }) => {
  const store = createImageStore(db);
  const base = (await store.add(image('base'), 1000))!;
  const other = (await store.add(image('other'), 1000))!;
  assert.equal(await store.add(image('base', { file: 'images/second.img' }), 2000), undefined);
  assert.equal(await store.add(image('base'), 2000, other.id), undefined);
  assert.equal((await store.get(other.id))!.retired_at, null, 'the retirement in the refused transaction is undone');
  assert.deepEqual((await store.list()).map((row) => [row.id, row.file]), [
    [base.id, 'images/base.img'],
    [other.id, 'images/other.img'],
  ]);
});

testOnBothDatabases('a replacement retires the version it replaces in the same transaction', async (_t, { db }) => {
  const store = createImageStore(db);
  const v1 = (await store.add(image('golden', { source: 'golden' }), 1000))!;
  const v2 = (await store.add(image('golden', { source: 'golden', file: 'images/v2.img' }), 2000, v1.id))!;
  assert.equal((await store.get(v1.id))!.retired_at, 2000);
  assert.equal((await store.byName('golden'))!.id, v2.id);
});

testOnBothDatabases('two adds of one name at once (two stations): one wins, the other gets undefined', async (_t, { db }) => {
  const store = createImageStore(db);
  const results = await Promise.all([store.add(image('race', { file: 'images/a.img' }), 1000), store.add(image('race', { file: 'images/b.img' }), 1000)]);
  assert.equal(results.filter((row) => row === undefined).length, 1);
  const winner = results.find((row) => row !== undefined)!;
  assert.deepEqual(await store.byName('race'), winner);
  assert.equal((await store.list()).length, 1);
});

testOnBothDatabases('retire is conditional; a retired image keeps its row, frees its name and waits for its file to be removed', async (_t, { db }) => {
  const store = createImageStore(db);
  const old = (await store.add(image('base'), 1000))!;
  assert.equal(await store.retire(old.id, 1500), true);
  assert.equal(await store.retire(old.id, 1600), false, 'retired already');
  assert.equal((await store.get(old.id))!.retired_at, 1500);
  assert.equal(await store.byName('base'), undefined);
  assert.deepEqual(await store.list(), []);
  const next = (await store.add(image('base'), 2000))!;
  assert.deepEqual((await store.retiredWithFiles()).map((row) => row.id), [old.id]);
  await store.markFileRemoved(old.id);
  assert.deepEqual(await store.retiredWithFiles(), []);
  assert.equal((await store.get(old.id))!.file_removed, 1);
  assert.equal((await store.get(next.id))!.file_removed, 0);
});

testOnBothDatabases('images without a block map, and setBlockMap only while the map is still the one read', async (_t, database) => {
  const store = createImageStore(database.db);
  const [first, second] = [await mapId(database), await mapId(database)];
  const unmapped = (await store.add(image('old'), 1000))!;
  const retired = (await store.add(image('gone'), 1000))!;
  await store.retire(retired.id, 1100);
  await store.add(image('mapped', { block_map_id: first }), 1000);
  assert.deepEqual((await store.withoutBlockMap()).map((row) => row.name), ['old'], 'active ones only');

  assert.equal(await store.setBlockMap(unmapped.id, first, null), true);
  assert.equal(await store.setBlockMap(unmapped.id, second, null), false, 'mapped meanwhile: left as it is');
  assert.equal((await store.get(unmapped.id))!.block_map_id, first);
  assert.equal(await store.setBlockMap(unmapped.id, second, first), true, 'a replacement of the map it had');
  assert.equal((await store.get(unmapped.id))!.block_map_id, second);
  assert.deepEqual(await store.withoutBlockMap(), []);
});

testOnBothDatabases('setBaseline records the file facts; setBroken says whether it changed anything', async (_t, { db }) => {
  const store = createImageStore(db);
  const row = (await store.add(image('base', { file_identity: null, edges_sha256: null }), 1000))!;
  await store.setBaseline(row.id, '99:123456789', 'c'.repeat(64));
  assert.equal(await store.setBroken(row.id, 'its file is missing'), true);
  assert.equal(await store.setBroken(row.id, 'its file is missing'), false, 'marked already (another check said so)');
  const read = (await store.get(row.id))!;
  assert.deepEqual([read.file_identity, read.edges_sha256, read.broken], ['99:123456789', 'c'.repeat(64), 'its file is missing']);
  assert.equal(await store.setBroken(row.id, 'another reason'), true);
  assert.equal(await store.setBroken(row.id, null), true);
  assert.equal(await store.setBroken(row.id, null), false);
  assert.equal((await store.get(row.id))!.broken, null);
});

testOnBothDatabases('the default is the name of an active image; clearing it only clears that name; the golden version', async (_t, { db }) => {
  const store = createImageStore(db);
  await store.add(image('a'), 1000);
  await store.add(image('b'), 1000);
  const gone = (await store.add(image('gone'), 1000))!;
  await store.retire(gone.id, 1100);
  assert.equal(await store.defaultName(), undefined);
  assert.equal(await store.setDefaultName('a'), true);
  assert.equal(await store.setDefaultName('b'), true);
  assert.equal(await store.setDefaultName('gone'), false, 'a retired image');
  assert.equal(await store.setDefaultName('never'), false);
  assert.equal(await store.defaultName(), 'b');
  await store.clearDefaultName('a');
  assert.equal(await store.defaultName(), 'b', 'a default set meanwhile stays');
  await store.clearDefaultName('b');
  assert.equal(await store.defaultName(), undefined);

  assert.equal(await store.goldenVersion('line-a'), undefined);
  await db.insertInto('settings').values({ key: 'golden_version', value: '0:0:0' }).execute();
  assert.equal(await store.goldenVersion('line-a'), '0:0:0', 'what a server kept before stations, until it has its own');
  await store.setGoldenVersion('line-a', '1:2:3');
  await store.setGoldenVersion('line-a', '4:5:6');
  await store.setGoldenVersion('line-b', '7:8:9');
  assert.deepEqual([await store.goldenVersion('line-a'), await store.goldenVersion('line-b')], ['4:5:6', '7:8:9'], "each station's own file");
  assert.equal(await store.defaultName(), undefined, 'settings of their own');
});
