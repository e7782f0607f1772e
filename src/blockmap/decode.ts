import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { DecompressStream } from 'zstd-napi';
import { holdErrorsForReader, StreamWriteError } from '../shared/stream-errors.js';
import { DecodeError, runDecoder, type Program, type ProgramOutput } from './decoder-programs.js';
import { HEAD_BYTES, sniffFormat, type ImageEncoding } from './formats.js';
import { unzipSingle } from './unzip.js';

export { DecodeError } from './decoder-programs.js';
export type { ImageEncoding } from './formats.js';

export interface DecodedImage extends ProgramOutput {
  encoding: ImageEncoding;
}

export interface DecodeOptions {
  /** Where a .zip is spooled while it is read (its directory is at its end). */
  spoolDir: string;
}

const ACCEPTED = 'upload the raw image (.img), or it compressed as .gz, .xz, .zst, .bz2, .lz4 or a zip holding only it';

/** Decoders Node lacks run as Debian's programs, reading stdin and writing stdout. */
const PROGRAMS: Record<'xz' | 'bzip2' | 'lz4', Program> = {
  xz: { command: 'xz', args: ['--decompress', '--stdout'], debian: 'xz-utils' },
  bzip2: { command: 'bzip2', args: ['--decompress', '--stdout'], debian: 'bzip2' },
  lz4: { command: 'lz4', args: ['-d', '-c'], debian: 'lz4' },
};

/**
 * Reads the first HEAD_BYTES (or all of a shorter body) without losing any. The head is handed
 * back rather than unshifted: an unshift after a short body's 'end' is dropped (1–5-byte
 * uploads used to be stored empty that way).
 */
async function readHead(source: Readable): Promise<Buffer> {
  const head: Buffer[] = [];
  let length = 0;
  while (length < HEAD_BYTES) {
    const chunk = source.read() as Buffer | null;
    if (chunk) {
      head.push(chunk);
      length += chunk.length;
      continue;
    }
    if (source.readableEnded) break;
    if (source.errored || source.destroyed) throw new StreamWriteError('cut', length, `the connection was cut after ${length} bytes`);
    await new Promise<void>((resolve) => {
      const done = () => {
        source.off('readable', done).off('end', done).off('close', done);
        resolve();
      };
      source.on('readable', done).on('end', done).on('close', done);
    });
  }
  return Buffer.concat(head);
}

/** The whole body again: the head read while sniffing, then the rest of the stream. */
async function* withHead(head: Buffer, rest: Readable): AsyncGenerator<Buffer> {
  yield head;
  yield* rest as AsyncIterable<Buffer>;
}

/**
 * The raw image bytes of an upload, whatever it was compressed with, told apart by content
 * (formats.ts): gzip and zstd decode in process; xz, bzip2 and lz4 through Debian's programs;
 * a zip holding one file through unzip. Known formats that are not images are refused.
 */
export async function decodeImage(source: Readable, options: DecodeOptions): Promise<DecodedImage> {
  holdErrorsForReader(source);
  const head = await readHead(source);
  if (head.length === 0) throw new DecodeError('the image is empty (0 bytes)');
  const sniffed = sniffFormat(head);
  if ('refused' in sniffed) throw new DecodeError(`the upload is ${sniffed.refused}, which is not an image: ${ACCEPTED}`);
  const { encoding } = sniffed;
  const body = withHead(head, source);
  if (encoding === 'raw') return { encoding, raw: body, done: Promise.resolve(), stop: () => undefined };
  if (encoding === 'zip') return { encoding, ...(await unzipSingle(body, options.spoolDir)) };
  if (encoding === 'gzip' || encoding === 'zstd') {
    const decoder = encoding === 'gzip' ? createGunzip({ chunkSize: 1024 * 1024 }) : new DecompressStream();
    const raw = new PassThrough({ highWaterMark: 1024 * 1024 });
    const done = pipeline(body, decoder, raw).catch((error: Error) => {
      throw new DecodeError(`the ${encoding} data is damaged or cut: ${error.message}`);
    });
    done.catch(() => undefined); // handled by whoever awaits it, maybe after it settles
    return { encoding, raw, done, stop: () => raw.destroy() };
  }
  return { encoding, ...runDecoder(PROGRAMS[encoding], `${encoding} data`, body) };
}

/**
 * Runs `consume` on the decoded bytes and waits for decoding to finish too. When the bytes
 * failed or ended early (a damaged .gz), the decoder's reason is the one worth reporting; when
 * the consumer gave up on its own midway (a full disk), its reason is, and the decoder is stopped.
 */
export async function consumeDecoded<T>(decoded: DecodedImage, consume: (raw: AsyncIterable<Buffer>) => Promise<T>): Promise<T> {
  let read: 'reading' | 'ended' | 'failed' = 'reading';
  async function* watched() {
    try {
      yield* decoded.raw;
      read = 'ended';
    } catch (error) {
      read = 'failed';
      throw error;
    }
  }
  let result: T;
  try {
    result = await consume(watched());
  } catch (error) {
    const midway = read === 'reading';
    if (midway) decoded.stop();
    const decodeFailure = await decoded.done.then(
      () => undefined,
      (failure: unknown) => failure,
    );
    throw midway ? error : (decodeFailure ?? error);
  }
  await decoded.done;
  return result;
}
