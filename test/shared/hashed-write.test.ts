import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { StreamWriteError, writeHashed } from '../../src/shared/hashed-write.js';
import { tempDir } from '../helpers/server.js';

const chunks = (...sizes: number[]) => sizes.map((size, i) => Buffer.alloc(size, i + 1));

test('a complete body is written with its sha256 and length', async (t) => {
  const path = join(tempDir(t), 'out');
  const data = chunks(1000, 3000, 5);
  const result = await writeHashed(Readable.from(data), path, { expectedBytes: 4005 });
  const whole = Buffer.concat(data);
  assert.equal(result.bytes, 4005);
  assert.equal(result.sha256, createHash('sha256').update(whole).digest('hex'));
  assert.deepEqual(readFileSync(path), whole);
});

test('a body shorter or longer than announced leaves no file', async (t) => {
  const dir = tempDir(t);
  await assert.rejects(writeHashed(Readable.from(chunks(100)), join(dir, 'short'), { expectedBytes: 200 }), (error: unknown) => {
    return error instanceof StreamWriteError && error.failure === 'too_short' && error.bytes === 100;
  });
  assert.equal(existsSync(join(dir, 'short')), false);
  await assert.rejects(writeHashed(Readable.from(chunks(100, 150)), join(dir, 'long'), { expectedBytes: 200 }), (error: unknown) => {
    return error instanceof StreamWriteError && error.failure === 'too_long';
  });
  assert.equal(existsSync(join(dir, 'long')), false);
});

test('a source that breaks mid-stream is reported as cut and leaves no file', async (t) => {
  const path = join(tempDir(t), 'cut');
  const source = new Readable({ read() {} });
  source.push(Buffer.alloc(500));
  setImmediate(() => source.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })));
  await assert.rejects(writeHashed(source, path), (error: unknown) => error instanceof StreamWriteError && error.failure === 'cut');
  assert.equal(existsSync(path), false);
});
