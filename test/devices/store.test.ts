import assert from 'node:assert/strict';
import type { StationDatabase } from '../../src/db/database.js';
import { createDeviceStore } from '../../src/devices/store.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// The device store on both databases (issue 15): the same upserts, pages, counts and sweeps.

const mac = (n: number) => `dc:a6:32:00:00:${n.toString(16).padStart(2, '0')}`;

async function devices(database: StationDatabase, count: number) {
  const store = createDeviceStore(database.db);
  for (let n = 1; n <= count; n++) await store.save({ mac: mac(n), ip: `10.20.50.${100 + n}`, serial: `1000000${n}`, model: n % 2 ? 'Compute Module 4' : 'Pi 4' }, n * 1000);
  return store;
}

testOnBothDatabases('registering again keeps facts not sent; a boot-only sighting is not a registration', async (_t, database) => {
  const store = createDeviceStore(database.db);
  const first = await store.save({ mac: mac(1), ip: '10.20.50.101', serial: '100000001', storageBytes: 32 * 2 ** 30 }, 1000);
  assert.deepEqual([first.first_seen_at, first.registered_at, first.netboot_enabled], [1000, 1000, 1]);
  const again = await store.save({ mac: mac(1), ip: null, model: 'CM4' }, 2000);
  assert.deepEqual([again.ip, again.serial, again.storage_bytes, again.model, again.first_seen_at, again.last_seen_at], ['10.20.50.101', '100000001', 32 * 2 ** 30, 'CM4', 1000, 2000]);
  const bootOnly = await store.save({ mac: mac(2), ip: '10.20.50.102', byClient: false }, 3000);
  assert.equal(bootOnly.registered_at, null);
  await store.setBootStage(mac(2), 'loaded kernel8.img', 2500);
  assert.equal((await store.get(mac(2)))!.last_seen_at, 3000, 'an older boot event does not move last seen back');
  await store.setBootStage(mac(2), 'loaded start4.elf', 3500);
  assert.deepEqual(Object.values((await store.get(mac(2)))!).filter((v) => v === 3500 || v === 'loaded start4.elf').length, 3);
  await store.setServerUrl(mac(1), 'http://10.20.50.1:5000');
  assert.equal((await store.get(mac(1)))!.server_url, 'http://10.20.50.1:5000');
  assert.equal(await store.setNetboot(mac(1), false), true);
  assert.equal(await store.setNetboot('dc:a6:32:99:99:99', false), false);
  assert.deepEqual(await store.netbootDisabled(), [mac(1)]);
  await store.touch(mac(1), 9000);
  assert.equal((await store.get(mac(1)))!.last_seen_at, 9000);
  assert.deepEqual((await store.rowsOf([mac(2), 'dc:a6:32:99:99:99'])).map((row) => row.mac), [mac(2)]);
  assert.deepEqual(await store.rowsOf([]), []);
});

testOnBothDatabases('pages in both orders with cursors; counts before the page; search in any case; state filters', async (_t, database) => {
  const store = await devices(database, 5);
  const first = await store.page({ limit: 2 }, 0);
  assert.deepEqual(first.rows.map((row) => row.mac), [mac(1), mac(2)]);
  const second = await store.page({ limit: 2, cursor: first.next! }, 0);
  assert.deepEqual(second.rows.map((row) => row.mac), [mac(3), mac(4)]);
  assert.deepEqual(await store.counts({ cursor: first.next! }, 0), { total: 5, skipped: 2 });
  const newest = await store.page({ limit: 2, order: 'newest' }, 0);
  assert.deepEqual(newest.rows.map((row) => row.mac), [mac(5), mac(4)]);
  assert.deepEqual((await store.page({ limit: 9, order: 'newest', cursor: newest.next! }, 0)).rows.map((row) => row.mac), [mac(3), mac(2), mac(1)]);
  assert.equal(await store.count({ search: 'DC-A6-32-00-00-0' }, 0), 5, 'a MAC in capitals with dashes');
  assert.equal(await store.count({ search: 'compute MODULE' }, 0), 3);
  assert.equal(await store.count({ search: '10.20.50.103' }, 0), 1);
  assert.equal(await store.count({ search: '_' }, 0), 0, 'a LIKE wildcard is matched as typed');
  assert.equal(await store.countSince({}, 0, 4000), 2);
  assert.equal(await store.count({ state: 'stale' }, 3500), 3, 'last seen before 3.5 s');
  assert.equal(await store.count({ state: 'ready' }, 3500), 2);
  await database.db.insertInto('jobs').values({ device_mac: mac(5), kind: 'backup', state: 'running', token: 't', created_at: 1 }).execute();
  assert.equal(await store.count({ state: 'running' }, 0), 1);
  assert.equal(await store.count({ state: 'ready' }, 3500), 1, 'a device with a job is not ready');
});

testOnBothDatabases('the sweep forgets only devices without history, in batches, with their boot events', async (_t, database) => {
  const store = await devices(database, 6);
  await database.db.insertInto('jobs').values({ device_mac: mac(1), kind: 'backup', state: 'failed', token: 't', created_at: 1 }).execute();
  await database.db.insertInto('backups').values({ device_mac: mac(2), file: 'b', size: 1, sha256: 'c'.repeat(64), created_at: 1 }).execute();
  await store.setNetboot(mac(3), false);
  await database.db.insertInto('boot_events').values({ mac: mac(4), at: 1, kind: 'dhcp' }).execute();
  assert.equal((await store.sweepUnknown(5500, 1)).length, 1, 'one batch');
  const rest = await store.sweepUnknown(5500, 10);
  assert.equal(rest.length, 1, 'devices 4 and 5 are forgettable; 6 was seen too recently');
  assert.deepEqual((await store.rowsOf([1, 2, 3, 4, 5, 6].map(mac))).map((row) => row.mac).sort(), [mac(1), mac(2), mac(3), mac(6)]);
  assert.deepEqual(await database.db.selectFrom('boot_events').selectAll().execute(), []);
});
