import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { decodeZeroRuns, encodeZeroRuns, ZERO_BLOCK_BYTES, type ZeroRun } from '../../src/stations/zero-runs.js';

// The unmapped gaps of a bmap image cross between stations with their zeros left out.

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function* pieces(data: Buffer, size: number) {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

/** The bytes the runs stand for. */
const expand = (runs: ZeroRun[]) => Buffer.concat(runs.map((run) => (run.kind === 'data' ? run.bytes : Buffer.alloc(run.length))));

test('a range of zeros with a little data goes as a few records, and decodes to the same bytes however the stream is cut', async () => {
  const range = Buffer.alloc(8 * 1024 * 1024 + 1000); // not a whole number of blocks
  randomBytes(100).copy(range, 3 * ZERO_BLOCK_BYTES + 7); // one block with data in it
  range[range.length - 1] = 1; // and the short last block
  const encoded = Buffer.concat(await collect(encodeZeroRuns(pieces(range, 1024 * 1024))));
  assert.ok(encoded.length < 2 * ZERO_BLOCK_BYTES + 100, `${encoded.length} bytes on the wire for ${range.length}`);
  for (const cut of [1, 7, 9, 4096, encoded.length]) {
    const runs = await collect(decodeZeroRuns(pieces(encoded, cut)));
    assert.ok(expand(runs).equals(range), `cut every ${cut} bytes`);
    assert.deepEqual(runs.map((run) => run.kind), ['zeros', 'data', 'zeros', 'data']);
  }
});

test('data only, and nothing: as they are', async () => {
  const data = randomBytes(3 * ZERO_BLOCK_BYTES);
  assert.ok(expand(await collect(decodeZeroRuns(encodeZeroRuns(pieces(data, 5000))))).equals(data));
  assert.deepEqual(await collect(encodeZeroRuns(pieces(Buffer.alloc(0), 1))), []);
});

test('a stream cut inside a record, or not of records, is refused with a sentence', async () => {
  const encoded = Buffer.concat(await collect(encodeZeroRuns(pieces(randomBytes(1000), 1000))));
  await assert.rejects(collect(decodeZeroRuns(pieces(encoded.subarray(0, encoded.length - 1), 100))), /ended inside a record \(\d+ bytes left\)/);
  await assert.rejects(collect(decodeZeroRuns(pieces(Buffer.from('HTTP/1.1 200 OK\r\n'), 100))), /not a zero-runs record/);
});
