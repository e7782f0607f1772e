import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { writeBlockImage } from '../../src/blockmap/image-writer.js';
import { StreamWriteError } from '../../src/shared/stream-errors.js';
import { tempDir } from '../helpers/server.js';

const pieces = (...sizes: number[]) => sizes.map((size, i) => Buffer.alloc(size, i + 1));

test('a complete body is written whole, with its sha256, size and block map', async (t) => {
  const path = join(tempDir(t), 'out');
  const data = pieces(1000, 3000, 5);
  const result = await writeBlockImage(Readable.from(data), path, { expectedBytes: 4005 });
  const whole = Buffer.concat(data);
  assert.equal(result.size, 4005);
  assert.equal(result.sha256, createHash('sha256').update(whole).digest('hex'));
  assert.deepEqual(readFileSync(path), whole);
  assert.deepEqual(result.chunks.map((c) => [c.offset, c.length]), [[0, 4005]]);
});

test('a multi-MiB body with zero MiBs comes out byte for byte, with holes, and its sparse hash is its hash', async (t) => {
  const path = join(tempDir(t), 'out');
  const MiB = 1024 * 1024;
  const whole = Buffer.alloc(5 * MiB + 17);
  whole.fill(7, 0, MiB + 3); // data runs across stage boundaries
  whole.fill(9, 3 * MiB, 4 * MiB + 100); // MiB 2 stays all zeros: a hole
  whole.fill(1, 5 * MiB); // a short tail
  // Pieces of odd sizes, so stages fill from several reads while earlier writes are in flight.
  const source = Readable.from((function* () {
    for (let at = 0; at < whole.length; at += 300_007) yield whole.subarray(at, Math.min(at + 300_007, whole.length));
  })());
  const result = await writeBlockImage(source, path, { expectedBytes: whole.length });
  assert.deepEqual(readFileSync(path), whole);
  const sha256 = createHash('sha256').update(whole).digest('hex');
  assert.equal(result.sha256, sha256);
  assert.equal(result.sparseSha256, sha256, 'without a bmap only zeros are unmapped');
  assert.ok(statSync(path).blocks * 512 < whole.length, 'the all-zero MiB is a hole');
});

test('a body shorter or longer than announced leaves no file', async (t) => {
  const dir = tempDir(t);
  await assert.rejects(writeBlockImage(Readable.from(pieces(100)), join(dir, 'short'), { expectedBytes: 200 }), (error: unknown) => {
    return error instanceof StreamWriteError && error.failure === 'too_short' && error.bytes === 100;
  });
  assert.equal(existsSync(join(dir, 'short')), false);
  await assert.rejects(writeBlockImage(Readable.from(pieces(100, 150)), join(dir, 'long'), { expectedBytes: 200 }), (error: unknown) => {
    return error instanceof StreamWriteError && error.failure === 'too_long';
  });
  assert.equal(existsSync(join(dir, 'long')), false);
});

test('a source that breaks mid-stream is reported as cut and leaves no file', async (t) => {
  const path = join(tempDir(t), 'cut');
  const source = new Readable({ read() {} });
  source.push(Buffer.alloc(500, 1));
  setImmediate(() => source.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })));
  await assert.rejects(writeBlockImage(source, path), (error: unknown) => error instanceof StreamWriteError && error.failure === 'cut');
  assert.equal(existsSync(path), false);
});
