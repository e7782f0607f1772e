/**
 * A range of an image file with its runs of zeros left out, for the unmapped gaps of a bmap image
 * (copy-fetch.ts): bmaptool's map leaves out blocks that may hold data, so a copy must read them,
 * but they are mostly zeros, and zeros need not cross the network. The stream is records, each a
 * kind byte and a 64-bit length: 'D' followed by that many bytes, or 'Z' for that many zeros.
 */

/** Zeros are looked for in blocks of this size: a block with one byte set goes as data. */
export const ZERO_BLOCK_BYTES = 64 * 1024;
const HEADER_BYTES = 9;
const DATA = 0x44; // 'D'
const ZEROS = 0x5a; // 'Z'
const ZERO_BLOCK = Buffer.alloc(ZERO_BLOCK_BYTES);

const header = (kind: number, length: number) => {
  const head = Buffer.allocUnsafe(HEADER_BYTES);
  head[0] = kind;
  head.writeBigUInt64BE(BigInt(length), 1);
  return head;
};

const isZeros = (block: Buffer) => block.equals(ZERO_BLOCK.subarray(0, block.length));

/** Encodes `source` (the range's bytes, in order): consecutive zero blocks become one 'Z' record. */
export async function* encodeZeroRuns(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let zeros = 0;
  for await (const piece of source) {
    for (let at = 0; at < piece.length; at += ZERO_BLOCK_BYTES) {
      const block = piece.subarray(at, Math.min(piece.length, at + ZERO_BLOCK_BYTES));
      if (isZeros(block)) {
        zeros += block.length;
        continue;
      }
      if (zeros > 0) yield header(ZEROS, zeros);
      zeros = 0;
      yield Buffer.concat([header(DATA, block.length), block]);
    }
  }
  if (zeros > 0) yield header(ZEROS, zeros);
}

export type ZeroRun = { kind: 'data'; bytes: Buffer } | { kind: 'zeros'; length: number };

/** Decodes the records as they arrive; a record cut short or of an unknown kind throws. */
export async function* decodeZeroRuns(body: AsyncIterable<Uint8Array>): AsyncGenerator<ZeroRun> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of body) {
    pending = pending.length ? Buffer.concat([pending, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (;;) {
      if (pending.length < HEADER_BYTES) break;
      const kind = pending[0];
      const length = Number(pending.readBigUInt64BE(1));
      if (kind === ZEROS) {
        yield { kind: 'zeros', length };
        pending = pending.subarray(HEADER_BYTES);
        continue;
      }
      if (kind !== DATA || length > ZERO_BLOCK_BYTES) throw new Error(`not a zero-runs record (kind ${kind}, ${length} bytes)`);
      if (pending.length < HEADER_BYTES + length) break;
      yield { kind: 'data', bytes: pending.subarray(HEADER_BYTES, HEADER_BYTES + length) };
      pending = pending.subarray(HEADER_BYTES + length);
    }
  }
  if (pending.length > 0) throw new Error(`the zero-runs stream ended inside a record (${pending.length} bytes left)`);
}
