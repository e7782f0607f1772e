import assert from 'node:assert/strict';
import { test } from 'node:test';
import { postgresDatabase, type StationDatabase } from '../../src/db/database.js';
import { isUniqueViolation } from '../../src/db/errors.js';
import { createDeviceFilesStore, type NewJobFile, type ProfileFile } from '../../src/device-files/store.js';
import { testOnBothDatabases } from '../helpers/databases.js';
import { testDatabaseUrl } from '../helpers/postgres.js';

// The device-files store on both databases (issue 15): profiles and their sequence counter, the
// device table, and the files rendered for each job.

const FILE: ProfileFile = { partition: 1, fs: 'vfat', path: '/a.txt', mode: '0644', append: false, template: 'a {{mac}}\n' };

async function jobOf({ db }: StationDatabase, mac = 'dc:a6:32:00:00:01'): Promise<number> {
  await db.insertInto('devices').values({ mac, first_seen_at: 1, last_seen_at: 1 }).onConflict((oc) => oc.column('mac').doNothing()).execute();
  const job = await db.insertInto('jobs').values({ device_mac: mac, kind: 'deploy', state: 'ok', token: 't', created_at: 1 }).returning('id').executeTakeFirstOrThrow();
  return job.id;
}

const file = (idx: number, extra: Partial<NewJobFile> = {}): NewJobFile => ({
  idx, profile: 'p', partition: 1, fs: 'vfat', path: `/f${idx}`, mode: '0644', sha256: 'a'.repeat(64), length: 3, content: Buffer.from([0, idx, 255]), append: null, ...extra,
});

testOnBothDatabases('profiles are saved, listed in byte order, replaced keeping their counter, and deleted', async (_t, database) => {
  const store = createDeviceFilesStore(database.db);
  const saved = await store.saveProfile('b', [FILE], 100);
  assert.deepEqual(saved, { name: 'b', files: [FILE], next_sequence: 1, created_at: 100, updated_at: 100 });
  await store.saveProfile('C', [FILE], 101);
  await store.saveProfile('a', [FILE], 102);
  assert.deepEqual((await store.profiles()).map((profile) => profile.name), ['C', 'a', 'b'], 'upper case first, whatever the collation');

  assert.equal(await store.takeSequence('b'), 1);
  const other = { ...FILE, path: '/b.txt', append: true };
  const replaced = await store.saveProfile('b', [other], 200);
  assert.deepEqual(replaced, { name: 'b', files: [other], next_sequence: 2, created_at: 100, updated_at: 200 }, 'the counter and creation time stay');
  assert.deepEqual(await store.profile('b'), replaced);
  assert.equal(await store.profile('nope'), undefined);

  assert.equal(await store.deleteProfile('b'), true);
  assert.equal(await store.deleteProfile('b'), false, 'gone already');
  assert.equal(await store.profile('b'), undefined);
});

testOnBothDatabases('a profile stored before append existed writes its files whole', async (_t, database) => {
  const { append: _, ...old } = FILE;
  await database.db.insertInto('device_profiles').values({ name: 'old', files: JSON.stringify([old]), created_at: 1, updated_at: 1 }).execute();
  assert.deepEqual((await createDeviceFilesStore(database.db).profile('old'))!.files, [{ ...old, append: false }]);
});

testOnBothDatabases('sequence numbers are handed out 1, 2, 3 per profile; none for a profile that is not there', async (_t, database) => {
  const store = createDeviceFilesStore(database.db);
  await store.saveProfile('p', [FILE], 1);
  await store.saveProfile('q', [FILE], 1);
  assert.deepEqual([await store.takeSequence('p'), await store.takeSequence('p'), await store.takeSequence('q'), await store.takeSequence('p')], [1, 2, 1, 3]);
  assert.equal((await store.profile('p'))!.next_sequence, 4);
  assert.equal(await store.takeSequence('nope'), undefined);
});

test('stations taking sequence numbers at once on one PostgreSQL never get the same number', async (t) => {
  const url = await testDatabaseUrl(t);
  const stations: StationDatabase[] = [];
  t.after(() => Promise.all(stations.map((station) => station.close())));
  for (let i = 0; i < 4; i++) stations.push(await postgresDatabase(url));
  await createDeviceFilesStore(stations[0]!.db).saveProfile('line', [FILE], 1);
  const perStation = 30;
  const taken = await Promise.all(
    stations.flatMap((station) => Array.from({ length: perStation }, () => createDeviceFilesStore(station.db).takeSequence('line'))),
  );
  const count = stations.length * perStation;
  assert.deepEqual([...taken].sort((a, b) => a! - b!), Array.from({ length: count }, (_, i) => i + 1), 'each number once, none skipped');
  assert.equal((await createDeviceFilesStore(stations[1]!.db).profile('line'))!.next_sequence, count + 1);
});

testOnBothDatabases('importing a device table replaces the whole table; its description counts the rows', async (_t, database) => {
  const store = createDeviceFilesStore(database.db);
  assert.equal(await store.table(), undefined, 'none imported yet');
  const rows = Array.from({ length: 1201 }, (_, i) => ({ key: `serial${i}`, values: { serial: `serial${i}`, secret: `s${i}` } }));
  const described = await store.replaceTable('serial', ['serial', 'secret'], rows, 500);
  assert.deepEqual(described, { key_column: 'serial', columns: ['serial', 'secret'], imported_at: 500, rows: 1201 });
  assert.deepEqual(await store.table(), described);
  assert.deepEqual(await store.tableRow('serial1200'), { serial: 'serial1200', secret: 's1200' }, 'a row of the last chunk');

  await store.replaceTable('mac', ['mac', 'name'], [{ key: 'dc:a6:32:00:00:01', values: { mac: 'dc:a6:32:00:00:01', name: 'one' } }], 600);
  assert.deepEqual(await store.table(), { key_column: 'mac', columns: ['mac', 'name'], imported_at: 600, rows: 1 });
  assert.equal(await store.tableRow('serial0'), undefined, 'the earlier rows are gone');
  assert.deepEqual(await store.tableRow('dc:a6:32:00:00:01'), { mac: 'dc:a6:32:00:00:01', name: 'one' });
});

testOnBothDatabases('a device table import that fails part-way leaves the earlier table as it was', async (_t, database) => {
  const store = createDeviceFilesStore(database.db);
  const before = await store.replaceTable('serial', ['serial'], [{ key: 'kept', values: { serial: 'kept' } }], 1);
  // The duplicate key sits in the second chunk: the first was inserted before the refusal.
  const rows = Array.from({ length: 700 }, (_, i) => ({ key: i === 650 ? 'k0' : `k${i}`, values: { serial: `k${i}` } }));
  await assert.rejects(store.replaceTable('serial', ['serial'], rows, 2), (error) => isUniqueViolation(error));
  assert.deepEqual(await store.table(), before);
  assert.deepEqual(await store.tableRow('kept'), { serial: 'kept' });
  assert.equal(await store.tableRow('k1'), undefined);
});

testOnBothDatabases("a job's files are stored, listed by index, read back, and lose their contents", async (_t, database) => {
  const store = createDeviceFilesStore(database.db);
  const jobId = await jobOf(database);
  const other = await jobOf(database);
  assert.equal(await store.hasJobFiles(jobId), false);
  await store.saveJobFiles(jobId, []);
  assert.equal(await store.hasJobFiles(jobId), false, 'no files, no rows');

  await store.saveJobFiles(jobId, [file(1, { append: 'first_line', path: '/cmdline.txt' }), file(0)]);
  assert.equal(await store.hasJobFiles(jobId), true);
  assert.equal(await store.hasJobFiles(other), false);
  const stored = await store.jobFiles(jobId);
  assert.deepEqual(stored.map((row) => [row.idx, row.path, row.append, row.read_back_sha256, row.read_back_length]), [
    [0, '/f0', null, null, null],
    [1, '/cmdline.txt', 'first_line', null, null],
  ]);
  assert.ok(Buffer.isBuffer(stored[1]!.content), 'a BLOB comes back as bytes on both');
  assert.deepEqual([...stored[1]!.content!], [0, 1, 255]);
  assert.deepEqual(stored.map((row) => [row.job_id, row.partition, row.length]), [[jobId, 1, 3], [jobId, 1, 3]]);

  await store.saveReadBack(jobId, 1, 'b'.repeat(64), 42);
  await store.saveReadBack(jobId, 0, 'c'.repeat(64), null);
  assert.deepEqual((await store.jobFiles(jobId)).map((row) => [row.read_back_sha256, row.read_back_length]), [['c'.repeat(64), null], ['b'.repeat(64), 42]]);

  await store.saveJobFiles(other, [file(0)]);
  await store.dropContents(jobId);
  assert.deepEqual((await store.jobFiles(jobId)).map((row) => [row.content, row.sha256]), [[null, 'a'.repeat(64)], [null, 'a'.repeat(64)]], 'the hashes stay');
  assert.notEqual((await store.jobFiles(other))[0]!.content, null, "another job's contents stay");
});

testOnBothDatabases("a job's files are stored all or none: a duplicate index, an unknown job or a bad append are refused", async (_t, database) => {
  const store = createDeviceFilesStore(database.db);
  const jobId = await jobOf(database);
  await assert.rejects(store.saveJobFiles(jobId, [file(0), file(1), file(1)]), (error) => isUniqueViolation(error));
  assert.deepEqual(await store.jobFiles(jobId), [], 'not even the first two');
  await assert.rejects(store.saveJobFiles(jobId + 100, [file(0)]), /FOREIGN KEY|foreign key/);
  await assert.rejects(store.saveJobFiles(jobId, [file(0, { append: 'middle' as NewJobFile['append'] })]), /CHECK|check constraint/);
  assert.equal(await store.hasJobFiles(jobId), false);
});
