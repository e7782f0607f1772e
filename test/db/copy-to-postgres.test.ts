import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { copySqliteToPostgres } from '../../src/db/copy-to-postgres.js';
import { openDatabase, type Db } from '../../src/db/open.js';
import { migratePostgres } from '../../src/db/postgres.js';
import { runClient } from '../helpers/device-client.js';
import { makeFakeEmmc } from '../helpers/files.js';
import { addImage, MAC } from '../helpers/fixtures.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// A station's SQLite data moved into PostgreSQL (issue 15): every table, every row, ids kept.

/** A station that did real work: a device deployed by a rule, backed up, a webhook, a session. */
async function stationWithHistory(t: Parameters<typeof startTestServer>[0]) {
  const server = await startTestServer(t);
  await addImage(t, server, 'raspios', 3 * 1024 * 1024, { makeDefault: true });
  assert.equal((await server.admin('POST', '/api/rules', { name: 'line', action: 'deploy', confirm_boot: false })).status, 201);
  assert.equal((await server.admin('POST', '/api/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['job.ok'], secret: 'a-secret-of-enough-length' })).status, 201);
  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, 16 * 1024 * 1024);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env: { AFTER_JOB: 'poll' } });
  await waitFor('the rule\'s deploy', async () => (await server.admin('GET', '/api/jobs')).body.jobs.some((job: any) => job.state === 'ok'));
  const backup = await server.admin('POST', `/api/devices/${MAC}/backup`);
  assert.equal(backup.status, 201, JSON.stringify(backup.body));
  await waitFor('the backup', async () => (await server.admin('GET', `/api/jobs/${backup.body.id}`)).body.state === 'ok');
  client.kill();
  await server.close();
  return openDatabase(join(server.dataDir, 'cm4prov.sqlite'));
}

function rowsOf(sqlite: Db, table: string): unknown[][] {
  return sqlite.prepare(`SELECT * FROM ${table} ORDER BY 1, 2`).raw().all() as unknown[][];
}

async function connect(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  // BIGINT as numbers (ours are all below 2^53: sizes, millisecond times, ids), as SQLite gives them.
  client.setTypeParser(20, Number);
  return client;
}

test('a station\'s SQLite data copies into PostgreSQL whole: the same rows in every table, ids kept, new ids after them; a dry run only counts', async (t) => {
  const sqlite = await stationWithHistory(t);
  t.after(() => sqlite.close());
  const database = startTestPostgres(t);
  const client = await connect(database.url);
  t.after(() => client.end());
  await migratePostgres(client);

  const dry = await copySqliteToPostgres(sqlite, client, { dryRun: true });
  const counted = Object.fromEntries(dry.map(({ table, rows }) => [table, rows]));
  for (const table of ['devices', 'images', 'jobs', 'backups', 'rules', 'rule_devices', 'webhooks', 'block_maps', 'block_map_chunks']) assert.ok(counted[table]! > 0, `${table} has rows to copy: ${JSON.stringify(counted)}`);
  assert.equal(Number((await client.query('SELECT count(*) AS n FROM jobs')).rows[0].n), 0, 'the dry run wrote nothing');

  const copied = await copySqliteToPostgres(sqlite, client);
  assert.deepEqual(copied, dry);
  for (const { table } of copied) {
    const expected = rowsOf(sqlite, table).map((row) => row.map((value) => (value instanceof Buffer ? value.toString('hex') : value)));
    const actual = (await client.query({ text: `SELECT * FROM ${table} ORDER BY 1, 2`, rowMode: 'array' })).rows.map((row: unknown[]) => row.map((value) => (value instanceof Buffer ? value.toString('hex') : value)));
    assert.deepEqual(actual, expected, `table ${table}, row for row`);
  }
  const lastJob = Math.max(...(rowsOf(sqlite, 'jobs').map((row) => row[0] as number)));
  const next = await client.query("INSERT INTO jobs (device_mac, kind, state, token, created_at) SELECT mac, 'backup', 'ok', 'new', 1 FROM devices LIMIT 1 RETURNING id");
  assert.equal(next.rows[0].id, lastJob + 1, 'the next job id continues after the copied ones');
});

test('a copy refuses a PostgreSQL that has data or is not migrated, and writes nothing', async (t) => {
  const sqlite = await stationWithHistory(t);
  t.after(() => sqlite.close());
  const database = startTestPostgres(t);
  const client = await connect(database.url);
  t.after(() => client.end());
  await assert.rejects(copySqliteToPostgres(sqlite, client), /The PostgreSQL database is at schema version none, not \d+: it must be migrated first\./);
  await migratePostgres(client);
  await client.query("INSERT INTO devices (mac, first_seen_at, last_seen_at) VALUES ('dc:a6:32:ff:ff:ff', 1, 1)");
  await assert.rejects(copySqliteToPostgres(sqlite, client), /The PostgreSQL database already has data \(1 row in devices\): copy into an empty one, never over a station's data\./);
  assert.deepEqual((await client.query('SELECT mac FROM devices')).rows, [{ mac: 'dc:a6:32:ff:ff:ff' }], 'what was there is untouched, nothing was added');
});
