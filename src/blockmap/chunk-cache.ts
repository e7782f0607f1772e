import { open, rename } from 'node:fs/promises';
import { compress } from 'zstd-napi';
import { removeIfPresent } from '../shared/files.js';
import type { Chunk } from './chunker.js';

export interface CachedChunk extends Chunk {
  /** Where the chunk's zstd frame starts in the cache file, and its length. */
  zoffset: number;
  zlength: number;
}

/** zstd level 3: most of the size win for a fraction of the CPU of higher levels. */
const LEVEL = 3;

/**
 * Compresses each chunk of an image once, as its own zstd frame, into one cache file: a device
 * can fetch any run of chunks with one Range request and decompress the frames as one stream
 * (concatenated frames decode as the concatenation). Serving then costs no compression CPU.
 */
export async function buildChunkCache(
  rawPath: string,
  chunks: Chunk[],
  cachePath: string,
  options: { onProgress?: (done: number) => void; signal?: AbortSignal } = {},
): Promise<{ chunks: CachedChunk[]; bytes: number }> {
  const temp = `${cachePath}.part`;
  const raw = await open(rawPath, 'r');
  const out = await open(temp, 'w', 0o640).catch(async (error: unknown) => {
    await raw.close();
    throw error;
  });
  const cached: CachedChunk[] = [];
  let zoffset = 0;
  try {
    const buffer = Buffer.allocUnsafe(Math.max(...chunks.map((chunk) => chunk.length), 1));
    for (const chunk of chunks) {
      options.signal?.throwIfAborted();
      const { bytesRead } = await raw.read(buffer, 0, chunk.length, chunk.offset);
      if (bytesRead !== chunk.length) throw new Error(`the image file ended inside chunk ${chunk.idx}`);
      const frame = compress(buffer.subarray(0, chunk.length), { compressionLevel: LEVEL });
      await out.write(frame, 0, frame.length, zoffset);
      cached.push({ ...chunk, zoffset, zlength: frame.length });
      zoffset += frame.length;
      options.onProgress?.(chunk.idx + 1);
      // Let requests in between chunks: compressing 4 MiB takes ~15 ms of this thread.
      await new Promise((resolve) => setImmediate(resolve));
    }
    await out.sync();
    await out.close();
    await raw.close();
    await rename(temp, cachePath);
  } catch (error) {
    await out.close().catch(() => undefined);
    await raw.close().catch(() => undefined);
    await removeIfPresent(temp);
    throw error;
  }
  return { chunks: cached, bytes: zoffset };
}
