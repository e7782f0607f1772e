import { createHash, randomUUID } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { decompress } from 'zstd-napi';
import type { BlockMapRow, ChunkRow } from '../blockmap/store.js';
import type { ImageRow } from '../images/store.js';
import { removeIfPresent, STREAM_CHUNK_BYTES } from '../shared/files.js';
import { expectStatus, PeerError, type Peer, type StationClient } from './client.js';
import { decodeZeroRuns } from './zero-runs.js';

/** Why a copy could not be made, in words for image_copies.error and the log. */
export class CopyError extends Error {
  override name = 'CopyError';
}

export interface CopyJob {
  image: ImageRow;
  map: BlockMapRow;
  /** The map's chunks, in order, each with its frame in the cache (zoffset, zlength). */
  chunks: ChunkRow[];
  peer: Peer;
  /** Only the map's zstd cache: the image file is here already (made from this station's own file). */
  cacheOnly?: boolean;
}

/** The fetched files, in `<data-dir>/tmp/`, checked whole: the caller moves them into place or removes them. */
export interface FetchedCopy {
  imagePath: string;
  cachePath: string;
}

/** A stream cut this many times in a row without a frame arriving fails the fetch. */
const CUTS_WITHOUT_PROGRESS = 3;
/** Unmapped gaps closer than this are fetched in one request (the chunk between is skipped). */
const GAP_MERGE_BYTES = 1024 * 1024;
const ZEROS = Buffer.alloc(1024 * 1024);

/**
 * The bytes a station fetches of an image: its mapped chunks, and for a map made from a bmap
 * the unmapped gaps too (bmaptool leaves out blocks that may hold data; a map of zeros leaves
 * out only zeros, which stay holes).
 */
export function bytesToFetch(image: ImageRow, map: BlockMapRow): number {
  return map.source === 'bmap' ? image.size : map.mapped_bytes;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * Fetches another station's copy of an image: its zstd chunk stream (the frames devices get,
 * Range from the first frame still missing), each frame decoded and hashed against the map and
 * written at its chunk's offset, the frames kept as this station's cache file; then the gaps
 * of a bmap's map, their zeros left out on the wire; then the whole file hashed against the
 * image's sha256. With a map of zeros everything outside the chunks is zeros, so the whole file
 * is hashed as the chunks come, in order, and not read again; with a bmap's, what was written is
 * read back and the holes between are hashed as zeros.
 */
export async function fetchCopy(job: CopyJob, deps: { client: StationClient; dataDir: string; signal: AbortSignal; onProgress: (bytes: number) => void }): Promise<FetchedCopy> {
  const { image, map, chunks } = job;
  checkFramesContiguous(chunks, map.cache_bytes ?? 0);
  const stem = join(deps.dataDir, 'tmp', `copy-${image.id}-${randomUUID()}`);
  const fetched = { imagePath: `${stem}.img`, cachePath: `${stem}.zst` };
  let imageFile: FileHandle | undefined;
  let cacheFile: FileHandle | undefined;
  try {
    imageFile = await open(fetched.imagePath, 'wx+', 0o640); // read back at the end
    cacheFile = await open(fetched.cachePath, 'wx', 0o640);
    await imageFile.truncate(image.size); // holes until written: the file stays sparse
    let done = 0;
    const progress = (bytes: number) => deps.onProgress((done += bytes));
    const inOrder = map.source === 'zeros' ? inOrderHash() : undefined;
    await fetchFrames(job, { image: imageFile, cache: cacheFile }, deps, progress, inOrder);
    const gapsWritten: Array<{ offset: number; length: number }> = [];
    if (map.source === 'bmap') await fetchGaps(job, imageFile, deps, progress, gapsWritten);
    await Promise.all([imageFile.sync(), cacheFile.sync()]);
    const whole = inOrder ? inOrder.digest(image.size) : await sha256WithHoles(imageFile, image.size, [...chunks, ...gapsWritten], deps.signal);
    await Promise.all([imageFile.close(), cacheFile.close()]);
    [imageFile, cacheFile] = [undefined, undefined];
    if (whole !== image.sha256) throw new CopyError(`the copy from ${job.peer.name} hashes to ${whole}, not to the image's sha256 ${image.sha256}`);
    return fetched;
  } catch (error) {
    await imageFile?.close().catch(() => undefined);
    await cacheFile?.close().catch(() => undefined);
    await Promise.all([removeIfPresent(fetched.imagePath), removeIfPresent(fetched.cachePath)]);
    throw error;
  }
}

/**
 * Fetches only the zstd chunk stream of an image this station holds already (its copy was made
 * from a file of the same bytes here, under another map): every frame decoded and hashed against
 * the map, as in a whole copy. Returns the checked cache file in `<data-dir>/tmp/`.
 */
export async function fetchCache(job: CopyJob, deps: { client: StationClient; dataDir: string; signal: AbortSignal }): Promise<string> {
  checkFramesContiguous(job.chunks, job.map.cache_bytes ?? 0);
  const path = join(deps.dataDir, 'tmp', `copy-${job.image.id}-${randomUUID()}.zst`);
  let cacheFile: FileHandle | undefined;
  try {
    cacheFile = await open(path, 'wx', 0o640);
    await fetchFrames(job, { cache: cacheFile }, deps, () => undefined, undefined);
    await cacheFile.sync();
    await cacheFile.close();
    return path;
  } catch (error) {
    await cacheFile?.close().catch(() => undefined);
    await removeIfPresent(path);
    throw error;
  }
}

/** The cache holds every frame, in chunk order, one after the other: one Range fetches a run of them. */
function checkFramesContiguous(chunks: ChunkRow[], cacheBytes: number) {
  let at = 0;
  for (const chunk of chunks) {
    if (chunk.zoffset !== at || chunk.zlength === null) throw new CopyError(`the map's frame of chunk ${chunk.idx} is not where the one before it ends`);
    at += chunk.zlength;
  }
  if (at !== cacheBytes) throw new CopyError(`the map's frames end at byte ${at} of a ${cacheBytes}-byte cache`);
}

/**
 * sha256 of the new file: what was written (`written`) read back from it, the rest known to be
 * holes, hashed as zeros without reading them (on some filesystems reading a hole is as slow as
 * reading data).
 */
async function sha256WithHoles(file: FileHandle, size: number, written: Array<{ offset: number; length: number }>, signal: AbortSignal): Promise<string> {
  const hash = inOrderHash();
  const buffer = Buffer.allocUnsafe(STREAM_CHUNK_BYTES);
  let at = 0;
  for (const range of [...written].sort((x, y) => x.offset - y.offset)) {
    for (let offset = Math.max(at, range.offset); offset < range.offset + range.length; ) {
      if (signal.aborted) throw signal.reason;
      const want = Math.min(buffer.length, range.offset + range.length - offset);
      const { bytesRead } = await file.read(buffer, 0, want, offset);
      if (bytesRead !== want) throw new CopyError(`the new file ended at byte ${offset + bytesRead}, before its written data did`);
      hash.push(offset, buffer.subarray(0, want));
      offset += want;
    }
    at = Math.max(at, range.offset + range.length);
  }
  return hash.digest(size);
}

/** sha256 of a file written in order of offset, whatever lies between the pieces being zeros. */
function inOrderHash() {
  const hash = createHash('sha256');
  let at = 0;
  const zerosTo = (offset: number) => {
    for (; at < offset; at += Math.min(ZEROS.length, offset - at)) hash.update(ZEROS.subarray(0, Math.min(ZEROS.length, offset - at)));
  };
  return {
    push(offset: number, data: Buffer) {
      zerosTo(offset);
      hash.update(data);
      at += data.length;
    },
    digest(size: number) {
      zerosTo(size);
      return hash.digest('hex');
    },
  };
}

async function fetchFrames(
  job: CopyJob,
  files: { image?: FileHandle; cache: FileHandle },
  deps: { client: StationClient; signal: AbortSignal },
  progress: (bytes: number) => void,
  inOrder: ReturnType<typeof inOrderHash> | undefined,
) {
  const { image, map, chunks, peer } = job;
  let frame = Buffer.alloc(0);
  let next = 0;
  let cuts = 0;
  // One frame's writes in flight while the next is decoded and hashed (the disk works meanwhile).
  let writing: Promise<unknown> = Promise.resolve();
  const take = async (chunk: ChunkRow, bytes: Buffer) => {
    let decoded: Buffer;
    try {
      decoded = decompress(bytes);
    } catch (error) {
      throw new CopyError(`chunk ${chunk.idx} (at byte ${chunk.offset}) from ${peer.name} is not a zstd frame (${(error as Error).message})`);
    }
    if (decoded.length !== chunk.length || sha256(decoded) !== chunk.sha256) {
      throw new CopyError(`chunk ${chunk.idx} (at byte ${chunk.offset}) from ${peer.name} does not hash to the map's sha256: the copy there is damaged`);
    }
    inOrder?.push(chunk.offset, decoded);
    await writing;
    writing = Promise.all([files.cache.write(bytes, 0, bytes.length, chunk.zoffset!), files.image?.write(decoded, 0, decoded.length, chunk.offset)]);
    writing.catch(() => undefined); // surfaces at the next await of it
    progress(chunk.length);
  };
  while (next < chunks.length) {
    const from = chunks[next]!.zoffset!;
    const last = map.cache_bytes! - 1;
    const before = next;
    let filled = 0;
    try {
      const response = await expectStatus(peer, await deps.client.request(peer, `/api/station/images/${image.id}/chunks`, { headers: { range: `bytes=${from}-${last}` }, signal: deps.signal }), 206);
      const range = response.headers.get('content-range');
      if (range !== `bytes ${from}-${last}/${map.cache_bytes}`) throw new CopyError(`station ${peer.name} sent the chunk stream's ${range ?? 'whole body'}, not bytes ${from}-${last}/${map.cache_bytes}`);
      for await (const piece of response.body as unknown as AsyncIterable<Uint8Array>) {
        for (let at = 0; at < piece.length; ) {
          const chunk = chunks[next];
          if (!chunk) throw new CopyError(`station ${peer.name} sent more than the map's frames`);
          if (filled === 0) frame = Buffer.allocUnsafe(chunk.zlength!); // its own: written while the next one fills
          const n = Math.min(chunk.zlength! - filled, piece.length - at);
          frame.set(piece.subarray(at, at + n), filled);
          filled += n;
          at += n;
          if (filled < chunk.zlength!) continue;
          await take(chunk, frame.subarray(0, filled));
          filled = 0;
          next += 1;
        }
      }
      if (next < chunks.length) throw new Error('the stream ended early');
    } catch (error) {
      // Not reached, or refused: the fetch fails now (and is tried again later).
      if (deps.signal.aborted || error instanceof CopyError || error instanceof PeerError) throw error;
      // Cut in the middle (a network hiccup): go on from the first frame not taken whole.
      cuts = next > before ? 1 : cuts + 1;
      if (cuts >= CUTS_WITHOUT_PROGRESS) throw new CopyError(`the chunk stream from ${peer.name} broke off at chunk ${next}: ${(error as Error).message}`);
    }
  }
  await writing;
}

/** The ranges outside every chunk, and the requests that fetch them (near ones together). */
export function gapRequests(chunks: Array<{ offset: number; length: number }>, size: number, mergeBytes = GAP_MERGE_BYTES) {
  const gaps: Array<{ start: number; end: number }> = [];
  let at = 0;
  for (const chunk of chunks) {
    if (chunk.offset > at) gaps.push({ start: at, end: chunk.offset });
    at = chunk.offset + chunk.length;
  }
  if (size > at) gaps.push({ start: at, end: size });
  const requests: Array<{ start: number; end: number; gaps: typeof gaps }> = [];
  for (const gap of gaps) {
    const open = requests.at(-1);
    if (open && gap.start - open.end <= mergeBytes) {
      open.end = gap.end;
      open.gaps.push(gap);
    } else requests.push({ start: gap.start, end: gap.end, gaps: [gap] });
  }
  return requests;
}

/**
 * A bmap's unmapped gaps: their bytes with runs of zeros left out on the wire (zero-runs.ts),
 * written where they are not zeros (the rest stays holes).
 */
async function fetchGaps(
  job: CopyJob,
  file: FileHandle,
  deps: { client: StationClient; signal: AbortSignal },
  progress: (bytes: number) => void,
  written: Array<{ offset: number; length: number }>,
) {
  const { image, chunks, peer } = job;
  for (const request of gapRequests(chunks, image.size)) {
    const path = `/api/station/images/${image.id}/sparse?start=${request.start}&end=${request.end}`;
    const response = await expectStatus(peer, await deps.client.request(peer, path, { signal: deps.signal }), 200);
    let position = request.start;
    const advance = (length: number, data?: Buffer) => {
      const pieces: Array<Promise<unknown>> = [];
      for (const gap of request.gaps) {
        const start = Math.max(gap.start, position);
        const end = Math.min(gap.end, position + length);
        if (start >= end) continue;
        if (data) {
          pieces.push(file.write(data, start - position, end - start, start));
          written.push({ offset: start, length: end - start });
        }
        progress(end - start);
      }
      position += length;
      return Promise.all(pieces);
    };
    try {
      for await (const run of decodeZeroRuns(response.body as unknown as AsyncIterable<Uint8Array>)) {
        if (run.kind === 'zeros') await advance(run.length);
        else await advance(run.bytes.length, run.bytes);
        if (position > request.end) break;
      }
    } catch (error) {
      if (deps.signal.aborted) throw error;
      throw new CopyError(`the image's bytes ${request.start}-${request.end - 1} from ${peer.name} broke off at byte ${position}: ${(error as Error).message}`);
    }
    if (position !== request.end) throw new CopyError(`the image's bytes from ${peer.name} ended at ${position}, not ${request.end}`);
  }
}

