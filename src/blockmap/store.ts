import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { inTransaction, type Queries } from '../db/database.js';
import type { CachedChunk } from './chunk-cache.js';
import type { Chunk } from './chunker.js';
import type { BlockImage } from './image-writer.js';

export interface BlockMapRow {
  id: number;
  image_size: number;
  mapped_bytes: number;
  chunk_count: number;
  sparse_sha256: string;
  source: 'zeros' | 'bmap';
  cache_file: string | null;
  cache_bytes: number | null;
  created_at: number;
  /** 1: made from a bmap by an earlier version; checked against its file once (images/recheck-maps.ts). */
  needs_recheck: number;
}

/**
 * Whether the map's zstd cache file is in this data folder. With several stations the map is
 * shared and its cache may so far be only on another station (stations/copy-fetcher.ts).
 */
export const cacheOnDisk = (dataDir: string, map: Pick<BlockMapRow, 'cache_file'>) => map.cache_file !== null && existsSync(join(dataDir, map.cache_file));

export interface ChunkRow {
  idx: number;
  offset: number;
  length: number;
  sha256: string;
  zoffset: number | null;
  zlength: number | null;
}

/**
 * Chunk rows per statement: a map has thousands (4 MiB each), one statement per row would be
 * thousands of round trips to PostgreSQL. At most 7 values a row stay far below both databases'
 * limit on bound parameters (SQLite 32766, PostgreSQL 65535).
 */
const ROWS_PER_INSERT = 500;

function batches<T>(items: T[]): T[][] {
  const out: T[][] = [];
  for (let start = 0; start < items.length; start += ROWS_PER_INSERT) out.push(items.slice(start, start + ROWS_PER_INSERT));
  return out;
}

export function createBlockMapStore(db: Queries) {
  const chunks = (id: number) =>
    db
      .selectFrom('block_map_chunks')
      .select(['idx', 'offset', 'length', 'sha256', 'zoffset', 'zlength'])
      .where('map_id', '=', id)
      .orderBy('idx')
      .execute() as Promise<ChunkRow[]>;

  return {
    /** A live image or backup file whose bytes this map describes (relative to the data dir). */
    async fileFor(id: number): Promise<string | undefined> {
      const { rows } = await sql<{ file: string }>`SELECT file FROM images WHERE block_map_id = ${id} AND retired_at IS NULL
        UNION ALL SELECT file FROM backups WHERE block_map_id = ${id} AND deleted_at IS NULL LIMIT 1`.execute(db);
      return rows[0]?.file;
    },
    /** Stores a map and its chunks, all or nothing; returns the map's id. */
    add: (image: BlockImage, now: number): Promise<number> =>
      inTransaction(db, async (tx) => {
        const { id } = await tx
          .insertInto('block_maps')
          .values({
            image_size: image.size,
            mapped_bytes: image.mappedBytes,
            chunk_count: image.chunks.length,
            sparse_sha256: image.sparseSha256,
            source: image.mapSource,
            created_at: now,
          })
          .returning('id')
          .executeTakeFirstOrThrow();
        for (const batch of batches(image.chunks)) {
          await tx
            .insertInto('block_map_chunks')
            .values(batch.map(({ idx, offset, length, sha256 }) => ({ map_id: id, idx, offset, length, sha256 })))
            .execute();
        }
        return id;
      }),
    get: (id: number) => db.selectFrom('block_maps').selectAll().where('id', '=', id).executeTakeFirst() as Promise<BlockMapRow | undefined>,
    chunks,
    plainChunks: async (id: number): Promise<Chunk[]> => (await chunks(id)).map(({ idx, offset, length, sha256 }) => ({ idx, offset, length, sha256 })),
    /**
     * Records the built cache: each chunk's zstd frame, then the file. The frames are written as
     * an upsert of whole chunk rows, a few hundred a statement; the rows exist already (the
     * chunks came from this map), so only their frame columns change.
     */
    saveCache: (id: number, file: string, bytes: number, cached: CachedChunk[]): Promise<void> =>
      inTransaction(db, async (tx) => {
        for (const batch of batches(cached)) {
          await tx
            .insertInto('block_map_chunks')
            .values(batch.map(({ idx, offset, length, sha256, zoffset, zlength }) => ({ map_id: id, idx, offset, length, sha256, zoffset, zlength })))
            .onConflict((oc) => oc.columns(['map_id', 'idx']).doUpdateSet((eb) => ({ zoffset: eb.ref('excluded.zoffset'), zlength: eb.ref('excluded.zlength') })))
            .execute();
        }
        await tx.updateTable('block_maps').set({ cache_file: file, cache_bytes: bytes }).where('id', '=', id).execute();
      }),
    /** Maps of live images or backups whose compressed cache is not built. */
    async needingCache(): Promise<number[]> {
      const rows = await db
        .selectFrom('block_maps as m')
        .select('m.id')
        .where('m.cache_file', 'is', null)
        .where(({ or, exists, selectFrom }) =>
          or([
            exists(selectFrom('images as i').select('i.id').whereRef('i.block_map_id', '=', 'm.id').where('i.retired_at', 'is', null)),
            exists(selectFrom('backups as b').select('b.id').whereRef('b.block_map_id', '=', 'm.id').where('b.deleted_at', 'is', null)),
          ]),
        )
        .orderBy('m.id')
        .execute();
      return rows.map((row) => row.id);
    },
    markRechecked: async (id: number) => {
      await db.updateTable('block_maps').set({ needs_recheck: 0 }).where('id', '=', id).execute();
    },
  };
}

export type BlockMapStore = ReturnType<typeof createBlockMapStore>;
