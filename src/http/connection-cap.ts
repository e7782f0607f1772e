import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Clock } from '../shared/clock.js';
import { plainAddress } from '../shared/network.js';

/**
 * Open TCP connections one address may hold. An honest host needs far fewer: a device at most 3
 * (poll, transfer, progress), a browser 6 per server (its HTTP/1.1 limit, SSE included), the CLI
 * 1–2. A flood from one host stops at 32 sockets instead of exhausting file descriptors. Behind a
 * NAT or a reverse proxy many clients share one address: raise it there, or 0 for no cap.
 */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 32;

const LOG_EVERY_MS = 60_000;
/** A refused client that does not hang up after our answer is cut after this. */
const REFUSAL_GRACE_MS = 1_000;
const REFUSAL = (limit: number) => {
  const body = `This address already has ${limit} open connections to the server, its limit; close some and try again.\n`;
  return [
    'HTTP/1.1 503 Service Unavailable',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Retry-After: 10',
    'Connection: close',
    '',
    body,
  ].join('\r\n');
};

export interface ConnectionCap {
  /** Connections `address` holds open now. */
  openFrom(address: string): number;
}

/**
 * Counts each address's open connections at the TCP level ('connection' event) and answers one
 * over `limit` with a 503 at once, before HTTP parsing, then closes it. Refusals are logged once
 * per address per minute, with the number refused since the last line. `limit` 0: no cap.
 */
export function capConnectionsPerAddress(server: Server, options: { limit: number; log: Logger; clock: Clock }): ConnectionCap {
  const { limit, log, clock } = options;
  const open = new Map<string, number>();
  const refused = new Map<string, { loggedAt: number; unlogged: number }>();
  const openFrom = (address: string) => open.get(address) ?? 0;

  const noteRefusal = (address: string) => {
    const now = clock.now();
    const last = refused.get(address);
    if (last && now - last.loggedAt < LOG_EVERY_MS) {
      last.unlogged += 1;
      return;
    }
    if (refused.size > 1000) for (const [key, entry] of refused) if (now - entry.loggedAt >= LOG_EVERY_MS) refused.delete(key);
    refused.set(address, { loggedAt: now, unlogged: 0 });
    log.warn(
      { address, limit, refusedSinceLastLine: last?.unlogged ?? 0 },
      `refused a connection from ${address}: it already has ${limit} open (--max-connections-per-address); more refusals for it are logged at most once a minute`,
    );
  };

  const refuse = (socket: Socket, address: string) => {
    noteRefusal(address);
    socket.on('error', () => undefined);
    const cut = setTimeout(() => socket.destroy(), REFUSAL_GRACE_MS).unref();
    socket.once('close', () => clearTimeout(cut));
    socket.end(REFUSAL(limit));
    // Reads and drops the request, so that closing sends FIN rather than a reset that could discard our answer.
    socket.resume();
  };

  // Node's HTTP handling is itself a 'connection' listener: run it only for admitted sockets.
  const httpListeners = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const address = plainAddress(socket.remoteAddress ?? '');
    if (limit > 0 && openFrom(address) >= limit) return refuse(socket, address);
    open.set(address, openFrom(address) + 1);
    socket.once('close', () => {
      const left = openFrom(address) - 1;
      if (left > 0) open.set(address, left);
      else open.delete(address);
    });
    for (const listener of httpListeners) listener.call(server, socket);
  });
  return { openFrom };
}
