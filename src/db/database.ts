import { Kysely, PostgresDialect, SqliteDialect, type Transaction } from 'kysely';
import pg from 'pg';
import { databaseDialect, redactedUrl, type Dialect } from './dialect.js';
import { join } from 'node:path';
import { DatabaseUnusable, openDatabase, type Db } from './open.js';
import { migratePostgres } from './postgres.js';
import type { Schema } from './schema.js';

/**
 * The query layer both databases speak (Kysely, https://kysely.dev): queries are built or written
 * once (its `sql` tag turns `${value}` into `?` for SQLite and `$n` for PostgreSQL). Stores take
 * a `Queries` and are async; with SQLite the promises resolve from the one better-sqlite3
 * connection, whose queries Kysely serializes, so a transaction sees no one else's statements.
 */
export type Queries = Kysely<Schema> | Transaction<Schema>;

/**
 * Runs `work` in one transaction: all of it or none. Inside a transaction already, `work` joins
 * it. With SQLite no other query runs meanwhile (Kysely holds the one connection); with
 * PostgreSQL concurrent transactions are isolated as READ COMMITTED, so a read-then-write that
 * must not race another station needs a conditional write or a row lock (`FOR UPDATE`).
 */
export function inTransaction<T>(db: Queries, work: (tx: Queries) => Promise<T>): Promise<T> {
  return db.isTransaction ? work(db) : (db as Kysely<Schema>).transaction().execute(work);
}

export interface StationDatabase {
  dialect: Dialect;
  db: Kysely<Schema>;
  close(): Promise<void>;
}

/** Kysely over an open (migrated) SQLite connection. Closing it closes that connection. */
export function sqliteDatabase(sqlite: Db): StationDatabase {
  const db = new Kysely<Schema>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  return { dialect: 'sqlite', db, close: () => db.destroy() };
}

/** Prepared statements kept, by their SQL text (the most recently used ones). */
const STATEMENT_CACHE_SIZE = 500;

/**
 * Kysely's SQLite driver prepares every query anew; compiling the same SQL on every poll and
 * progress report costs time and garbage. better-sqlite3 statements can be run again and again
 * (one at a time: the driver runs each to completion synchronously), so the connection keeps the
 * recent ones.
 */
function withStatementCache(sqlite: Db): { prepare: Db['prepare']; close(): void } {
  const statements = new Map<string, ReturnType<Db['prepare']>>();
  return {
    prepare(sql: string) {
      let statement = statements.get(sql);
      if (statement) {
        statements.delete(sql); // re-inserted below: the Map's order is the order of last use
      } else {
        statement = sqlite.prepare(sql);
        if (statements.size >= STATEMENT_CACHE_SIZE) statements.delete(statements.keys().next().value!);
      }
      statements.set(sql, statement);
      return statement;
    },
    close: () => sqlite.close(),
  } as { prepare: Db['prepare']; close(): void };
}

// PostgreSQL's BIGINT (int8) and NUMERIC arrive as strings, to be safe past 2^53. Ours are
// milliseconds, byte counts and ids, all far below it: numbers, as SQLite gives them.
const INT8_OID = 20;
const NUMERIC_OID = 1700;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID || oid === NUMERIC_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** A pool on `url` whose BIGINTs are numbers (see above). */
export function postgresPool(url: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, types });
  // A connection lost while idle in the pool: the pool drops it and opens another when asked.
  pool.on('error', () => {});
  // Lost while a caller holds it (a transaction between statements, a query under way): the
  // pool listens only to idle connections, and an 'error' event nobody hears ends the process.
  // The caller's query or next statement fails with the error; the pool drops it on release.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/** Kysely over a PostgreSQL pool, the schema migrated first (stations starting at once take turns). */
export async function postgresDatabase(url: string): Promise<StationDatabase> {
  if (databaseDialect(url) !== 'postgres') throw new Error('postgresDatabase takes a postgres:// URL');
  const pool = postgresPool(url);
  try {
    const client = await pool.connect();
    try {
      await migratePostgres(client);
    } finally {
      client.release();
    }
  } catch (error) {
    await pool.end();
    throw new DatabaseUnusable(`The database ${redactedUrl(url)} cannot be used (${(error as { code?: string }).code ?? 'error'}: ${(error as Error).message}). Check that PostgreSQL runs there and lets this station in.`);
  }
  const db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  return { dialect: 'postgres', db, close: () => db.destroy() };
}

/** The database a station runs on: PostgreSQL when `url` names one, else SQLite in the data folder. */
export function openStationDatabase(url: string | undefined, dataDir: string): Promise<StationDatabase> {
  return databaseDialect(url) === 'postgres' ? postgresDatabase(url!) : Promise.resolve(sqliteDatabase(openDatabase(join(dataDir, 'cm4prov.sqlite'))));
}
