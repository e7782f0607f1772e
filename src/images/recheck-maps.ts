import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { BlockMapStore } from '../blockmap/store.js';
import type { CacheBuilder } from '../blockmap/cache-builder.js';
import { writeBlockImage } from '../blockmap/image-writer.js';
import { MAX_CHUNK_BYTES } from '../blockmap/chunker.js';
import type { Clock } from '../shared/clock.js';
import type { EventBus } from '../shared/events.js';
import { STREAM_CHUNK_BYTES } from '../shared/files.js';
import type { ImageRow, ImageStore } from './store.js';

export interface MapRecheckDeps {
  store: ImageStore;
  blockMaps: BlockMapStore;
  caches: CacheBuilder;
  pathOf: (image: ImageRow) => string;
  /** Whether this station holds the image's file (several stations: the ones with it check it). */
  isLocal?: (image: ImageRow) => Promise<boolean>;
  clock: Clock;
  bus: EventBus;
  log: Logger;
}

/** Whether every chunk of the map hashes, in the image file, to the sha256 the map records. */
async function chunksMatch(path: string, chunks: Array<{ offset: number; length: number; sha256: string }>): Promise<boolean> {
  const file = await open(path, 'r');
  const buffer = Buffer.allocUnsafe(MAX_CHUNK_BYTES);
  try {
    for (const chunk of chunks) {
      const { bytesRead } = await file.read(buffer, 0, chunk.length, chunk.offset);
      const sha256 = createHash('sha256').update(buffer.subarray(0, bytesRead)).digest('hex');
      if (bytesRead !== chunk.length || sha256 !== chunk.sha256) return false;
    }
    return true;
  } finally {
    await file.close();
  }
}

/**
 * Once per map (migration 0009), in the background: a map made from a bmap by an earlier version
 * is checked against its image file, chunk by chunk. A map that does not match (its merged gaps
 * held bytes, hashed as zeros) is replaced by a map of the file's non-zero blocks, so the image
 * deploys again; the bmap itself was never kept, so its ranges cannot be rebuilt.
 */
export async function recheckBmapMaps(deps: MapRecheckDeps): Promise<number> {
  const { store, blockMaps, caches, pathOf, clock, bus, log } = deps;
  let replaced = 0;
  for (const image of await store.list()) {
    const map = image.block_map_id === null ? undefined : await blockMaps.get(image.block_map_id);
    if (!map?.needs_recheck || (deps.isLocal && !(await deps.isLocal(image)))) continue;
    try {
      if (await chunksMatch(pathOf(image), await blockMaps.plainChunks(map.id))) {
        await blockMaps.markRechecked(map.id);
        continue;
      }
      const scanned = await writeBlockImage(createReadStream(pathOf(image), { highWaterMark: STREAM_CHUNK_BYTES }), null);
      const mapId = await blockMaps.add(scanned, clock.now());
      const replacedHere = await store.setBlockMap(image.id, mapId, map.id);
      await blockMaps.markRechecked(map.id);
      if (!replacedHere) continue; // another station replaced it meanwhile
      caches.enqueue({ mapId, rawPath: pathOf(image) });
      bus.emit('image.changed', { name: image.name });
      replaced += 1;
      log.warn({ image: image.name }, 'the block map made from this image\'s bmap by an earlier version did not match its bytes; replaced by a map of its non-zero blocks');
    } catch (error) {
      log.warn({ err: error, image: image.name }, 'could not check the block map of an image; it will be checked at the next start');
    }
  }
  return replaced;
}
