import { createHash, type Hash } from 'node:crypto';
import type { BmapRange } from './bmap.js';

/** Zero detection works in 4 KiB blocks, the filesystem and bmap default. */
export const BLOCK_SIZE = 4096;
/** Unit of transfer, verification and resume. */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;
/** Zero gaps shorter than this stay inside a chunk: fewer, larger ranges; zeros cost nothing compressed. */
export const MERGE_GAP_BYTES = 128 * 1024;

export interface Chunk {
  idx: number;
  offset: number;
  length: number;
  sha256: string;
}

const ZEROS = Buffer.alloc(MAX_CHUNK_BYTES);

/**
 * Splits an image, fed in order, into the chunks a device must write: runs of non-zero 4 KiB
 * blocks (or the ranges of a bmap), with short zero gaps merged in, at most 4 MiB each, with the
 * sha256 of each. With a bmap it also hashes the "sparse image" (unmapped ranges as zeros), which
 * a full-image byte match is checked against; without one, only zeros are unmapped, so the sparse
 * image is the image itself and the caller's whole-image hash serves. Pure bookkeeping: no I/O.
 */
export function createChunker(bmapRanges?: BmapRange[]) {
  const chunks: Chunk[] = [];
  const sparse = bmapRanges ? createHash('sha256') : undefined;
  let sparseAt = 0; // sparse hash covers [0, sparseAt)
  let current: { offset: number; length: number; hash: Hash } | undefined;
  let pendingZeros = 0; // zero bytes after the current chunk's last data, not yet taken in
  let rangeIndex = 0;

  const feedSparseZerosTo = (offset: number) => {
    if (!sparse) return;
    while (sparseAt < offset) {
      const n = Math.min(offset - sparseAt, ZEROS.length);
      sparse?.update(ZEROS.subarray(0, n));
      sparseAt += n;
    }
  };
  const close = () => {
    if (!current) return;
    chunks.push({ idx: chunks.length, offset: current.offset, length: current.length, sha256: current.hash.digest('hex') });
    current = undefined;
    pendingZeros = 0;
  };
  /** Appends mapped bytes at `offset` (which follows the current chunk, or starts a new one). */
  const addData = (offset: number, data: Buffer) => {
    let at = 0;
    while (at < data.length) {
      if (current && (offset + at - (current.offset + current.length) !== pendingZeros || pendingZeros > MERGE_GAP_BYTES)) close();
      if (current && current.length + pendingZeros + Math.min(data.length - at, BLOCK_SIZE) > MAX_CHUNK_BYTES) close();
      if (!current) {
        feedSparseZerosTo(offset + at);
        current = { offset: offset + at, length: 0, hash: createHash('sha256') };
      } else if (pendingZeros) {
        current.hash.update(ZEROS.subarray(0, pendingZeros));
        sparse?.update(ZEROS.subarray(0, pendingZeros));
        sparseAt += pendingZeros;
        current.length += pendingZeros;
        pendingZeros = 0;
      }
      const n = Math.min(data.length - at, MAX_CHUNK_BYTES - current.length);
      const piece = data.subarray(at, at + n);
      current.hash.update(piece);
      sparse?.update(piece);
      sparseAt += n;
      current.length += n;
      at += n;
    }
  };
  const addZeros = (length: number) => {
    if (!current) return;
    pendingZeros += length;
    if (pendingZeros > MERGE_GAP_BYTES) close();
  };
  /**
   * Bytes outside a bmap's ranges. The device must not write them (`bmaptool copy` does not), and
   * a chunk is hashed and served as the image's real bytes: so a gap merges into a chunk only when
   * it is all zeros (writing zeros where the target is discarded changes nothing); else it ends it.
   */
  const addUnmapped = (data: Buffer) => {
    if (!current) return;
    if (pendingZeros + data.length > MERGE_GAP_BYTES || data.compare(ZEROS, 0, data.length) !== 0) close();
    else addZeros(data.length);
  };

  return {
    chunks,
    /**
     * Takes the next block-aligned piece of the image. Without a bmap, zero blocks are gaps; with
     * one, whatever lies outside its ranges is, zero or not (and only an all-zero gap may merge).
     */
    push(offset: number, data: Buffer) {
      if (bmapRanges) {
        let at = 0;
        while (at < data.length) {
          const position = offset + at;
          while (rangeIndex < bmapRanges.length && bmapRanges[rangeIndex]!.end <= position) rangeIndex += 1;
          const range = bmapRanges[rangeIndex];
          if (!range) {
            addUnmapped(data.subarray(at));
            return;
          }
          if (position < range.start) {
            const n = Math.min(range.start - position, data.length - at);
            addUnmapped(data.subarray(at, at + n));
            at += n;
            continue;
          }
          const n = Math.min(range.end - position, data.length - at);
          addData(position, data.subarray(at, at + n));
          at += n;
        }
        return;
      }
      // Runs of zero / non-zero blocks, so that hashing works on slices, not 4 KiB at a time.
      let runStart = 0;
      let runIsZero: boolean | undefined;
      for (let at = 0; at < data.length; at += BLOCK_SIZE) {
        // compare() with offsets, not subarray(): no object per 4 KiB for the collector.
        const length = Math.min(BLOCK_SIZE, data.length - at);
        const zero = data.compare(ZEROS, 0, length, at, at + length) === 0;
        if (runIsZero !== undefined && zero !== runIsZero) {
          if (runIsZero) addZeros(at - runStart);
          else addData(offset + runStart, data.subarray(runStart, at));
          runStart = at;
        }
        runIsZero = zero;
      }
      if (runIsZero) addZeros(data.length - runStart);
      else if (runIsZero === false) addData(offset + runStart, data.subarray(runStart));
    },
    /** The image ended at `size`. */
    finish(size: number) {
      close();
      feedSparseZerosTo(size);
      return {
        chunks,
        mappedBytes: chunks.reduce((sum, chunk) => sum + chunk.length, 0),
        sparseSha256: sparse?.digest('hex'),
      };
    },
  };
}
