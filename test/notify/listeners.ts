import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  /** The status this receiver answered. */
  status: number;
}

/**
 * A webhook receiver on 127.0.0.1: records each POST and answers with `answer()`'s status
 * (200 unless the test says otherwise). Closed when the test ends.
 */
export async function startReceiver(t: TestContext) {
  const received: Received[] = [];
  const state = { answer: (): number => 200 };
  const server = createHttpServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const status = state.answer();
      received.push({ headers: request.headers, body: Buffer.concat(chunks).toString('utf8'), status });
      response.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    /** The bodies it answered 2xx, parsed. */
    accepted: () => received.filter((r) => r.status < 300).map((r) => ({ ...r, json: JSON.parse(r.body) })),
    answerWith(answer: () => number) {
      state.answer = answer;
    },
  };
}

/** A raw printer port on 127.0.0.1: each connection's bytes, once the sender closes. */
export async function startPrinter(t: TestContext) {
  const labels: string[] = [];
  const server = createTcpServer((socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('end', () => labels.push(Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { address: `tcp://127.0.0.1:${(server.address() as AddressInfo).port}`, labels };
}

/** A clock that stands still until the test moves it: retry back-off then depends on the test alone. */
export function movableClock() {
  let now = Date.now();
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}
