import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import pino, { type Logger } from 'pino';
import { loadConfig, type Config } from '../../src/config.js';
import type { InterfaceProbe } from '../../src/netboot/settings.js';
import { startServer, type ConnectionLimits, type RunningServer } from '../../src/server.js';
import type { Clock } from '../../src/shared/clock.js';

export interface TestServer {
  url: string;
  dataDir: string;
  token: string;
  server: RunningServer;
  /** Admin API call with the bearer token; returns status and parsed JSON body. */
  admin<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** Device API call without a token. */
  device<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: T; text: string }>;
  /** Stops the server (like kill) and starts a new one on the same data dir and port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export function tempDir(t: TestContext, prefix = 'cm4prov-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A real server on a loopback socket with its own data dir, closed when the test ends. */
export async function startTestServer(
  t: TestContext,
  overrides: Partial<Record<keyof Config, unknown>> = {},
  options: {
    adminPassword?: string;
    interfaces?: InterfaceProbe;
    /** Socket limits (idle time, connections per address) instead of the production ones. */
    connections?: Partial<ConnectionLimits>;
    clock?: Clock;
    log?: Logger;
    /** How long another station may stay silent in a request (stations/client.ts). */
    peerIdleMs?: number;
  } = {},
): Promise<TestServer> {
  const dataDir = (overrides.dataDir as string | undefined) ?? join(tempDir(t), 'data');
  const makeConfig = (port: number) =>
    loadConfig({ flags: { host: '127.0.0.1', port, logLevel: 'silent', ...overrides, dataDir }, env: {} });
  const log = options.log ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const startOptions = {
    log,
    initialAdminPassword: options.adminPassword,
    interfaces: options.interfaces,
    connections: options.connections,
    clock: options.clock,
    peerIdleMs: options.peerIdleMs,
  };
  let server = await startServer(makeConfig(0), startOptions);
  const port = server.port;

  async function call(method: string, path: string, body: unknown, headers: Record<string, string>) {
    const init: RequestInit = { method, headers: { ...headers } };
    if (body !== undefined) {
      if (typeof body === 'string') {
        init.body = body;
      } else {
        init.body = JSON.stringify(body);
        (init.headers as Record<string, string>)['content-type'] = 'application/json';
      }
    }
    const response = await fetch(`${server.url}${path}`, init);
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Plain text (env format): keep the text.
    }
    return { status: response.status, body: parsed as any, text };
  }

  const handle: TestServer = {
    get url() {
      return server.url;
    },
    dataDir,
    get token() {
      return server.services.adminToken;
    },
    get server() {
      return server;
    },
    admin: (method, path, body) => call(method, path, body, { authorization: `Bearer ${server.services.adminToken}` }),
    device: (method, path, body, headers = {}) => call(method, path, body, headers),
    async restart() {
      await server.close();
      server = await startServer(makeConfig(port), startOptions);
    },
    close: () => server.close(),
  };
  t.after(() => server.close());
  return handle;
}
