import Database from 'better-sqlite3';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MIGRATIONS_DIR, migrationFiles } from './migration-files.js';

export type Db = Database.Database;

/**
 * Opens (creating if needed) the SQLite database and brings its schema up to date.
 * WAL lets the dashboard read while a device's progress is written; `synchronous=NORMAL`
 * is durable across process crashes in WAL mode (https://www.sqlite.org/pragma.html#pragma_synchronous).
 */
export function openDatabase(path: string): Db {
  // Created readable by its owner only (SQLite gives its -wal and -shm files the same mode).
  if (!existsSync(path)) writeFileSync(path, '', { mode: 0o600, flag: 'wx' });
  let db: Db | undefined;
  try {
    db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    migrate(db);
    return db;
  } catch (error) {
    db?.close();
    const code = (error as { code?: string }).code;
    if (!code?.startsWith('SQLITE_')) throw error;
    throw new DatabaseUnusable(
      `The database ${path} cannot be used (${code}: ${(error as Error).message}). If it is damaged, move it aside to start with an empty one, or put back a copy.`,
    );
  }
}

/** The database file exists but SQLite cannot open or upgrade it: damaged, not a database, locked. */
export class DatabaseUnusable extends Error {
  override name = 'DatabaseUnusable';
}

/** Applies `migrations/NNNN-name.sql` files above the stored `user_version`, each in one transaction. */
export function migrate(db: Db, dir = MIGRATIONS_DIR): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  const pending = migrationFiles(dir).filter(({ version }) => version > current);
  for (const { version, file } of pending) {
    const sql = readFileSync(join(dir, file), 'utf8');
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${version}`);
    })();
  }
  return db.pragma('user_version', { simple: true }) as number;
}
