import type { Db } from '../db/open.js';
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

export interface ChunkRow {
  idx: number;
  offset: number;
  length: number;
  sha256: string;
  zoffset: number | null;
  zlength: number | null;
}

export function createBlockMapStore(db: Db) {
  const insertMap = db.prepare<{ size: number; mapped: number; count: number; sparse: string; source: string; now: number }>(`
    INSERT INTO block_maps (image_size, mapped_bytes, chunk_count, sparse_sha256, source, created_at)
    VALUES (@size, @mapped, @count, @sparse, @source, @now)`);
  const insertChunk = db.prepare<[number, number, number, number, string]>(
    'INSERT INTO block_map_chunks (map_id, idx, offset, length, sha256) VALUES (?, ?, ?, ?, ?)',
  );
  const byId = db.prepare<[number], BlockMapRow>('SELECT * FROM block_maps WHERE id = ?');
  const chunksOf = db.prepare<[number], ChunkRow>(
    'SELECT idx, offset, length, sha256, zoffset, zlength FROM block_map_chunks WHERE map_id = ? ORDER BY idx',
  );
  const setFrame = db.prepare<[number, number, number, number]>(
    'UPDATE block_map_chunks SET zoffset = ?, zlength = ? WHERE map_id = ? AND idx = ?',
  );
  const setCache = db.prepare<[string, number, number]>('UPDATE block_maps SET cache_file = ?, cache_bytes = ? WHERE id = ?');
  const rechecked = db.prepare<[number]>('UPDATE block_maps SET needs_recheck = 0 WHERE id = ?');
  const uncached = db.prepare<[], { id: number }>(`
    SELECT m.id FROM block_maps m WHERE m.cache_file IS NULL AND (
      EXISTS (SELECT 1 FROM images i WHERE i.block_map_id = m.id AND i.retired_at IS NULL) OR
      EXISTS (SELECT 1 FROM backups b WHERE b.block_map_id = m.id AND b.deleted_at IS NULL))`);

  const holder = db.prepare<[number, number], { file: string }>(`
    SELECT file FROM images WHERE block_map_id = ? AND retired_at IS NULL
    UNION ALL SELECT file FROM backups WHERE block_map_id = ? AND deleted_at IS NULL LIMIT 1`);

  return {
    /** A live image or backup file whose bytes this map describes (relative to the data dir). */
    fileFor: (id: number) => holder.get(id, id)?.file,
    add: db.transaction((image: BlockImage, now: number): number => {
      const { lastInsertRowid } = insertMap.run({
        size: image.size,
        mapped: image.mappedBytes,
        count: image.chunks.length,
        sparse: image.sparseSha256,
        source: image.mapSource,
        now,
      });
      const id = Number(lastInsertRowid);
      for (const chunk of image.chunks) insertChunk.run(id, chunk.idx, chunk.offset, chunk.length, chunk.sha256);
      return id;
    }),
    get: (id: number) => byId.get(id),
    chunks: (id: number): ChunkRow[] => chunksOf.all(id),
    plainChunks: (id: number): Chunk[] => chunksOf.all(id).map(({ idx, offset, length, sha256 }) => ({ idx, offset, length, sha256 })),
    saveCache: db.transaction((id: number, file: string, bytes: number, chunks: CachedChunk[]) => {
      for (const chunk of chunks) setFrame.run(chunk.zoffset, chunk.zlength, id, chunk.idx);
      setCache.run(file, bytes, id);
    }),
    needingCache: () => uncached.all().map((row) => row.id),
    markRechecked: (id: number) => rechecked.run(id),
  };
}

export type BlockMapStore = ReturnType<typeof createBlockMapStore>;
