import assert from 'node:assert/strict';
import type { StationDatabase } from '../../src/db/database.js';
import { createRecordStore } from '../../src/records/store.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// The record store's queries on both databases (issue 15): the same pages, totals and matches.

const SERIAL = '10000000c0ffee01';

async function seed({ db }: StationDatabase) {
  const device = (mac: string, seen: number, extra: { serial?: string; model?: string; ip?: string; emmc_cid?: string } = {}) =>
    db.insertInto('devices').values({ mac, first_seen_at: seen, last_seen_at: seen, ...extra }).execute();
  // One record of two MACs (a carrier swapped), one MAC without a serial, and one more serial.
  await device('dc:a6:32:00:00:01', 1000, { serial: SERIAL, model: 'Raspberry Pi Compute Module 4 Rev 1.1', ip: '10.20.50.101', emmc_cid: '150100424a54443452a1b2c3d4e5f6a7' });
  await device('dc:a6:32:00:00:02', 2000, { serial: SERIAL });
  await device('dc:a6:32:00:00:03', 1500);
  await device('e4:5f:01:00:00:04', 3000, { serial: '10000000c0ffee02', model: 'Raspberry Pi 4 Model B' });
  const job = await db
    .insertInto('jobs')
    .values({ device_mac: 'dc:a6:32:00:00:02', kind: 'backup', state: 'ok', token: 't', created_at: 2100 })
    .returning('id')
    .executeTakeFirstOrThrow();
  await db.insertInto('backups').values({ device_mac: 'dc:a6:32:00:00:02', job_id: job.id, file: 'b.zst', size: 1, sha256: 'a'.repeat(64), created_at: 2200 }).execute();
  return job.id;
}

testOnBothDatabases('records page oldest first with a cursor; totals count records, not MACs', async (_t, database) => {
  await seed(database);
  const store = createRecordStore(database.db);
  const first = await store.page({ limit: 2 });
  assert.deepEqual(first.keys, [
    { keyedBy: 'serial', key: SERIAL, firstSeen: 1000 },
    { keyedBy: 'mac', key: 'dc:a6:32:00:00:03', firstSeen: 1500 },
  ]);
  assert.equal(first.total, 3);
  const rest = await store.page({ limit: 2, cursor: first.next! });
  assert.deepEqual(rest.keys, [{ keyedBy: 'serial', key: '10000000c0ffee02', firstSeen: 3000 }]);
  assert.equal(rest.next, null);
});

testOnBothDatabases('a search matches a record by any MAC spelling, IP, serial, model or eMMC CID, in any case', async (_t, database) => {
  await seed(database);
  const store = createRecordStore(database.db);
  const keysOf = async (search: string) => (await store.page({ search, limit: 10 })).keys.map((key) => key.key);
  assert.deepEqual(await keysOf('DC-A6-32-00-00-02'), [SERIAL], 'the MAC the record used second, upper case with dashes');
  assert.deepEqual(await keysOf('dca632000003'), ['dc:a6:32:00:00:03']);
  assert.deepEqual(await keysOf('10.20.50.101'), [SERIAL]);
  assert.deepEqual(await keysOf('C0FFEE02'), ['10000000c0ffee02']);
  assert.deepEqual(await keysOf('compute module'), [SERIAL]);
  assert.deepEqual(await keysOf('A1B2C3'), [SERIAL], 'part of the eMMC CID');
  assert.deepEqual(await keysOf('100%'), [], 'LIKE wildcards in a search are matched as typed');
  assert.equal((await store.page({ search: 'dc:a6', limit: 10 })).total, 2);
});

testOnBothDatabases("a record's devices, its MAC's key, and the jobs and backups of all its MACs", async (_t, database) => {
  const jobId = await seed(database);
  const store = createRecordStore(database.db);
  assert.deepEqual((await store.devicesOf({ keyedBy: 'serial', key: SERIAL })).map((device) => device.mac), ['dc:a6:32:00:00:01', 'dc:a6:32:00:00:02']);
  assert.deepEqual((await store.devicesOf({ keyedBy: 'mac', key: 'dc:a6:32:00:00:01' })).length, 0, 'a MAC with a serial is not a record of its own');
  assert.deepEqual(await store.keyOfMac('dc:a6:32:00:00:02'), { keyedBy: 'serial', key: SERIAL });
  assert.deepEqual(await store.keyOfMac('dc:a6:32:00:00:03'), { keyedBy: 'mac', key: 'dc:a6:32:00:00:03' });
  assert.equal(await store.keyOfMac('dc:a6:32:99:99:99'), undefined);
  const macs = ['dc:a6:32:00:00:01', 'dc:a6:32:00:00:02'];
  const jobs = await store.jobsOf(macs);
  assert.deepEqual(jobs.map((job) => [job.id, job.created_at]), [[jobId, 2100]], 'numbers come back as numbers on both');
  assert.deepEqual((await store.backupsOf(macs)).map((backup) => backup.size), [1]);
  assert.deepEqual(await store.jobsOf([]), []);
});
