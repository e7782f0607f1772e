import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface IdleLimits {
  /**
   * A connection on which no byte moves either way for this long is cut while the client owes
   * us bytes: request headers or body, or reading our reply. Never cut when we are the silent
   * side (a parked long-poll, an SSE stream between events, a disk that makes us wait).
   */
  idleMs: number;
  /** All of a request's headers must arrive within this, however slowly they trickle. */
  headersMs: number;
  /** A body declared at most SMALL_BODY_BYTES long must arrive within this after the headers. */
  smallBodyMs: number;
  /** How often Node looks for requests past `headersMs`. */
  checkEveryMs: number;
}

/**
 * A stalled client is cut after a minute; a transfer that moves a byte a minute is never cut.
 * A small body in 60 s is 17 KB/s: any client on a LAN is faster, a trickle of a byte every few
 * seconds is not. Keep-alive idleness stays with Fastify's keepAliveTimeout (75 s).
 */
export const DEFAULT_IDLE_LIMITS: IdleLimits = { idleMs: 60_000, headersMs: 30_000, smallBodyMs: 60_000, checkEveryMs: 5_000 };

/** The JSON and form bodies the app parses (its bodyLimit); images and backups are far larger. */
export const SMALL_BODY_BYTES = 1024 * 1024;

interface Exchange {
  request: IncomingMessage;
  response: ServerResponse;
}

/** Whether the silence on `socket` is the client's: it owes bytes, or it does not read ours. */
function clientIsStalling(socket: Socket, current: Exchange | undefined): boolean {
  // Headers still arriving, or keep-alive idle after the last reply.
  if (!current || current.response.writableFinished) return true;
  const { request } = current;
  // Body still arriving: the client's fault unless it is us who stopped reading (bytes wait in the buffer).
  if (!request.complete) return request.readableLength === 0;
  // Our reply waits in the socket's buffer: the client stopped reading (TCP window full).
  return socket.writableLength > 0;
}

/**
 * Node's socket timeout is exactly "no byte moved for N ms": reads, writes and a large write's
 * partial progress all restart it (net.Socket#setTimeout), and Node re-arms it with
 * `server.timeout` for each request on a keep-alive connection. Its 'timeout' event comes here
 * instead of destroying the socket, so that a long-poll waiting on us is spared. Headers get
 * Node's own whole-headers limit (slowloris), and a small body a deadline of its own; a large
 * body has no total limit, so a 32 GB upload that keeps moving is never cut.
 */
export function limitIdleConnections(server: Server, limits: IdleLimits, options: { spare?: (request: IncomingMessage) => boolean | Promise<boolean> } = {}): void {
  const exchanges = new WeakMap<Socket, Exchange>();
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    exchanges.set(request.socket, { request, response });
    const declared = Number(request.headers['content-length'] ?? 0);
    if (request.complete || !(declared > 0 && declared <= SMALL_BODY_BYTES)) return;
    const deadline = setTimeout(() => {
      if (!request.complete) request.socket.destroy();
    }, limits.smallBodyMs).unref();
    request.once('end', () => clearTimeout(deadline)).once('close', () => clearTimeout(deadline));
  });
  server.headersTimeout = limits.headersMs;
  // A createServer option that Node reads from the server when it starts listening (Node 20+).
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = limits.checkEveryMs;
  server.setTimeout(limits.idleMs);
  server.on('timeout', (socket: Socket) => {
    const exchange = exchanges.get(socket);
    if (!clientIsStalling(socket, exchange)) return;
    // A body whose sender shows it is alive elsewhere (a device's progress reports while its
    // compressed backup crosses gigabytes of zeros, which zstd turns into no bytes for minutes).
    if (!exchange || exchange.request.complete || !options.spare) return void socket.destroy();
    // The sender's liveness is read from the database; the socket waits for the answer.
    Promise.resolve(options.spare(exchange.request)).then(
      (alive) => alive || socket.destroy(),
      () => socket.destroy(),
    );
  });
}
