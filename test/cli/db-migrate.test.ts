import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { runCli } from '../helpers/cli.js';
import { addImage, MAC, registerDevice } from '../helpers/fixtures.js';
import { testDatabaseUrl } from '../helpers/postgres.js';
import { startTestServer } from '../helpers/server.js';

// `cm4prov db migrate --to postgres://…` (issue 15): a station's SQLite data moved into PostgreSQL,
// after which the server runs on it with --database.

async function countJobs(url: string): Promise<number | null> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return Number((await client.query('SELECT count(*) AS n FROM devices')).rows[0].n);
  } catch {
    return null; // no such table: nothing was migrated
  } finally {
    await client.end();
  }
}

test('db migrate: refused while the server runs, a dry run counts, the copy moves the station, and the server runs on it', async (t) => {
  const station = await startTestServer(t);
  await registerDevice(station);
  await addImage(t, station, 'raspios', 64 * 1024, { makeDefault: true });
  const url = await testDatabaseUrl(t);
  const env = { CM4PROV_DATA_DIR: station.dataDir };

  const running = await runCli(['db', 'migrate', '--to', url], env);
  assert.equal(running.code, 1, running.stderr);
  assert.match(running.stderr, /server \(pid \d+\) is using the data folder .*: stop it first \(systemctl stop cm4-provisioning\)/);

  const dry = await runCli(['db', 'migrate', '--to', url, '--dry-run'], env);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^devices +1$/m);
  assert.match(dry.stdout, /^images +1$/m);
  assert.match(dry.stdout, /Dry run: \d+ rows in \d+ tables would be copied into postgres:\/\/postgres@\/test_\d+_\d+\?host=.*\. Nothing was written\./);
  assert.equal(await countJobs(url), null, 'the dry run did not even migrate the schema');

  await station.close();
  const badName = await runCli(['db', 'migrate', '--to', url, '--station', 'line 1'], env);
  assert.equal(badName.code, 2);
  assert.match(badName.stderr, /Invalid --station: 'line 1' is not a station name/);
  const copied = await runCli(['db', 'migrate', '--to', url, '--station', 'line-1'], env);
  assert.equal(copied.code, 0, copied.stderr);
  assert.match(copied.stdout, /Copied \d+ rows in \d+ tables into .*; this station's devices, jobs and backups are named 'line-1'\./);
  assert.match(copied.stdout, /Next: start the server with --database .* --station line-1\./);
  assert.equal(await countJobs(url), 1);

  const again = await runCli(['db', 'migrate', '--to', url], env);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already has data \(1 row in block_maps\): copy into an empty one, never over a station's data\. Nothing was copied\./);

  const onPostgres = await startTestServer(t, { dataDir: station.dataDir, database: url, station: 'line-1' });
  const device = await onPostgres.admin('GET', `/api/devices/${MAC}`);
  assert.equal(device.status, 200, JSON.stringify(device.body));
  assert.equal(device.body.station, 'line-1');
  const image = await onPostgres.admin('GET', '/api/images/raspios');
  assert.equal(image.status, 200, JSON.stringify(image.body));
  assert.equal(image.body.broken ?? null, null, 'its file is where the metadata says');
  assert.deepEqual(
    image.body.copies.map((copy: { station: string; state: string }) => [copy.station, copy.state]),
    [['line-1', 'complete']],
    'its file is the station\'s complete copy, under the name it moved with',
  );
});

test('db migrate refuses a URL that is not PostgreSQL, and a PostgreSQL it cannot reach, each with a sentence', async (t) => {
  const station = await startTestServer(t);
  await station.close();
  const env = { CM4PROV_DATA_DIR: station.dataDir };
  const mysql = await runCli(['db', 'migrate', '--to', 'mysql://root@localhost/x'], env);
  assert.equal(mysql.code, 2);
  assert.match(mysql.stderr, /--to takes a postgres:\/\/ URL/);
  const nowhere = await runCli(['db', 'migrate', '--to', 'postgres://someone:secret@/x?host=/nonexistent-socket-dir', '--dry-run'], env);
  assert.equal(nowhere.code, 3, nowhere.stderr);
  assert.match(nowhere.stderr, /cannot reach postgres:\/\/someone:\*\*\*@\/x/);
  assert.doesNotMatch(nowhere.stderr, /secret/, 'the password is never echoed');
});
