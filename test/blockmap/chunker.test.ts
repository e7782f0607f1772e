import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { parseBmap } from '../../src/blockmap/bmap.js';
import { createChunker, MAX_CHUNK_BYTES } from '../../src/blockmap/chunker.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** An image of zeros with data written at the given [offset, length] places. */
function image(size: number, islands: Array<[number, number]>): Buffer {
  const data = Buffer.alloc(size);
  for (const [offset, length] of islands) randomBytes(length).copy(data, offset);
  return data;
}

function chunk(data: Buffer, pieceSize = 64 * KiB, bmap?: Parameters<typeof createChunker>[0]) {
  const chunker = createChunker(bmap);
  for (let at = 0; at < data.length; at += pieceSize) chunker.push(at, data.subarray(at, Math.min(at + pieceSize, data.length)));
  return chunker.finish(data.length);
}

test('data islands become chunks at their offsets; short zero gaps stay inside, long ones split; each chunk has its sha256', () => {
  const data = image(32 * MiB, [
    [0, 8 * KiB],
    [8 * KiB + 64 * KiB, 4 * KiB], // 64 KiB gap: merged into the first chunk
    [4 * MiB, 100], // a long gap before it: a new chunk
    [20 * MiB, 9 * MiB], // longer than a chunk: split at 4 MiB
  ]);
  const { chunks, mappedBytes, sparseSha256 } = chunk(data);
  assert.deepEqual(chunks.map((c) => [c.offset, c.length]), [
    [0, 76 * KiB],
    [4 * MiB, 4 * KiB],
    [20 * MiB, MAX_CHUNK_BYTES],
    [24 * MiB, MAX_CHUNK_BYTES],
    [28 * MiB, 1 * MiB],
  ]);
  for (const c of chunks) assert.equal(c.sha256, sha(data.subarray(c.offset, c.offset + c.length)), `chunk ${c.idx}`);
  assert.equal(mappedBytes, 76 * KiB + 4 * KiB + 9 * MiB);
  assert.equal(sparseSha256, undefined, 'with zero detection the sparse image is the image: no second hash');
});

test('the pieces the data arrives in do not change the chunks', () => {
  const data = image(9 * MiB + 123, [[3 * MiB + 5, 2 * MiB], [9 * MiB, 100]]);
  const reference = chunk(data, 1 * MiB);
  for (const piece of [4 * KiB, 4 * KiB * 7, 1 * MiB + 4 * KiB]) assert.deepEqual(chunk(data, piece), reference, `pieces of ${piece}`);
  assert.equal(reference.chunks.at(-1)!.offset + reference.chunks.at(-1)!.length, 9 * MiB + 123, 'the last chunk ends with the image');
});

test('with a bmap its ranges are the map, even over non-zero bytes outside them, and the sparse hash zeroes those', () => {
  const data = image(8 * MiB, [[0, 1 * MiB], [6 * MiB, 4 * KiB]]);
  const bmap = parseBmap(`<?xml version="1.0" ?>
<bmap version="2.0">
  <ImageSize> ${8 * MiB} </ImageSize>
  <BlockSize> 4096 </BlockSize>
  <BlocksCount> 2048 </BlocksCount>
  <ChecksumType> sha256 </ChecksumType>
  <BlockMap>
    <Range chksum="${sha(data.subarray(0, 512 * KiB))}"> 0-127 </Range>
  </BlockMap>
</bmap>`);
  const { chunks, sparseSha256 } = chunk(data, 64 * KiB, bmap.ranges);
  assert.deepEqual(chunks.map((c) => [c.offset, c.length]), [[0, 512 * KiB]]);
  const asMapped = Buffer.alloc(8 * MiB);
  data.copy(asMapped, 0, 0, 512 * KiB);
  assert.equal(sparseSha256, sha(asMapped));
});

test('bmap files of both versions parse; broken ones are refused with a reason', () => {
  const v1 = parseBmap('<bmap version="1.3"><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize><BlockMap><Range sha1="ABCD"> 1 </Range></BlockMap></bmap>');
  assert.deepEqual(v1, { imageSize: 8192, blockSize: 4096, checksumType: 'sha1', ranges: [{ start: 4096, end: 8192, checksum: 'abcd' }] });
  assert.throws(() => parseBmap('<html/>'), /not a bmap file/);
  assert.throws(() => parseBmap('<bmap version="2.0"><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize><BlockMap></BlockMap></bmap>'), /maps no ranges/);
  assert.throws(() => parseBmap('<bmap version="2.0"><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize><BlockMap><Range> 5 </Range></BlockMap></bmap>'), /outside the image/);
});
