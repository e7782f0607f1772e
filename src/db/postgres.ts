import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { forPostgres } from './dialect.js';
import { MIGRATIONS_DIR, migrationFiles } from './migration-files.js';

/** Any key: it only has to be the same for every station that migrates this database. */
const MIGRATION_LOCK = 0x636d3470; // "cm4p"

/**
 * Brings a PostgreSQL database's schema up to date with the same migrations as SQLite's (each
 * rewritten by dialect.ts), the pending ones in one transaction, each noted in
 * schema_migrations. Stations that start at once take turns on an advisory lock, so each
 * migration runs once (PostgreSQL's DDL is transactional: a failure leaves nothing half done).
 */
export async function migratePostgres(client: pg.ClientBase, dir = MIGRATIONS_DIR): Promise<number> {
  await client.query('BEGIN');
  try {
    // Held to the end of this transaction: the next station waits here, then finds the work done.
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, file TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
    const applied = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((row) => row.version));
    for (const { version, file } of migrationFiles(dir)) {
      if (applied.has(version)) continue;
      await client.query(forPostgres(readFileSync(join(dir, file), 'utf8')));
      await client.query('INSERT INTO schema_migrations (version, file) VALUES ($1, $2)', [version, file]);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
  const { rows } = await client.query<{ version: number | null }>('SELECT max(version) AS version FROM schema_migrations');
  return rows[0]?.version ?? 0;
}
