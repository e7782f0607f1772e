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

/** Names what went wrong with a stream being stored: a cut connection, a full disk, or I/O. */
export function asWriteError(error: unknown, bytes: number, expectedBytes: number | undefined): Error {
  if (error instanceof StreamWriteError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  const of = expectedBytes === undefined ? '' : ` of ${expectedBytes}`;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new StreamWriteError('disk_full', bytes, `the server's disk is full (after ${bytes}${of} bytes)`);
  if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ABORT_ERR' || (error as Error).message === 'aborted') {
    return new StreamWriteError('cut', bytes, `the connection was cut after ${bytes}${of} bytes`);
  }
  if (error instanceof Error && error.name !== 'Error') return error;
  // The code, not the message: an fs message names the server's own paths.
  return new StreamWriteError('io', bytes, `writing failed after ${bytes}${of} bytes (${code || 'I/O error'})`);
}

/**
 * Keeps an 'error' that a stream emits before its reader starts (while the reader awaits
 * something else) from crashing the process. The reader still sees it: reading a destroyed
 * stream throws its error.
 */
export function holdErrorsForReader(source: unknown) {
  const emitter = source as { on?: (event: string, listener: () => void) => unknown };
  emitter.on?.('error', () => undefined);
}
