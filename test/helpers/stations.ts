import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { CLI } from './cli.js';
import { ip, type NetbootLab } from './netns.js';
import { waitFor } from './wait.js';

// Stations of issue 15 in the netboot lab (netns.ts): each `cm4prov serve` on PostgreSQL inside
// its lab's server namespace, and a link between the server namespaces for the factory network.

export interface LabStation {
  name: string;
  /** Its admin API, as this test reaches it. */
  base: string;
  token: string;
  dataDir: string;
  process: ChildProcess;
  output(): string;
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Kills the server outright (SIGKILL by its PID: a station that dies, with no clean-up of its own) and waits for its exit. */
  kill(): Promise<void>;
}

export interface StationOptions {
  /** Its --station-url: where the other stations reach it. */
  stationUrl?: string;
  /** More `cm4prov serve` flags, e.g. `['--job-stall-timeout', '10']`. */
  extraArgs?: string[];
}

/** `cm4prov serve` on PostgreSQL inside the lab's server namespace, as station `name`. */
export async function startStation(t: TestContext, lab: NetbootLab, name: string, database: string, options: StationOptions = {}): Promise<LabStation> {
  const dataDir = mkdtempSync(join(tmpdir(), `cm4prov-${name}-`));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const server = lab.spawnIn(lab.serverNs, process.execPath, [
    CLI, 'serve', '--host', '0.0.0.0', '--port', '5000', '--data-dir', dataDir, '--database', database, '--station', name,
    '--public-url', 'http://10.20.50.1:5000', '--log-level', 'warn',
    ...(options.stationUrl ? ['--station-url', options.stationUrl] : []),
    ...(options.extraArgs ?? []),
  ]);
  let output = '';
  server.stdout!.on('data', (chunk) => (output += chunk));
  server.stderr!.on('data', (chunk) => (output += chunk));
  const base = `http://${lab.adminAddress}:5000`;
  await waitFor(`station ${name} in its namespace`, () => fetch(`${base}/api/stations`).then((r) => r.status === 401, () => false), 30_000, 200).catch((error: Error) => {
    throw new Error(`${error.message}\n${output}`);
  });
  const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  return {
    name,
    base,
    token,
    dataDir,
    process: server,
    output: () => output,
    async admin(method, path, body) {
      const response = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: response.status, body: (await response.json()) as any };
    },
    async stop() {
      if (server.exitCode !== null || server.signalCode !== null) return;
      const exited = new Promise((resolve) => server.once('exit', resolve));
      server.kill('SIGTERM');
      await exited;
    },
    async kill() {
      if (server.exitCode !== null || server.signalCode !== null) return;
      const exited = new Promise((resolve) => server.once('exit', resolve));
      // `ip netns exec` execs the server in its own place: this PID is the server's, not a wrapper's.
      process.kill(server.pid!, 'SIGKILL');
      await exited;
    },
  };
}

export interface StationLink {
  /** The first lab's server address on the link, and the second's. */
  addresses: [string, string];
  /** Takes the second lab's end down (the stations cannot reach each other), or up again. */
  down(): void;
  up(): void;
}

/**
 * A veth pair between two labs' server namespaces: the factory network the stations reach each
 * other on (10.77.0.1 and 10.77.0.2). Deleted with the namespaces, or here if they outlive it.
 */
export function linkStations(t: TestContext, first: NetbootLab, second: NetbootLab): StationLink {
  const id = randomBytes(3).toString('hex');
  const [near, far] = [`cm4l-${id}`, `cm4m-${id}`];
  t.after(() => {
    for (const [ns, end] of [[first.serverNs, near], [second.serverNs, far]] as const) {
      // Usually gone already, with its namespace or its peer: quietly.
      spawnSync('ip', ['-n', ns, 'link', 'del', end], { stdio: 'ignore' });
    }
  });
  ip('link', 'add', near, 'type', 'veth', 'peer', 'name', far);
  ip('link', 'set', near, 'netns', first.serverNs);
  ip('link', 'set', far, 'netns', second.serverNs);
  ip('-n', first.serverNs, 'addr', 'add', '10.77.0.1/30', 'dev', near);
  ip('-n', second.serverNs, 'addr', 'add', '10.77.0.2/30', 'dev', far);
  ip('-n', first.serverNs, 'link', 'set', near, 'up');
  ip('-n', second.serverNs, 'link', 'set', far, 'up');
  return {
    addresses: ['10.77.0.1', '10.77.0.2'],
    down: () => void ip('-n', second.serverNs, 'link', 'set', far, 'down'),
    up: () => void ip('-n', second.serverNs, 'link', 'set', far, 'up'),
  };
}
