import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { removeIfPresent, STREAM_CHUNK_BYTES } from './files.js';

export interface HashedWriteResult {
  bytes: number;
  sha256: string;
}

export type WriteFailure = 'cut' | 'too_long' | 'too_short' | 'disk_full' | 'io';

/** Why a streamed body did not become a complete file; the partial file is already gone. */
export class StreamWriteError extends Error {
  override name = 'StreamWriteError';
  constructor(
    readonly failure: WriteFailure,
    readonly bytes: number,
    message: string,
  ) {
    super(message);
  }
}

export interface HashedWriteOptions {
  /** When known, a body of any other length is refused (and never kept). */
  expectedBytes?: number;
  onProgress?: (bytes: number) => void;
  signal?: AbortSignal;
}

/**
 * Streams `source` into a new file at `path` while hashing it, and fsyncs it. On any failure the file is removed
 * and a StreamWriteError says why; memory use stays at a few chunks whatever the size.
 */
export async function writeHashed(source: Readable, path: string, options: HashedWriteOptions = {}): Promise<HashedWriteResult> {
  const { expectedBytes, onProgress, signal } = options;
  const hash = createHash('sha256');
  let bytes = 0;
  const meter = new Transform({
    highWaterMark: STREAM_CHUNK_BYTES,
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      if (expectedBytes !== undefined && bytes > expectedBytes) {
        done(new StreamWriteError('too_long', bytes, `body is longer than the announced ${expectedBytes} bytes`));
        return;
      }
      hash.update(chunk);
      onProgress?.(bytes);
      done(null, chunk);
    },
  });

  try {
    // flush: fsync before close, so that a later rename publishes bytes that are on disk.
    const sink = createWriteStream(path, { flags: 'wx', mode: 0o640, highWaterMark: STREAM_CHUNK_BYTES, flush: true });
    await pipeline(source, meter, sink, { signal });
  } catch (error) {
    await removeIfPresent(path);
    throw asWriteError(error, bytes, expectedBytes);
  }
  if (expectedBytes !== undefined && bytes !== expectedBytes) {
    await removeIfPresent(path);
    throw new StreamWriteError('too_short', bytes, `body ended after ${bytes} of the announced ${expectedBytes} bytes`);
  }
  return { bytes, sha256: hash.digest('hex') };
}

function asWriteError(error: unknown, bytes: number, expectedBytes: number | undefined): StreamWriteError {
  if (error instanceof StreamWriteError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  const of = expectedBytes === undefined ? '' : ` of ${expectedBytes}`;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new StreamWriteError('disk_full', bytes, `the server's disk is full (after ${bytes}${of} bytes)`);
  }
  if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ABORT_ERR' || (error as Error).message === 'aborted') {
    return new StreamWriteError('cut', bytes, `the connection was cut after ${bytes}${of} bytes`);
  }
  return new StreamWriteError('io', bytes, `writing failed after ${bytes}${of} bytes: ${(error as Error).message}`);
}
