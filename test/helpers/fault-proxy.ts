import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import type { TestContext } from 'node:test';

/**
 * What the proxy does with one request for a job's image (or whatever `path` picks):
 * - `refuse`: answers 503 before any byte of the body, as a busy server would;
 * - `cut`: closes the connection before answering, as a pulled cable or a crashed server would;
 * - `silent`: accepts the request, never reads its body and never answers;
 * - `{ stallAfter: n }`: forwards the answer's head and its first n body bytes, then sends nothing more;
 * - `forward`: passes the request to the server.
 */
export type Fault = 'refuse' | 'cut' | 'silent' | { stallAfter: number } | 'forward';

export interface ProgressReport {
  phase: string;
  bytes_done: number;
  bytes_written?: number;
}

/** A device's word that an attempt failed and another follows (a progress report with `problem`). */
export interface RetryReport {
  phase: string;
  bytes_done: number;
  problem: string;
  /** How many progress reports came before it: a new attempt starts after this index. */
  after: number;
}

/**
 * A loopback HTTP proxy in front of the real server, for the job URLs a device is handed (start
 * the server with `publicUrl` set to the proxy's URL). The n-th request whose path matches
 * `path` (by default a job's image) gets `faults[n]` (`forward` once the list runs out, or the
 * last entry with `repeat`); every other request is forwarded. It records the progress each
 * device reports, in order.
 */
export async function startFaultProxy(t: TestContext, faults: Fault[], options: { repeat?: boolean; path?: RegExp } = {}) {
  const path = options.path ?? /^\/api\/device-jobs\/\d+\/image\?/;
  let target: URL | undefined;
  const progress: ProgressReport[] = [];
  const retries: RetryReport[] = [];
  const faulted: string[] = [];
  const stalled = new Set<ServerResponse>();
  const server = createServer((request, response) => {
    if (!target) throw new Error('the proxy has no server to forward to yet (call forwardTo)');
    if (path.test(request.url ?? '')) {
      const index = faulted.push(request.headers.range ?? 'none') - 1;
      const fault = faults[index] ?? (options.repeat ? faults.at(-1)! : 'forward');
      return answerWith(target, fault, request, response, stalled);
    }
    if (/^\/api\/device-jobs\/\d+\/progress\?/.test(request.url ?? '')) return recordProgress(target, request, response, progress, retries);
    void forward(target, request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** The server to forward to (known only once the server runs with this proxy as its public URL). */
    forwardTo(url: string) {
      target = new URL(url);
    },
    /** Progress the client reported, in order. */
    progress,
    retries,
    /** The Range header of each request that `path` picked, in order ('none' without one). */
    faulted,
    /** Cuts the connections that `stallAfter` holds open (at a moment the test chose, not a timeout). */
    endStalls() {
      for (const response of stalled) response.destroy();
      stalled.clear();
    },
  };
}

function answerWith(target: URL, fault: Fault, request: IncomingMessage, response: ServerResponse, stalled: Set<ServerResponse>) {
  if (fault === 'refuse') {
    response.writeHead(503, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ message: 'the server is busy' }));
  } else if (fault === 'cut') {
    request.socket.destroy();
  } else if (fault === 'silent') {
    // Nothing: an upload fills the socket buffers and then waits, a download waits for a head.
  } else if (fault === 'forward') {
    void forward(target, request, response);
  } else {
    forwardThenStall(target, fault.stallAfter, request, response, stalled);
  }
}

/** Passes a request to the server and its answer back, streaming both ways. */
async function forward(target: URL, request: IncomingMessage, response: ServerResponse, body?: Buffer) {
  const upstream = httpRequest({ host: target.hostname, port: target.port, method: request.method, path: request.url, headers: request.headers });
  const answered = new Promise<IncomingMessage>((resolve, reject) => upstream.once('response', resolve).once('error', reject));
  try {
    if (body) upstream.end(body);
    else await pipeline(request, upstream);
    const answer = await answered;
    response.writeHead(answer.statusCode ?? 502, answer.headers);
    await pipeline(answer, response);
  } catch {
    response.destroy();
    upstream.destroy();
  }
}

function forwardThenStall(target: URL, limit: number, request: IncomingMessage, response: ServerResponse, stalled: Set<ServerResponse>) {
  const upstream = httpRequest({ host: target.hostname, port: target.port, method: request.method, path: request.url, headers: request.headers });
  upstream.on('error', () => response.destroy());
  upstream.end();
  upstream.once('response', (answer) => {
    response.writeHead(answer.statusCode ?? 502, answer.headers);
    let sent = 0;
    answer.on('data', (chunk: Buffer) => {
      const part = chunk.subarray(0, Math.max(0, limit - sent));
      sent += part.length;
      if (part.length > 0) response.write(part);
      if (sent >= limit) {
        answer.destroy(); // nothing more, and the connection stays open
        stalled.add(response);
      }
    });
  });
}

/** Notes a progress report (form-urlencoded, as curl sends it), then forwards it unchanged. */
async function recordProgress(target: URL, request: IncomingMessage, response: ServerResponse, progress: ProgressReport[], retries: RetryReport[]) {
  const parts: Buffer[] = [];
  for await (const chunk of request) parts.push(chunk as Buffer);
  const body = Buffer.concat(parts);
  const fields = new URLSearchParams(body.toString());
  const written = fields.get('bytes_written');
  const problem = fields.get('problem');
  if (problem !== null) {
    retries.push({ phase: fields.get('phase') ?? '', bytes_done: Number(fields.get('bytes_done')), problem, after: progress.length });
    return forward(target, request, response, body);
  }
  progress.push({
    phase: fields.get('phase') ?? '',
    bytes_done: Number(fields.get('bytes_done')),
    ...(written === null ? {} : { bytes_written: Number(written) }),
  });
  await forward(target, request, response, body);
}
