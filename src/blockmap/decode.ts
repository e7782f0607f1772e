import { spawn } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { DecompressStream } from 'zstd-napi';
import { holdErrorsForReader, StreamWriteError } from '../shared/stream-errors.js';

export type ImageEncoding = 'raw' | 'gzip' | 'xz' | 'zstd';

const MAGIC: Array<[ImageEncoding, number[]]> = [
  ['gzip', [0x1f, 0x8b]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
];

export class DecodeError extends Error {
  override name = 'DecodeError';
}

/** Reads the first bytes to tell .img from .img.gz / .img.xz / .img.zst (by content, not name). */
async function sniff(source: Readable): Promise<ImageEncoding> {
  const head: Buffer[] = [];
  let length = 0;
  while (length < 6) {
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
  const start = Buffer.concat(head);
  source.unshift(start);
  for (const [encoding, magic] of MAGIC) {
    if (start.length >= magic.length && magic.every((byte, i) => start[i] === byte)) return encoding;
  }
  return 'raw';
}

/**
 * The raw image bytes of an upload, whatever it was compressed with. gzip and zstd decode in
 * process; xz through the xz program (Debian xz-utils), as Node has no xz decoder.
 * `done` settles when decoding has finished or failed (a truncated .gz is an error, not a short image).
 */
export async function decodeImage(source: Readable): Promise<{ encoding: ImageEncoding; raw: Readable; done: Promise<void> }> {
  holdErrorsForReader(source);
  const encoding = await sniff(source);
  if (encoding === 'raw') return { encoding, raw: source, done: Promise.resolve() };
  if (encoding === 'gzip' || encoding === 'zstd') {
    const decoder = encoding === 'gzip' ? createGunzip({ chunkSize: 1024 * 1024 }) : new DecompressStream();
    const raw = new PassThrough({ highWaterMark: 1024 * 1024 });
    const done = pipeline(source, decoder, raw).catch((error: Error) => {
      throw new DecodeError(`the ${encoding} data is damaged or cut: ${error.message}`);
    });
    done.catch(() => undefined); // handled by whoever awaits it, maybe after it settles
    return { encoding, raw, done };
  }
  const xz = spawn('xz', ['--decompress', '--stdout'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  xz.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<void>((resolve, reject) => {
    xz.on('error', (error) => reject(new DecodeError(`cannot decompress .xz: ${error.message} (install the xz-utils package)`)));
    xz.on('exit', (code) => (code === 0 ? resolve() : reject(new DecodeError(`the xz data is damaged or cut: ${stderr.trim() || `xz exit ${code}`}`))));
  });
  const fed = pipeline(source, xz.stdin).catch(() => undefined);
  const done = Promise.all([fed, exited]).then(() => undefined);
  done.catch(() => undefined); // handled by whoever awaits it, maybe after it settles
  return { encoding, raw: xz.stdout, done };
}

/**
 * Runs `consume` on the decoded bytes and waits for decoding to finish too. When both fail (a
 * damaged .gz ends the stream early), the decoder's reason is the one worth reporting.
 */
export async function consumeDecoded<T>(decoded: { raw: Readable; done: Promise<void> }, consume: (raw: Readable) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await consume(decoded.raw);
  } catch (error) {
    const decodeFailure = await decoded.done.then(
      () => undefined,
      (failure: unknown) => failure,
    );
    throw decodeFailure ?? error;
  }
  await decoded.done;
  return result;
}
