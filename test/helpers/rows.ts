import type { Insertable } from 'kysely';
import type { Queries } from '../../src/db/database.js';
import type { Schema } from '../../src/db/schema.js';

/** Many rows straight into a table, a few hundred per statement (tests that need thousands). */
export async function insertRows<T extends keyof Schema>(db: Queries, table: T, rows: Insertable<Schema[T]>[]): Promise<void> {
  for (let start = 0; start < rows.length; start += 500) {
    await db.insertInto(table).values(rows.slice(start, start + 500) as never).execute();
  }
}
