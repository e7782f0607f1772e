import { createReadStream } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Connection } from './connection.js';
import { CliError, EXIT } from './errors.js';

export interface UploadProgress {
  (bytesSent: number): void;
}

/** The admin HTTP API as the CLI sees it: JSON in, JSON out, errors as one sentence. */
export function createApiClient(connection: Connection) {
  const headers = { authorization: `Bearer ${connection.token}` };
  /** The server's clock at its last reply (HTTP Date, whole seconds): device times are in its terms. */
  let serverDate: number | undefined;

  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${connection.server}${path}`, {
        method,
        headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw unreachable(error);
    }
    const date = Date.parse(response.headers.get('date') ?? '');
    if (Number.isFinite(date)) serverDate = date;
    const text = await response.text();
    return parseReply<T>(response.status, text);
  }

  function parseReply<T>(status: number, text: string): T {
    let data: unknown = undefined;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON: reported below with the status.
    }
    if (status >= 200 && status < 300) return data as T;
    const message = (data as { message?: string } | undefined)?.message ?? `HTTP ${status} ${text.slice(0, 200)}`;
    if (status === 401) throw new CliError(`the server refused the admin token (${connection.tokenOrigin}): ${message}`, EXIT.unreachable);
    throw new CliError(`the server refused: ${message}`, EXIT.failed);
  }

  function unreachable(error: unknown): CliError {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (error as Error).message;
    const hint = connection.serverOrigin === 'the default'
      ? 'is `cm4prov serve` running, or is it elsewhere (--server URL or CM4PROV_SERVER)?'
      : `is \`cm4prov serve\` running there (URL ${connection.serverOrigin})?`;
    return new CliError(`cannot reach the server at ${connection.server} (${why}); ${hint}`, EXIT.unreachable);
  }

  return {
    /** The server's clock at its last reply (whole seconds); the local clock before any reply. */
    serverNow: () => serverDate ?? Date.now(),
    get: <T>(path: string) => call<T>('GET', path),
    post: <T>(path: string, body?: unknown) => call<T>('POST', path, body ?? {}),
    patch: <T>(path: string, body: unknown) => call<T>('PATCH', path, body),
    delete: <T>(path: string) => call<T>('DELETE', path),
    /** A small text body (e.g. a bmap's XML). */
    async postText<T>(path: string, text: string): Promise<T> {
      let response: Response;
      try {
        response = await fetch(`${connection.server}${path}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/xml' }, body: text });
      } catch (error) {
        throw unreachable(error);
      }
      return parseReply<T>(response.status, await response.text());
    },

    /** Streams a local file as a request body (never read whole into memory). */
    async upload<T>(path: string, file: string, size: number, onProgress?: UploadProgress): Promise<T> {
      const url = new URL(`${connection.server}${path}`);
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      let sent = 0;
      const meter = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          sent += chunk.length;
          onProgress?.(sent);
          done(null, chunk);
        },
      });
      return new Promise<T>((resolve, reject) => {
        const request = send(url, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': size },
        });
        request.on('response', (response: IncomingMessage) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => {
            try {
              resolve(parseReply<T>(response.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
            } catch (error) {
              reject(error);
            }
          });
        });
        request.on('error', (error) => reject(unreachable({ cause: error })));
        pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), meter, request).catch((error: Error) => {
          // The server may answer (and close) before the body is sent, e.g. a name conflict.
          if (!request.destroyed) reject(unreachable({ cause: error }));
        });
      });
    },
  };
}

export type ApiClient = ReturnType<typeof createApiClient>;
