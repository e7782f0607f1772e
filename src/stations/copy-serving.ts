import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { cacheOnDisk, type BlockMapStore } from '../blockmap/store.js';
import type { FileToSend } from '../http/send-file.js';
import type { ImageCopyStore } from '../images/copies-store.js';
import type { ImageRow, ImageStore } from '../images/store.js';
import { AppError, conflict, notFound } from '../shared/errors.js';
import { STREAM_CHUNK_BYTES } from '../shared/files.js';
import { encodeZeroRuns } from './zero-runs.js';

/**
 * What this station gives the others of its image copies: the zstd chunk stream (the frames
 * devices get) and the raw bytes (for a bmap's unmapped gaps). Only from a complete copy not
 * known damaged.
 */
export function createCopyServing(deps: { images: Pick<ImageStore, 'get'>; copies: ImageCopyStore; blockMaps: BlockMapStore; station: string; dataDir: string }) {
  const { images, copies, blockMaps, station, dataDir } = deps;

  async function completeCopy(imageId: number): Promise<ImageRow> {
    const image = await images.get(imageId);
    if (!image || image.retired_at !== null) throw notFound(`there is no image ${imageId}`);
    const copy = await copies.get(imageId, station);
    if (copy?.state !== 'complete') throw conflict(`station ${station} has no complete copy of image '${image.name}'`);
    if (copy.broken) throw conflict(`station ${station}'s copy of image '${image.name}' is damaged (${copy.broken})`);
    return image;
  }

  return {
    async chunksFile(imageId: number): Promise<FileToSend> {
      const image = await completeCopy(imageId);
      const map = image.block_map_id === null ? undefined : await blockMaps.get(image.block_map_id);
      if (!map?.cache_file) throw conflict(`image '${image.name}' has no compressed chunks yet`);
      // A copy made here from a file of the same bytes may still be fetching its map's cache.
      if (!cacheOnDisk(dataDir, map)) throw conflict(`station ${station} has no compressed chunks of image '${image.name}' yet`);
      return { path: join(dataDir, map.cache_file), size: map.cache_bytes!, etag: `zstd-chunks:${image.sha256}` };
    },
    async rawFile(imageId: number): Promise<FileToSend> {
      const image = await completeCopy(imageId);
      return { path: join(dataDir, image.file), size: image.size, etag: `sha256:${image.sha256}` };
    },
    /** Bytes [start, end) of the image with their runs of zeros left out (zero-runs.ts). */
    async sparseRange(imageId: number, start: number, end: number): Promise<Readable> {
      const image = await completeCopy(imageId);
      if (start >= end || end > image.size) throw new AppError(416, 'range_not_satisfiable', `bytes ${start} to ${end} are not a range of image '${image.name}' (${image.size} bytes)`);
      const file = createReadStream(join(dataDir, image.file), { start, end: end - 1, highWaterMark: STREAM_CHUNK_BYTES });
      return Readable.from(encodeZeroRuns(file));
    },
  };
}

export type CopyServing = ReturnType<typeof createCopyServing>;
