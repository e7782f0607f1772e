import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { postgresDatabase, sqliteDatabase, type StationDatabase } from '../../src/db/database.js';
import type { Dialect } from '../../src/db/dialect.js';
import { openDatabase } from '../../src/db/open.js';
import { testDatabaseUrl } from './postgres.js';
import { tempDir } from './server.js';

export const DIALECTS: readonly Dialect[] = ['sqlite', 'postgres'];

/** A migrated, empty database of the test's own: SQLite in a temp folder, or a new database on the file's PostgreSQL server. */
export async function openTestDatabase(t: TestContext, dialect: Dialect): Promise<StationDatabase> {
  // Registered first, so it runs first (node:test runs after-hooks in order): closed, then dropped.
  let database: StationDatabase | undefined;
  t.after(() => database?.close());
  database = dialect === 'sqlite' ? sqliteDatabase(openDatabase(join(tempDir(t), 'cm4prov.sqlite'))) : await postgresDatabase(await testDatabaseUrl(t));
  return database;
}

/** The same test once on each database, its name ending in [sqlite] or [postgres]. */
export function testOnBothDatabases(name: string, body: (t: TestContext, database: StationDatabase) => Promise<void>): void {
  for (const dialect of DIALECTS) test(`${name} [${dialect}]`, async (t) => body(t, await openTestDatabase(t, dialect)));
}
