import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { DIALECT_RULES, databaseDialect, forPostgres } from '../../src/db/dialect.js';
import { MIGRATIONS_DIR, migrationFiles } from '../../src/db/migration-files.js';
import { openDatabase, type Db } from '../../src/db/open.js';
import { migratePostgres } from '../../src/db/postgres.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/server.js';

// One schema and one migration history for SQLite (the default) and PostgreSQL (several
// stations): the same SQL files, rewritten for PostgreSQL in one place (src/db/dialect.ts).

interface Column {
  name: string;
  type: string;
  notNull: boolean;
  hasDefault: boolean;
}
interface Schema {
  tables: Record<string, { columns: Column[]; primaryKey: string[]; foreignKeys: string[] }>;
  indexes: Record<string, boolean>; // name → unique
}

/** Type families, as each database names them. */
const FAMILY: Record<string, string> = { integer: 'integer', bigint: 'integer', text: 'text', real: 'float', 'double precision': 'float', blob: 'bytes', bytea: 'bytes' };

function sqliteSchema(db: Db): Schema {
  const schema: Schema = { tables: {}, indexes: {} };
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[];
  for (const { name } of tables) {
    const info = db.prepare(`PRAGMA table_info(${name})`).all() as { name: string; type: string; notnull: number; dflt_value: unknown; pk: number }[];
    const keys = db.prepare(`PRAGMA foreign_key_list(${name})`).all() as { from: string; table: string; to: string | null }[];
    schema.tables[name] = {
      columns: info.map((c) => ({ name: c.name, type: FAMILY[c.type.toLowerCase()] ?? c.type, notNull: c.notnull === 1 || c.pk > 0, hasDefault: c.dflt_value !== null || (c.pk > 0 && c.type === 'INTEGER' && info.filter((x) => x.pk > 0).length === 1) })),
      primaryKey: info.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name),
      // A reference without a column is to the other table's primary key.
      foreignKeys: keys.map((k) => `${k.from} → ${k.table}.${k.to ?? primaryKeyOf(db, k.table)}`).sort(),
    };
    for (const index of db.prepare(`PRAGMA index_list(${name})`).all() as { name: string; unique: number; origin: string }[]) {
      if (index.origin === 'c') schema.indexes[index.name] = index.unique === 1;
      // A UNIQUE column or table constraint: SQLite names its index itself, PostgreSQL otherwise.
      if (index.origin === 'u') schema.indexes[`unique ${name}(${(db.prepare(`PRAGMA index_info(${index.name})`).all() as { name: string }[]).map((c) => c.name).join(', ')})`] = true;
    }
  }
  return schema;
}

function primaryKeyOf(db: Db, table: string): string {
  return (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string; pk: number }[]).find((c) => c.pk === 1)!.name;
}

async function postgresSchema(client: pg.Client): Promise<Schema> {
  const schema: Schema = { tables: {}, indexes: {} };
  const columns = await client.query<{ table_name: string; column_name: string; data_type: string; is_nullable: string; column_default: string | null; is_identity: string }>(
    "SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY table_name, ordinal_position",
  );
  for (const c of columns.rows) {
    const table = (schema.tables[c.table_name] ??= { columns: [], primaryKey: [], foreignKeys: [] });
    table.columns.push({ name: c.column_name, type: FAMILY[c.data_type] ?? c.data_type, notNull: c.is_nullable === 'NO', hasDefault: c.column_default !== null || c.is_identity === 'YES' });
  }
  const primaryKeys = await client.query<{ table_name: string; column_name: string }>(`
    SELECT kcu.table_name, kcu.column_name FROM information_schema.table_constraints tc
    JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
    WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY' AND tc.table_name <> 'schema_migrations'
    ORDER BY kcu.table_name, kcu.ordinal_position`);
  for (const k of primaryKeys.rows) schema.tables[k.table_name]!.primaryKey.push(k.column_name);
  const foreignKeys = await client.query<{ table_name: string; column_name: string; foreign_table: string; foreign_column: string }>(`
    SELECT kcu.table_name, kcu.column_name, ref.table_name AS foreign_table, ref.column_name AS foreign_column
    FROM information_schema.referential_constraints rc
    JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = rc.constraint_name AND kcu.constraint_schema = rc.constraint_schema
    JOIN information_schema.key_column_usage ref ON ref.constraint_name = rc.unique_constraint_name
      AND ref.constraint_schema = rc.unique_constraint_schema AND ref.ordinal_position = kcu.position_in_unique_constraint
    WHERE kcu.table_schema = 'public'`);
  for (const k of foreignKeys.rows) schema.tables[k.table_name]!.foreignKeys.push(`${k.column_name} → ${k.foreign_table}.${k.foreign_column}`);
  for (const table of Object.values(schema.tables)) table.foreignKeys.sort();
  const uniques = await client.query<{ name: string; table_name: string; columns: string }>(`
    SELECT c.conname AS name, t.relname AS table_name, string_agg(a.attname, ', ' ORDER BY k.ordinality) AS columns
    FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
    CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ordinality)
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
    WHERE c.contype = 'u' AND t.relnamespace = 'public'::regnamespace GROUP BY c.conname, t.relname`);
  for (const unique of uniques.rows) schema.indexes[`unique ${unique.table_name}(${unique.columns})`] = true;
  const constraintIndexes = new Set(uniques.rows.map((unique) => unique.name));
  const indexes = await client.query<{ indexname: string; indexdef: string }>("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey'");
  for (const index of indexes.rows) {
    if (!constraintIndexes.has(index.indexname)) schema.indexes[index.indexname] = /^CREATE UNIQUE INDEX/.test(index.indexdef);
  }
  return schema;
}

async function migratedPostgres(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

test('every migration gives the same schema on SQLite and on a real PostgreSQL: tables, columns, types, NOT NULL, defaults, keys, indexes', async (t) => {
  const database = startTestPostgres(t);
  const client = await migratedPostgres(database.url);
  t.after(() => client.end());
  const version = await migratePostgres(client);
  const sqlite = openDatabase(join(tempDir(t), 'cm4prov.sqlite'));
  t.after(() => sqlite.close());
  assert.equal(version, migrationFiles().at(-1)!.version, 'PostgreSQL is at the last migration');
  assert.equal(sqlite.pragma('user_version', { simple: true }), version, 'and so is SQLite');

  const [lite, post] = [sqliteSchema(sqlite), await postgresSchema(client)];
  assert.deepEqual(Object.keys(post.tables).sort(), Object.keys(lite.tables).sort(), 'the same tables');
  for (const name of Object.keys(lite.tables)) assert.deepEqual(post.tables[name], lite.tables[name], `table ${name}`);
  assert.deepEqual(post.indexes, lite.indexes, 'the same indexes, unique where SQLite has them unique');
  assert.ok(Object.keys(lite.tables).length >= 18 && Object.keys(lite.indexes).length >= 18, 'the comparison saw the whole schema');
});

test('the schema says no to the same rows on both: CHECK, NOT NULL, foreign keys; ids are numbered by the database on both', async (t) => {
  const database = startTestPostgres(t);
  const client = await migratedPostgres(database.url);
  t.after(() => client.end());
  await migratePostgres(client);
  const sqlite = openDatabase(join(tempDir(t), 'cm4prov.sqlite'));
  t.after(() => sqlite.close());
  const both = async (sql: string) => {
    const onSqlite = (() => { try { sqlite.exec(sql); return 'accepted'; } catch { return 'refused'; } })();
    const onPostgres = await client.query(forPostgres(sql)).then(() => 'accepted', () => 'refused');
    return [onSqlite, onPostgres];
  };
  assert.deepEqual(await both("INSERT INTO devices (mac, first_seen_at, last_seen_at) VALUES ('dc:a6:32:00:00:01', 1, 1)"), ['accepted', 'accepted']);
  assert.deepEqual(await both("INSERT INTO jobs (device_mac, kind, state, token, created_at) VALUES ('dc:a6:32:00:00:01', 'deploy', 'sleeping', 't', 1)"), ['refused', 'refused'], 'a state the CHECK does not list');
  assert.deepEqual(await both("INSERT INTO jobs (device_mac, kind, state, token, created_at) VALUES ('dc:a6:32:00:00:99', 'deploy', 'queued', 't', 1)"), ['refused', 'refused'], 'a device that does not exist');
  assert.deepEqual(await both("INSERT INTO devices (mac, first_seen_at) VALUES ('dc:a6:32:00:00:02', 1)"), ['refused', 'refused'], 'a NOT NULL column left out');
  assert.deepEqual(await both("INSERT INTO jobs (device_mac, kind, state, token, created_at) VALUES ('dc:a6:32:00:00:01', 'deploy', 'queued', 't', 1)"), ['accepted', 'accepted']);
  assert.deepEqual(await both("INSERT INTO jobs (device_mac, kind, state, token, created_at) VALUES ('dc:a6:32:00:00:01', 'backup', 'queued', 't2', 1)"), ['refused', 'refused'], 'a second active job for one device (a partial unique index)');
  assert.deepEqual(await both("INSERT INTO jobs (device_mac, kind, state, token, created_at) VALUES ('dc:a6:32:00:00:01', 'backup', 'ok', 't3', 1)"), ['accepted', 'accepted']);
  // Numbered by each database, in order; PostgreSQL's may skip (a refused insert used one up).
  const sqliteIds = (sqlite.prepare('SELECT id, token FROM jobs ORDER BY id').all() as { id: number; token: string }[]);
  const postgresIds = (await client.query<{ id: string; token: string }>('SELECT id, token FROM jobs ORDER BY id')).rows;
  assert.deepEqual(sqliteIds.map((row) => row.token), ['t', 't3']);
  assert.deepEqual(postgresIds.map((row) => row.token), ['t', 't3']);
  assert.ok(Number(postgresIds[0]!.id) > 0 && Number(postgresIds[1]!.id) > Number(postgresIds[0]!.id), JSON.stringify(postgresIds));
  // 64-bit numbers: an eMMC's size in bytes, a time in milliseconds.
  assert.deepEqual(await both("UPDATE devices SET storage_bytes = 31268536320 WHERE mac = 'dc:a6:32:00:00:01'"), ['accepted', 'accepted']);
});

test('stations that start at once migrate one PostgreSQL once: each waits its turn and finds the work done', async (t) => {
  const database = startTestPostgres(t);
  const clients = await Promise.all([1, 2, 3].map(() => migratedPostgres(database.url)));
  t.after(() => Promise.all(clients.map((client) => client.end())));
  const versions = await Promise.all(clients.map((client) => migratePostgres(client)));
  const last = migrationFiles().at(-1)!.version;
  assert.deepEqual(versions, [last, last, last]);
  const applied = await clients[0]!.query<{ version: number; count: string }>('SELECT version, count(*) OVER () AS count FROM schema_migrations ORDER BY version');
  assert.deepEqual(applied.rows.map((row) => row.version), migrationFiles().map((m) => m.version), 'each migration noted once');
  assert.equal(await migratePostgres(clients[1]!), last, 'a later start changes nothing');
});

test('each dialect rule still has work in some migration, and comments are not rewritten into SQL', () => {
  const texts = migrationFiles().map(({ file }) => readFileSync(join(MIGRATIONS_DIR, file), 'utf8').replace(/--[^\n]*/g, ''));
  for (const rule of DIALECT_RULES) {
    assert.ok(texts.some((text) => new RegExp(rule.sqlite.source, rule.sqlite.flags).test(text)), `rule for ${rule.sqlite} (${rule.why}) matches a migration`);
  }
  assert.equal(forPostgres("-- an INTEGER in a comment\nSELECT 1;"), '\nSELECT 1;');
});

test('--database: nothing means SQLite in the data folder, postgres:// PostgreSQL, anything else a sentence without the password', () => {
  assert.equal(databaseDialect(undefined), 'sqlite');
  assert.equal(databaseDialect('postgres://cm4prov@db.factory.lan/cm4prov'), 'postgres');
  assert.equal(databaseDialect('postgresql://cm4prov@/cm4prov?host=/run/postgresql'), 'postgres');
  assert.throws(() => databaseDialect('mysql://root:hunter2@db/cm4prov'), (error: Error) => {
    assert.match(error.message, /^--database takes a postgres:\/\/ URL .*not 'mysql:\/\/root:\*\*\*@db\/cm4prov'$/);
    return true;
  });
});
