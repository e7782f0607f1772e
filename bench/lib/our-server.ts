import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { startForwarder } from './forwarder.js';
import { createHttp, type CallOptions, type Reply } from './http.js';
import type { Lab } from './netns.js';
import { run, sleep, startProcess, stopProcess, waitUntilIdle } from './proc.js';

export const REPO = resolve(import.meta.dirname, '../..');
const CLI = join(REPO, 'bin', 'cm4prov.js');
export const SERVER_PORT = 5000;

export interface OurServer {
  pid: number;
  /** The admin API's bearer token (from the data dir). */
  token: string;
  /** Base URL as devices in the lab's client namespace reach it. */
  url: string;
  /** Any call, as a device would make it (no token). */
  call(method: string, path: string, options?: CallOptions): Promise<Reply>;
  /** An admin API call with the bearer token; throws unless the status is 2xx. */
  admin(method: string, path: string, json?: unknown, options?: CallOptions): Promise<any>;
  /**
   * Adds an image as an operator does (`cm4prov image add FILE --name NAME --default`, run in
   * the server's namespace) unless it is there, then waits for the server's background work
   * on it to end. Returns the seconds spent.
   */
  addImage(name: string, file: string): Promise<number>;
  /** Waits until the server is idle (no background work left from the last run). */
  settle(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * `cm4prov serve` exactly as an operator runs it (bin/cm4prov.js, its own process), inside the
 * lab's server namespace, with a raised open-files limit for the long-poll benchmark.
 */
export async function startOurServer(
  lab: Lab,
  options: {
    dataDir: string;
    runDir: string;
    cleanup: Cleanup;
    name: string;
    /** postgres://…: run on PostgreSQL (else SQLite), as station `name`. */
    database?: string;
    /** Where the other stations reach it (its --station-url). */
    stationUrl?: string;
    /** The lab's namespace it runs in, and its address there (default: the server side's). */
    namespace?: string;
    address?: string;
  },
): Promise<OurServer> {
  const ns = options.namespace ?? lab.serverNs;
  const address = options.address ?? lab.serverAddress;
  const logFile = join(options.runDir, `${options.name}.log`);
  const log = openSync(logFile, 'a');
  const args = [
    ...lab.exec(ns).slice(1),
    'sh', '-c', 'ulimit -n 65536 2>/dev/null || true; exec "$@"', 'sh',
    process.execPath, CLI, 'serve', '--host', '0.0.0.0', '--port', String(SERVER_PORT), '--data-dir', options.dataDir,
    '--log-level', 'warn', '--job-stall-timeout', '3600', '--max-connections-per-address', '0', '--device-registration-limit', '0',
    ...(options.database ? ['--database', options.database, '--station', options.name] : []),
    ...(options.stationUrl ? ['--station-url', options.stationUrl] : []),
  ];
  const child = startProcess(lab.exec(ns)[0]!, args, { stdio: ['ignore', log, log] });
  closeSync(log);
  const stopServer = options.cleanup.add(`server ${options.name}`, () => stopProcess(child, 5000));
  const stopRelay = await startForwarder(lab, ns, join(options.runDir, `${options.name}.sock`), SERVER_PORT, options.cleanup);
  const call = createHttp(join(options.runDir, `${options.name}.sock`), `${address}:${SERVER_PORT}`);

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`cm4prov serve exited with ${child.exitCode}: ${tail(logFile)}`);
    const reply = await call('GET', '/api/devices', { timeoutMs: 2000 }).catch(() => undefined);
    if (reply && reply.status > 0) break;
    if (Date.now() > deadline) throw new Error(`cm4prov serve did not answer within 60 s: ${tail(logFile)}`);
    await sleep(100);
  }
  const tokenFile = join(options.dataDir, 'admin-token');
  if (!existsSync(tokenFile)) throw new Error(`the server wrote no ${tokenFile}`);
  const token = readFileSync(tokenFile, 'utf8').trim();

  const server: OurServer = {
    pid: child.pid!,
    token,
    url: `http://${address}:${SERVER_PORT}`,
    call,
    async admin(method, path, json, callOptions = {}) {
      const reply = await call(method, path, { ...callOptions, json, headers: { authorization: `Bearer ${token}`, ...callOptions.headers } });
      if (reply.status < 200 || reply.status > 299) throw new Error(`${method} ${path}: HTTP ${reply.status} ${reply.text.slice(0, 300)}`);
      return reply.body;
    },
    async addImage(name, file) {
      const began = Date.now();
      const { images } = await server.admin('GET', '/api/images');
      if ((images as { name: string }[]).some((image) => image.name === name)) return 0;
      const [ip, ...exec] = lab.exec(ns);
      const cli = [process.execPath, CLI, 'image', 'add', file, '--name', name, '--default', '--server', `http://127.0.0.1:${SERVER_PORT}`, '--token', token, '--json'];
      await run(ip!, [...exec, ...cli], { timeoutMs: 30 * 60_000 });
      await waitUntilIdle(child.pid!, 30 * 60_000);
      return (Date.now() - began) / 1000;
    },
    settle: () => waitUntilIdle(child.pid!, 10 * 60_000),
    async stop() {
      await stopRelay();
      await stopServer();
    },
  };
  return server;
}

function tail(file: string) {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Registers a device as its client would (device API). */
export async function registerDevice(server: OurServer, mac: string, storageBytes: number) {
  const reply = await server.call('POST', '/api/register-device', { json: { mac, storage_bytes: storageBytes, client_version: 'bench' } });
  if (reply.status !== 200) throw new Error(`registering ${mac}: HTTP ${reply.status} ${reply.text}`);
}

/** Orders `action` for a device and takes it as the device would (one poll): the job is running. */
export async function runningJob(server: OurServer, mac: string, action: 'deploy' | 'backup') {
  const job = await server.admin('POST', `/api/devices/${mac}/${action}`, {});
  const reply = await server.call('GET', `/api/device-action-poll?mac=${encodeURIComponent(mac)}&wait=0`);
  if (reply.body?.action !== action) throw new Error(`poll for ${mac} answered ${reply.text}`);
  return { id: job.id as number, order: reply.body as Record<string, string> };
}
