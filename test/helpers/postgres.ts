import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import pg from 'pg';

/** Debian's PostgreSQL binaries (package postgresql): /usr/lib/postgresql/<major>/bin. */
function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root) ? readdirSync(root).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a)) : [];
  const bin = majors.map((major) => join(root, major, 'bin')).find((dir) => existsSync(join(dir, 'initdb')));
  if (!bin) throw new Error('PostgreSQL is not installed (scripts/install-test-deps.sh installs Debian\'s postgresql)');
  return bin;
}

export interface TestPostgres {
  /** postgres://…@/DB?host=SOCKET_DIR: the server listens on a Unix socket only, no TCP port. */
  url: string;
  socketDir: string;
  database: string;
  /** Stops the server now (the test's clean-up does it too). */
  stop(): void;
  /** Starts it again on the same data folder (a restart in the middle of something). */
  start(): void;
}

/**
 * A real PostgreSQL server of the test's own: initdb into a temp folder, run as the `postgres`
 * user (the server refuses to run as root), listening only on a Unix socket in that folder
 * (listen_addresses=''), stopped and removed when the test ends.
 */
export function startTestPostgres(t: Pick<TestContext, 'after'>, database = 'cm4prov'): TestPostgres {
  const server = launchPostgres(database);
  t.after(server.remove);
  return server;
}

let shared: TestPostgres | undefined;

/**
 * One server for the whole test file (initdb and start take seconds): stopped and removed when
 * the file's process exits. Tests take a database of their own on it (testDatabaseUrl).
 */
export function sharedTestPostgres(): TestPostgres {
  if (!shared) {
    const server = launchPostgres('postgres');
    process.once('exit', server.remove);
    shared = server;
  }
  return shared;
}

/** A PostgreSQL server of its own in a temp folder, for tests and benchmarks; `remove` stops it and deletes the folder. */
export function launchPostgres(database: string): TestPostgres & { remove(): void } {
  const bin = postgresBin();
  const dir = mkdtempSync(join(tmpdir(), 'cm4prov-pg-'));
  chmodSync(dir, 0o700);
  chownSync(dir, uid('postgres'), gid('postgres'));
  const data = join(dir, 'data');
  const asPostgres = (command: string, args: string[]) => {
    const result = spawnSync('runuser', ['-u', 'postgres', '--', join(bin, command), ...args], { encoding: 'utf8', timeout: 60_000 });
    if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr || result.stdout || result.error}`);
    return result.stdout;
  };
  asPostgres('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C.UTF-8', '-N']);
  const options = `-c listen_addresses='' -c unix_socket_directories='${dir}' -c fsync=off -c max_connections=200`;
  const start = () => void asPostgres('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', 'start']);
  const stop = () => {
    if (existsSync(join(data, 'postmaster.pid'))) asPostgres('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
  };
  const remove = () => {
    try {
      stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  start();
  try {
    if (database !== 'postgres') asPostgres('createdb', ['-h', dir, '-U', 'postgres', database]);
  } catch (error) {
    remove();
    throw error;
  }
  return { url: urlOf(dir, database), socketDir: dir, database, stop, start, remove };
}

const urlOf = (socketDir: string, database: string) => `postgres://postgres@/${database}?host=${encodeURIComponent(socketDir)}`;

let databases = 0;

/** A new, empty database on the shared server, dropped when the test ends: its postgres:// URL. */
export async function testDatabaseUrl(t: Pick<TestContext, 'after'>): Promise<string> {
  const server = sharedTestPostgres();
  const name = `test_${process.pid}_${++databases}`;
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  t.after(async () => {
    const dropper = new pg.Client({ connectionString: server.url });
    await dropper.connect();
    try {
      await dropper.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } finally {
      await dropper.end();
    }
  });
  return urlOf(server.socketDir, name);
}

const uid = (user: string) => Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
const gid = (user: string) => Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
