import assert from 'node:assert/strict';
import { inTransaction, type StationDatabase } from '../../src/db/database.js';
import { createBackupStore, type NewBackup } from '../../src/backups/store.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// The backup store on both databases (issue 15): the same rows, pages, counts and refusals.

/** A foreign key refused the row: SQLite's SQLITE_CONSTRAINT_FOREIGNKEY, PostgreSQL's SQLSTATE 23503. */
const isForeignKeyViolation = (error: unknown) => ['SQLITE_CONSTRAINT_FOREIGNKEY', '23503'].includes((error as { code?: string }).code ?? '');

const MAC = 'dc:a6:32:00:00:01';
const OTHER = 'dc:a6:32:00:00:02';

async function seed({ db }: StationDatabase) {
  for (const mac of [MAC, OTHER]) await db.insertInto('devices').values({ mac, first_seen_at: 1, last_seen_at: 1 }).execute();
  const map = await db
    .insertInto('block_maps')
    .values({ image_size: 10, mapped_bytes: 10, chunk_count: 0, sparse_sha256: 'e'.repeat(64), source: 'zeros', created_at: 1 })
    .returning('id')
    .executeTakeFirstOrThrow();
  return map.id;
}

const backup = (mapId: number, n: number, mac = MAC): NewBackup => ({
  mac,
  jobId: 100 + n,
  file: `backups/${mac.replaceAll(':', '')}/b${n}.img`,
  size: 1000 * n,
  sha256: String(n % 10).repeat(64),
  blockMapId: mapId,
  completeness: n % 2 ? 'whole' : 'size_unknown',
  deviceChecked: n % 2 === 1,
  station: n === 1 ? 'north' : null,
});

testOnBothDatabases('add returns the stored row, its numbers as numbers; get finds it until it is deleted', async (_t, database) => {
  const store = createBackupStore(database.db);
  const mapId = await seed(database);
  const added = await store.add(backup(mapId, 1), 5000);
  assert.deepEqual(added, {
    id: added.id,
    device_mac: MAC,
    job_id: 101,
    file: 'backups/dca632000001/b1.img',
    size: 1000,
    sha256: '1'.repeat(64),
    created_at: 5000,
    deleted_at: null,
    block_map_id: mapId,
    completeness: 'whole',
    device_checked: 1,
    station: 'north',
  });
  assert.equal(typeof added.id, 'number');
  const unchecked = await store.add(backup(mapId, 2), 6000);
  assert.deepEqual([unchecked.completeness, unchecked.device_checked, unchecked.station], ['size_unknown', 0, null]);
  assert.notEqual(unchecked.id, added.id);
  assert.deepEqual(await store.get(added.id), added);
  assert.equal(await store.get(added.id + 1000), undefined);
});

testOnBothDatabases('add refuses a backup of an unknown device or block map', async (_t, database) => {
  const store = createBackupStore(database.db);
  const mapId = await seed(database);
  await assert.rejects(store.add(backup(mapId, 1, 'dc:a6:32:99:99:99'), 1), isForeignKeyViolation);
  await assert.rejects(store.add(backup(mapId + 1, 1), 1), isForeignKeyViolation);
  assert.deepEqual(await store.allFiles(), []);
});

testOnBothDatabases('markDeleted is true once: a deleted backup is gone from get, pages and the live files', async (_t, database) => {
  const store = createBackupStore(database.db);
  const mapId = await seed(database);
  const first = await store.add(backup(mapId, 1), 1);
  const second = await store.add(backup(mapId, 2), 2);
  assert.deepEqual((await store.allFiles()).sort(), [first.file, second.file]);
  const [one, other] = await Promise.all([store.markDeleted(first.id, 9), store.markDeleted(first.id, 10)]);
  assert.deepEqual([one, other].sort(), [false, true], 'of two deletes at once, exactly one marks it');
  assert.equal(await store.markDeleted(first.id + 1000, 9), false, 'no such backup');
  assert.equal(await store.get(first.id), undefined);
  assert.deepEqual(await store.allFiles(), [second.file]);
  const page = await store.page({ limit: 10 });
  assert.deepEqual([page.rows.map((row) => row.id), page.total], [[second.id], 1]);
  const deletedAt = await database.db.selectFrom('backups').select('deleted_at').where('id', '=', first.id).executeTakeFirstOrThrow();
  assert.ok(deletedAt.deleted_at === 9 || deletedAt.deleted_at === 10);
});

testOnBothDatabases('pages go newest first with a cursor, by device when asked; total and skipped count the filter', async (_t, database) => {
  const store = createBackupStore(database.db);
  const mapId = await seed(database);
  const ids: number[] = [];
  for (let n = 1; n <= 5; n++) ids.push((await store.add(backup(mapId, n, n === 3 ? OTHER : MAC), n)).id);

  const first = await store.page({ limit: 2 });
  assert.deepEqual(first.rows.map((row) => row.id), [ids[4], ids[3]]);
  assert.deepEqual([first.total, first.skipped, first.next], [5, 0, ids[3]]);
  const second = await store.page({ limit: 2, cursor: first.next! });
  assert.deepEqual(second.rows.map((row) => row.id), [ids[2], ids[1]]);
  assert.deepEqual([second.total, second.skipped, second.next], [5, 2, ids[1]]);
  const last = await store.page({ limit: 2, cursor: second.next! });
  assert.deepEqual([last.rows.map((row) => row.id), last.skipped, last.next], [[ids[0]], 4, null]);

  const mine = await store.page({ mac: MAC, limit: 2, cursor: ids[3] });
  assert.deepEqual(mine.rows.map((row) => row.id), [ids[1], ids[0]], 'the other device\'s backup is left out');
  assert.deepEqual([mine.total, mine.skipped, mine.next], [4, 2, null]);
  const theirs = await store.page({ mac: OTHER, limit: 10 });
  assert.deepEqual([theirs.rows.map((row) => row.device_mac), theirs.total], [[OTHER], 1]);
  assert.deepEqual(await store.page({ mac: 'dc:a6:32:99:99:99', limit: 10 }), { rows: [], total: 0, skipped: 0, next: null });
});

testOnBothDatabases('a backup added in a transaction that fails is not there', async (_t, database) => {
  const mapId = await seed(database);
  await assert.rejects(
    inTransaction(database.db, async (tx) => {
      await createBackupStore(tx).add(backup(mapId, 1), 1);
      throw new Error('the job had ended');
    }),
    /the job had ended/,
  );
  const store = createBackupStore(database.db);
  assert.deepEqual([await store.allFiles(), (await store.page({ limit: 10 })).total], [[], 0]);
});
