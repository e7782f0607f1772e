import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { removeIfPresent } from '../shared/files.js';
import { asWriteError, holdErrorsForReader, StreamWriteError } from '../shared/stream-errors.js';
import { BmapError, createBmapHash, type Bmap } from './bmap.js';
import { createChunker, type Chunk } from './chunker.js';

/** What the import of an image (or a backup) learned, once, as its bytes went by. */
export interface BlockImage {
  size: number;
  sha256: string;
  /** The image with unmapped ranges as zeros: what a full-image byte match must hash to. */
  sparseSha256: string;
  mappedBytes: number;
  chunks: Chunk[];
  mapSource: 'zeros' | 'bmap';
}

const STAGE_BYTES = 1024 * 1024;
/**
 * Written data is flushed to disk in the background every this many bytes. Otherwise a GB-sized
 * body sits in the page cache until the final fsync, which then writes it all while nothing
 * else happens; this way the disk works while the body is still arriving.
 */
const SYNC_EVERY_BYTES = 64 * 1024 * 1024;
const ZERO_STAGE = Buffer.alloc(STAGE_BYTES);

export interface BlockImageOptions {
  bmap?: Bmap;
  /** When known, a body of any other length is refused. */
  expectedBytes?: number;
  onProgress?: (bytes: number) => void;
}

/**
 * Streams an image into a new sparse file (all-zero MiBs become holes, so a mostly empty eMMC
 * backup takes little disk) while hashing it whole, chunking its mapped data and hashing each
 * chunk, and checking the bmap's range checksums when there is one. One pass, a few MiB of
 * memory whatever the size. On any failure the file is removed and a StreamWriteError says why.
 * With `path` null it only reads: the block map of a file already stored.
 */
export async function writeBlockImage(source: Readable | AsyncIterable<Buffer>, path: string | null, options: BlockImageOptions = {}): Promise<BlockImage> {
  const { bmap, expectedBytes, onProgress } = options;
  holdErrorsForReader(source);
  const whole = createHash('sha256');
  const chunker = createChunker(bmap?.ranges);
  const rangeCheck = bmap && createRangeChecker(bmap);
  const file = path === null ? undefined : await open(path, 'wx', 0o640);
  let size = 0;
  // Two stages: one fills while the other's write is in flight, so hashing overlaps disk I/O and
  // no buffer is allocated per MiB (steady memory, no garbage for the collector).
  const stages = [Buffer.allocUnsafeSlow(STAGE_BYTES), Buffer.allocUnsafeSlow(STAGE_BYTES)];
  let stage = stages[0]!;
  let staged = 0;
  let writing: Promise<unknown> = Promise.resolve();
  let syncing: Promise<void> | undefined;
  let syncError: unknown;
  let unsynced = 0;

  const flush = async () => {
    if (staged === 0) return;
    const piece = stage.subarray(0, staged);
    whole.update(piece);
    chunker.push(size, piece);
    rangeCheck?.push(size, piece);
    await writing;
    // An all-zero MiB is left as a hole: the file stays sparse.
    if (file && !piece.equals(ZERO_STAGE.subarray(0, staged))) {
      writing = file.write(piece, 0, staged, size);
      writing.catch(() => undefined); // surfaces at the next await, not as an unhandled rejection
      unsynced += staged;
      if (unsynced >= SYNC_EVERY_BYTES && !syncing) {
        unsynced = 0;
        syncing = writing
          .then(() => file.datasync())
          .catch((error: unknown) => void (syncError ??= error))
          .finally(() => void (syncing = undefined));
      }
    }
    size += staged;
    staged = 0;
    stage = stage === stages[0] ? stages[1]! : stages[0]!;
    onProgress?.(size);
  };

  try {
    for await (const data of source as AsyncIterable<Buffer>) {
      let at = 0;
      while (at < data.length) {
        const n = Math.min(data.length - at, STAGE_BYTES - staged);
        data.copy(stage, staged, at, at + n);
        staged += n;
        at += n;
        if (staged === STAGE_BYTES) await flush();
      }
      if (expectedBytes !== undefined && size + staged > expectedBytes) {
        throw new StreamWriteError('too_long', size + staged, `body is longer than the announced ${expectedBytes} bytes`);
      }
    }
    await flush();
    await writing;
    await syncing;
    if (syncError) throw syncError;
    if (expectedBytes !== undefined && size !== expectedBytes) {
      throw new StreamWriteError('too_short', size, `body ended after ${size} of the announced ${expectedBytes} bytes`);
    }
    if (bmap && bmap.imageSize !== size) throw new BmapError(`the bmap describes a ${bmap.imageSize}-byte image, this one has ${size} bytes`);
    rangeCheck?.finish();
    if (file) {
      await file.truncate(size); // the trailing holes count too
      await file.sync();
      await file.close();
    }
  } catch (error) {
    await writing.catch(() => undefined);
    await syncing;
    await file?.close().catch(() => undefined);
    if (path !== null) await removeIfPresent(path);
    throw error instanceof BmapError ? error : asWriteError(error, size + staged, expectedBytes);
  }
  const mapped = chunker.finish(size);
  const sha256 = whole.digest('hex');
  return {
    size,
    sha256,
    sparseSha256: mapped.sparseSha256 ?? sha256,
    mappedBytes: mapped.mappedBytes,
    chunks: mapped.chunks,
    mapSource: bmap ? 'bmap' : 'zeros',
  };
}

/**
 * Checks each bmap range's checksum, of the bmap's type, as the image streams past (bmaptool's
 * own guarantee: BmapCopy hashes each range it copies). A range without a checksum is not hashed.
 */
function createRangeChecker(bmap: Bmap) {
  let index = 0;
  const hashFor = (i: number): Hash | undefined => (bmap.checksumType && bmap.ranges[i]?.checksum ? createBmapHash(bmap.checksumType) : undefined);
  let hash = hashFor(0);
  const check = () => {
    const range = bmap.ranges[index]!;
    if (hash && hash.digest('hex') !== range.checksum) {
      const blocks = `${range.start / bmap.blockSize}-${Math.ceil(range.end / bmap.blockSize) - 1}`;
      throw new BmapError(`the image does not match its bmap: range ${blocks} has another ${bmap.checksumType} checksum`);
    }
    index += 1;
    hash = hashFor(index);
  };
  return {
    push(offset: number, data: Buffer) {
      let at = 0;
      while (at < data.length && index < bmap.ranges.length) {
        const range = bmap.ranges[index]!;
        const position = offset + at;
        if (position >= range.end) {
          check();
          continue;
        }
        if (position < range.start) {
          at += Math.min(range.start - position, data.length - at);
          continue;
        }
        const n = Math.min(range.end - position, data.length - at);
        hash?.update(data.subarray(at, at + n));
        at += n;
        if (position + n === range.end) check();
      }
    },
    finish() {
      if (index < bmap.ranges.length) throw new BmapError('the image ended before the last range of its bmap');
    },
  };
}
