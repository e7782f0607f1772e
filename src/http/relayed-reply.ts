import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import type { FastifyReply } from 'fastify';
import { AppError } from '../shared/errors.js';

/** What describes a file body, passed on as the other station sent it. */
const PASSED = ['content-type', 'content-length', 'content-range', 'accept-ranges', 'etag', 'content-disposition'];

/**
 * Sends another station's answer on: its status, the headers of its body, and the body itself
 * streamed (Fastify pipes it, and destroys it when the requester goes: the other station's
 * request is cut with it). The other station refusing this one (401/403, its secret) is no fault
 * of the requester's: a 502 that says so.
 */
export function sendRelayed(reply: FastifyReply, answer: Response) {
  if (answer.status === 401 || answer.status === 403) {
    void answer.body?.cancel();
    throw new AppError(502, 'bad_gateway', `the station that holds it refused this one (${answer.status}): do both share one database, and so one station secret?`);
  }
  for (const name of PASSED) {
    const value = answer.headers.get(name);
    if (value !== null) reply.header(name, value);
  }
  reply.code(answer.status);
  return answer.body ? reply.send(Readable.fromWeb(answer.body as ReadableStream<Uint8Array>)) : reply.send();
}
