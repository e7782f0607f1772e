import Database from 'better-sqlite3';
import type pg from 'pg';
import { migrationFiles } from './migration-files.js';
import { migrate, type Db } from './open.js';

export interface TableCount {
  table: string;
  rows: number;
}

/** The copy could not be made, or would not be safe: one sentence for the operator. */
export class CopyRefused extends Error {
  override name = 'CopyRefused';
}

const BATCH_ROWS = 500;

/**
 * Copies a station's SQLite data into an empty PostgreSQL database of the same schema version
 * (migratePostgres first): every table, parents before the tables that refer to them, in one
 * PostgreSQL transaction, read from one SQLite snapshot (a running station may go on writing).
 * Ids are kept; the identity sequences then continue after the highest. The rows of each table are
 * counted on both sides before the commit. A dry run reads and counts, and writes nothing.
 * With `station`, the rows that belong to a station are named after it (nameStation).
 * `sqlite` is a connection of the copy's own (its read transaction spans the whole copy).
 */
export async function copySqliteToPostgres(sqlite: Db, client: pg.ClientBase, options: { dryRun?: boolean; station?: string } = {}): Promise<TableCount[]> {
  const version = sqlite.pragma('user_version', { simple: true }) as number;
  const target = (await client.query<{ version: number | null }>('SELECT max(version) AS version FROM schema_migrations').catch(() => ({ rows: [{ version: null }] }))).rows[0]?.version ?? null;
  if (version !== migrationFiles().at(-1)!.version) throw new CopyRefused(`The SQLite database is at schema version ${version}, not ${migrationFiles().at(-1)!.version}: start this version's server on it once, then copy.`);
  if (target !== version && !options.dryRun) throw new CopyRefused(`The PostgreSQL database is at schema version ${target ?? 'none'}, not ${version}: it must be migrated first.`);

  const tables = tablesInOrder(sqlite);
  sqlite.prepare('BEGIN').run(); // one snapshot of every table (WAL: writers go on meanwhile)
  try {
    const counts = tables.map((table) => ({ table, rows: (sqlite.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n }));
    if (options.dryRun) return counts;
    await client.query('BEGIN');
    try {
      const seeded = rowsTheMigrationsAdd(tables);
      for (const table of tables) {
        const existing = Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]!.n);
        if (existing > seeded.get(table)!) throw new CopyRefused(`The PostgreSQL database already has data (${existing} row${existing === 1 ? '' : 's'} in ${table}): copy into an empty one, never over a station's data.`);
      }
      // Rows the migrations put in (default settings) give way to the station's own.
      for (const table of [...tables].reverse()) if (seeded.get(table)! > 0) await client.query(`DELETE FROM ${table}`);
      for (const table of tables) await copyTable(sqlite, client, table);
      await continueIdentities(client, tables);
      for (const { table, rows } of counts) {
        const copied = Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]!.n);
        if (copied !== rows) throw new Error(`${table}: ${rows} rows read, ${copied} in PostgreSQL`);
      }
      if (options.station) await nameStation(client, options.station);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    }
    return counts;
  } finally {
    sqlite.prepare('COMMIT').run();
  }
}

/** How many rows each table holds right after the migrations (defaults some of them insert). */
function rowsTheMigrationsAdd(tables: string[]): Map<string, number> {
  const fresh = new Database(':memory:');
  try {
    migrate(fresh);
    return new Map(tables.map((table) => [table, (fresh.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n]));
  } finally {
    fresh.close();
  }
}

/** Every table, each after the tables its foreign keys refer to. */
function tablesInOrder(sqlite: Db): string[] {
  const names = (sqlite.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((row) => row.name);
  const parents = new Map(names.map((name) => [name, new Set((sqlite.prepare(`PRAGMA foreign_key_list(${name})`).all() as { table: string }[]).map((key) => key.table).filter((parent) => parent !== name))]));
  const ordered: string[] = [];
  while (ordered.length < names.length) {
    const ready = names.filter((name) => !ordered.includes(name) && [...parents.get(name)!].every((parent) => ordered.includes(parent)));
    if (ready.length === 0) throw new Error(`foreign keys form a cycle among ${names.filter((name) => !ordered.includes(name)).join(', ')}`);
    ordered.push(...ready);
  }
  return ordered;
}

async function copyTable(sqlite: Db, client: pg.ClientBase, table: string) {
  const columns = (sqlite.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((column) => column.name);
  const quoted = columns.map((column) => `"${column}"`).join(', ');
  let batch: unknown[][] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const values = batch.map((_, row) => `(${columns.map((__, column) => `$${row * columns.length + column + 1}`).join(', ')})`).join(', ');
    await client.query(`INSERT INTO ${table} (${quoted}) VALUES ${values}`, batch.flat());
    batch = [];
  };
  // Read whole (not iterated across the awaits below: SQLite's connection stays free meanwhile).
  for (const row of sqlite.prepare(`SELECT ${quoted} FROM ${table}`).raw().all() as unknown[][]) {
    batch.push(row);
    if (batch.length === BATCH_ROWS) await flush();
  }
  await flush();
}

/**
 * A SQLite database is one station's: its devices, the jobs it handed out and the backups it
 * holds (migration 0020) are named after the station it becomes, whatever name (its host's, or
 * none before stations) they were recorded under, so that the other stations know where they are.
 */
async function nameStation(client: pg.ClientBase, station: string) {
  await client.query('UPDATE devices SET station = $1 WHERE registered_at IS NOT NULL', [station]);
  await client.query('UPDATE jobs SET station = $1 WHERE started_at IS NOT NULL', [station]);
  await client.query('UPDATE backups SET station = $1', [station]);
  // Every image file in its data folder is its copy (alone, it recorded copies under whatever
  // name it ran as, or none for images older than copies); its identity is the image row's then.
  await client.query('DELETE FROM image_copies');
  await client.query(
    `INSERT INTO image_copies (image_id, station, state, bytes_done, bytes_total, file_identity, updated_at)
     SELECT id, $1, 'complete', size, size, file_identity, created_at FROM images WHERE file_removed = 0`,
    [station],
  );
}

/** An identity column given explicit ids does not move its sequence: set it past the highest id. */
async function continueIdentities(client: pg.ClientBase, tables: string[]) {
  const identities = await client.query<{ table_name: string; column_name: string }>(
    "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' AND is_identity = 'YES' AND table_name = ANY($1)",
    [tables],
  );
  for (const { table_name: table, column_name: column } of identities.rows) {
    await client.query(`SELECT setval(pg_get_serial_sequence($1, $2), coalesce(max("${column}"), 0) + 1, false) FROM ${table}`, [table, column]);
  }
}
