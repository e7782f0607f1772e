import Database from 'better-sqlite3';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDir } from './files.js';

export class DataDirInUse extends Error {
  override name = 'DataDirInUse';
}

export interface DataDirLock {
  release(): void;
}

/**
 * Makes this process the only server on a data folder. Two servers on one folder would sweep
 * each other's uploads in flight and hand out the same jobs. The lock is an exclusive SQLite
 * lock (fcntl, https://www.sqlite.org/lockingv3.html) on `server.lock`, held for the process's
 * life: the kernel drops it when the process dies, however it dies, so there is no stale lock
 * to clean up by hand. `server.pid` only serves the message.
 */
export function lockDataDir(dataDir: string): DataDirLock {
  ensureDir(dataDir);
  const pidFile = join(dataDir, 'server.pid');
  const lock = new Database(join(dataDir, 'server.lock'), { timeout: 0 });
  try {
    lock.pragma('locking_mode = EXCLUSIVE');
    // The first write takes the exclusive lock; in EXCLUSIVE mode it is kept after COMMIT.
    lock.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS held (at INTEGER); COMMIT;');
  } catch (error) {
    lock.close();
    if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
    let holder = '';
    try {
      holder = ` (pid ${readFileSync(pidFile, 'utf8').trim()})`;
    } catch {
      // No pid file (yet): the message goes without it.
    }
    throw new DataDirInUse(`Another cm4prov server${holder} is using the data folder ${dataDir}: stop it first, or give this one its own --data-dir.`);
  }
  writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
  return { release: () => lock.close() };
}
