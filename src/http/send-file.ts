import { closeSync, fstatSync, openSync } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../shared/errors.js';
import { sendFileBody, type FileTransfer } from './file-body.js';

export interface FileToSend {
  path: string;
  size: number;
  /** A strong validator; we use the content's sha256, so it is stable across restarts. */
  etag: string;
  /** Offered as the download's file name (Content-Disposition). */
  downloadName?: string;
}

export type ByteRange = { start: number; end: number };

/**
 * Reads a `Range: bytes=...` header (RFC 9110 §14.2) for a file of `size` bytes.
 * Returns the range, 'unsatisfiable', or undefined to serve the whole file; several ranges
 * are answered with the whole file, which the RFC allows.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * Opens the file and checks it has the recorded size, before any header goes out: a file
 * deleted or cut behind the server's back is a 409 with a sentence, never a 200 whose body
 * ends short (or is empty). Synchronous: an open and an fstat, no data read.
 */
function openRecorded(file: FileToSend): number {
  const what = file.downloadName ? `'${file.downloadName}'` : 'the file';
  let fd: number;
  try {
    fd = openSync(file.path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new AppError(409, 'file_missing', `${what} cannot be sent: ${code === 'ENOENT' ? 'it is missing on the server' : `the server cannot open it (${code})`}`);
  }
  const size = fstatSync(fd).size;
  if (size !== file.size) {
    closeSync(fd);
    throw new AppError(409, 'file_changed', `${what} cannot be sent: it has ${size} bytes on the server, not the recorded ${file.size}`);
  }
  return fd;
}

/**
 * Serves a file with Content-Length, ETag, Accept-Ranges, Range/If-Range and HEAD, streaming
 * it from disk through reused 1 MiB buffers. Returns the transfer (undefined for HEAD, 304 and
 * 416) so the caller can watch or cut it. Throws a 409 AppError when the file is not as recorded.
 */
export function sendFile(request: FastifyRequest, reply: FastifyReply, file: FileToSend): FileTransfer | undefined {
  const fd = openRecorded(file);
  const etag = `"${file.etag}"`;
  reply.header('accept-ranges', 'bytes').header('etag', etag).header('content-type', 'application/octet-stream');
  if (file.downloadName) reply.header('content-disposition', `attachment; filename="${file.downloadName.replace(/"/g, '')}"`);

  if (request.headers['if-none-match'] === etag) {
    closeSync(fd);
    reply.code(304).send();
    return undefined;
  }
  const ifRange = request.headers['if-range'];
  const range = ifRange === undefined || ifRange === etag ? parseRange(request.headers.range, file.size) : undefined;
  if (range === 'unsatisfiable') {
    closeSync(fd);
    reply.code(416).header('content-range', `bytes */${file.size}`).send();
    return undefined;
  }
  const { start, end } = range ?? { start: 0, end: file.size - 1 };
  const length = file.size === 0 ? 0 : end - start + 1;
  if (range) reply.code(206).header('content-range', `bytes ${start}-${end}/${file.size}`);
  reply.header('content-length', length);

  if (request.method === 'HEAD' || length === 0) {
    closeSync(fd);
    reply.send();
    return undefined;
  }
  // The body bypasses Fastify's send (it would want a stream that allocates per read): the
  // headers set above go out as they are.
  reply.hijack();
  reply.raw.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders);
  return sendFileBody(reply.raw, fd, start, end);
}
