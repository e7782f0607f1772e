import assert from 'node:assert/strict';
import type { Chunk } from '../../src/blockmap/chunker.js';
import type { BlockImage } from '../../src/blockmap/image-writer.js';
import { createBlockMapStore } from '../../src/blockmap/store.js';
import type { StationDatabase } from '../../src/db/database.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// The block-map store on both databases (issue 15): maps of thousands of chunks, all or nothing.

const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;

/** `count` chunks of 4 MiB, every other one skipped (a hole); offsets pass 2^32 after 1024 of them. */
function chunksOf(count: number): Chunk[] {
  return Array.from({ length: count }, (_, idx) => ({ idx, offset: 2 * idx * CHUNK, length: CHUNK, sha256: idx.toString(16).padStart(64, '0') }));
}

const blockImage = (chunks: Chunk[], mapSource: 'zeros' | 'bmap' = 'zeros'): BlockImage => ({
  size: 2 * chunks.length * CHUNK,
  sha256: 'a'.repeat(64),
  sparseSha256: 'b'.repeat(64),
  mappedBytes: chunks.length * CHUNK,
  chunks,
  mapSource,
});

const countRows = async ({ db }: StationDatabase, table: 'block_maps' | 'block_map_chunks') =>
  (await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n;

testOnBothDatabases('a map of thousands of chunks is stored and read back whole, in order, offsets past 4 GiB as numbers', async (_t, { db }) => {
  const store = createBlockMapStore(db);
  const chunks = chunksOf(2345);
  const id = await store.add(blockImage(chunks, 'bmap'), 5000);
  assert.deepEqual(await store.get(id), {
    id,
    image_size: 2 * 2345 * CHUNK,
    mapped_bytes: 2345 * CHUNK,
    chunk_count: 2345,
    sparse_sha256: 'b'.repeat(64),
    source: 'bmap',
    cache_file: null,
    cache_bytes: null,
    created_at: 5000,
    needs_recheck: 0,
  });
  assert.deepEqual(await store.plainChunks(id), chunks);
  assert.deepEqual(await store.chunks(id), chunks.map((chunk) => ({ ...chunk, zoffset: null, zlength: null })));
  assert.equal(await store.get(id + 1), undefined);
  assert.deepEqual(await store.chunks(id + 1), []);
  const empty = await store.add(blockImage([]), 6000);
  assert.deepEqual([(await store.get(empty))!.chunk_count, await store.chunks(empty)], [0, []]);
});

testOnBothDatabases('add is all or nothing: a chunk refused in a later batch leaves no map and no chunk', async (_t, database) => {
  const store = createBlockMapStore(database.db);
  const chunks = chunksOf(1200);
  chunks[1100] = { ...chunks[1100]!, idx: 5 }; // a second chunk 5: the primary key refuses it
  await assert.rejects(store.add(blockImage(chunks), 5000));
  assert.equal(await countRows(database, 'block_maps'), 0);
  assert.equal(await countRows(database, 'block_map_chunks'), 0);
});

testOnBothDatabases("saveCache records every chunk's zstd frame and the cache file, all or nothing", async (_t, database) => {
  const store = createBlockMapStore(database.db);
  const chunks = chunksOf(1500);
  const id = await store.add(blockImage(chunks), 5000);
  const other = await store.add(blockImage(chunksOf(3)), 5000);
  let zoffset = 0;
  const cached = chunks.map((chunk) => {
    const frame = { ...chunk, zoffset, zlength: 1000 + chunk.idx };
    zoffset += frame.zlength;
    return frame;
  });
  await store.saveCache(id, `cache/map-${id}.zst`, zoffset, cached);
  assert.deepEqual(await store.chunks(id), cached);
  assert.deepEqual(await store.plainChunks(id), chunks, 'the plain chunks are as they were');
  const map = (await store.get(id))!;
  assert.deepEqual([map.cache_file, map.cache_bytes], [`cache/map-${id}.zst`, zoffset]);
  assert.deepEqual((await store.chunks(other)).map((chunk) => chunk.zoffset), [null, null, null], "another map's chunks are untouched");

  const refused = cached.map((chunk) => ({ ...chunk, zoffset: 0, zlength: 1 }));
  await assert.rejects(store.saveCache(other + 1000, 'cache/none.zst', 1, refused), 'frames of a map that does not exist (foreign key)');
  await assert.rejects(store.saveCache(id, 'cache/again.zst', 1, [...refused.slice(0, 600), { ...refused[600]!, sha256: null as unknown as string }]));
  assert.deepEqual(await store.chunks(id), cached, 'a refused save changes no frame');
  assert.equal((await store.get(id))!.cache_file, `cache/map-${id}.zst`);
});

testOnBothDatabases('needingCache lists the uncached maps of live images and backups; fileFor names a live file of the map', async (_t, database) => {
  const { db } = database;
  const store = createBlockMapStore(db);
  const map = () => store.add(blockImage(chunksOf(2)), 5000);
  const [ofImage, ofRetired, ofCached, ofBackup, ofDeleted, unused] = [await map(), await map(), await map(), await map(), await map(), await map()];
  const addImage = (name: string, block_map_id: number, retired_at: number | null = null) =>
    db.insertInto('images').values({ name, file: `images/${name}.img`, size: 1, sha256: 'a', source: 'upload', created_at: 1, retired_at, block_map_id }).execute();
  await addImage('live', ofImage);
  await addImage('retired', ofRetired, 2);
  await addImage('cached', ofCached);
  await store.saveCache(ofCached, 'cache/x.zst', 10, []);
  await db.insertInto('devices').values({ mac: 'dc:a6:32:00:00:01', first_seen_at: 1, last_seen_at: 1 }).execute();
  const addBackup = (file: string, block_map_id: number, deleted_at: number | null = null) =>
    db.insertInto('backups').values({ device_mac: 'dc:a6:32:00:00:01', file, size: 1, sha256: 'a', created_at: 1, deleted_at, block_map_id }).execute();
  await addBackup('backups/kept.img', ofBackup);
  await addBackup('backups/deleted.img', ofDeleted, 3);

  assert.deepEqual(await store.needingCache(), [ofImage, ofBackup]);
  assert.equal(await store.fileFor(ofImage), 'images/live.img');
  assert.equal(await store.fileFor(ofBackup), 'backups/kept.img');
  for (const id of [ofRetired, ofDeleted, unused]) assert.equal(await store.fileFor(id), undefined, `map ${id}`);
});

testOnBothDatabases('markRechecked clears the one-time recheck of a map', async (_t, { db }) => {
  const store = createBlockMapStore(db);
  const [a, b] = [await store.add(blockImage(chunksOf(1), 'bmap'), 1), await store.add(blockImage(chunksOf(1), 'bmap'), 1)];
  await db.updateTable('block_maps').set({ needs_recheck: 1 }).execute();
  await store.markRechecked(a);
  assert.equal((await store.get(a))!.needs_recheck, 0);
  assert.equal((await store.get(b))!.needs_recheck, 1);
});
