import assert from 'node:assert/strict';
import pino from 'pino';
import { inTransaction, type Queries, type StationDatabase } from '../../src/db/database.js';
import { createDeviceFilesService } from '../../src/device-files/service.js';
import { createDeviceFilesStore } from '../../src/device-files/store.js';
import type { DeviceRow } from '../../src/devices/store.js';
import type { JobRow } from '../../src/jobs/store.js';
import { createEventBus } from '../../src/shared/events.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// An order's files are stored in the transaction that creates its job (issue 15): with it, or
// not at all, and a profile deleted in between refuses the order.

const MAC = 'dc:a6:32:00:00:01';

async function setUp({ db }: StationDatabase) {
  const store = createDeviceFilesStore(db);
  const bus = createEventBus();
  const service = createDeviceFilesService({ store, clock: { now: () => 0 }, bus, log: pino({ level: 'silent' }) });
  await service.saveProfile({ name: 'line', files: [{ partition: 1, fs: 'vfat', path: '/unit.txt', template: 'unit {{sequence}} {{table.name}}\n' }] });
  await service.importTable(`mac,name\n${MAC},first\n`);
  await db.insertInto('devices').values({ mac: MAC, first_seen_at: 1, last_seen_at: 1 }).execute();
  const device = (await db.selectFrom('devices').selectAll().where('mac', '=', MAC).executeTakeFirstOrThrow()) as DeviceRow;
  const storeFiles = await service.prepare('line', device, { image: { name: 'os' } });
  const newJob = async (tx: Queries) =>
    (await tx.insertInto('jobs').values({ device_mac: MAC, kind: 'deploy', state: 'queued', token: 't', created_at: 1 }).returningAll().executeTakeFirstOrThrow()) as JobRow;
  return { store, service, bus, storeFiles, newJob };
}

testOnBothDatabases("an order's files are stored in the job's transaction, with the profile's next number", async (_t, database) => {
  const { store, service, storeFiles, newJob } = await setUp(database);
  const job = await inTransaction(database.db, async (tx) => {
    const created = await newJob(tx);
    await storeFiles(created, tx);
    return created;
  });
  assert.equal(await service.listText(job), `FILES=1\nfile 0 1 vfat 0644 13 ${(await store.jobFiles(job.id))[0]!.sha256} /unit.txt\n`);
  assert.equal((await service.content(job, 0)).toString(), 'unit 1 first\n');
  assert.equal((await store.profile('line'))!.next_sequence, 2);
});

testOnBothDatabases('a job whose transaction fails keeps no files and uses up no number', async (_t, database) => {
  const { store, storeFiles, newJob } = await setUp(database);
  let jobId = 0;
  await assert.rejects(
    inTransaction(database.db, async (tx) => {
      const created = await newJob(tx);
      jobId = created.id;
      await storeFiles(created, tx);
      throw new Error('the order failed after its files');
    }),
    /the order failed/,
  );
  assert.deepEqual(await store.jobFiles(jobId), []);
  assert.equal((await store.profile('line'))!.next_sequence, 1, 'the number was not taken');
});

testOnBothDatabases('a profile deleted between rendering and storing refuses the order (409)', async (_t, database) => {
  const { store, service, storeFiles, newJob } = await setUp(database);
  await service.deleteProfile('line');
  const job = await newJob(database.db);
  await assert.rejects(storeFiles(job), (error: { statusCode?: number; message?: string }) =>
    error.statusCode === 409 && error.message === "profile 'line' was deleted while this order was placed; nothing was queued");
  assert.equal(await store.hasJobFiles(job.id), false);
});

testOnBothDatabases("a job's contents are dropped when it ends, not before", async (_t, database) => {
  const { store, bus, storeFiles, newJob } = await setUp(database);
  const job = await newJob(database.db);
  await storeFiles(job);
  const content = async () => (await store.jobFiles(job.id))[0]!.content;
  bus.emit('job.changed', { jobId: job.id, mac: MAC, state: 'running' });
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.notEqual(await content(), null, 'still running');
  bus.emit('job.changed', { jobId: job.id, mac: MAC, state: 'ok' });
  for (let i = 0; i < 50 && (await content()) !== null; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(await content(), null);
});
