import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/** One history for both databases: migrations/NNNN-name.sql, in SQLite's words (see dialect.ts). */
export const MIGRATIONS_DIR = join(import.meta.dirname, 'migrations');

export function migrationFiles(dir = MIGRATIONS_DIR): { version: number; file: string }[] {
  return readdirSync(dir)
    .filter((file) => /^\d{4}-[\w-]+\.sql$/.test(file))
    .sort()
    .map((file) => ({ version: Number(file.slice(0, 4)), file }));
}
