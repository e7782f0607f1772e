import assert from 'node:assert/strict';
import pino from 'pino';
import { inTransaction, type Queries, type StationDatabase } from '../../src/db/database.js';
import type { DeviceRow } from '../../src/devices/store.js';
import type { JobService } from '../../src/jobs/service.js';
import { createJobStore, type JobRow } from '../../src/jobs/store.js';
import { toJobView } from '../../src/jobs/view.js';
import { createNotifyService } from '../../src/notify/service.js';
import { createNotifyStore } from '../../src/notify/store.js';
import { createDeliveryWorker } from '../../src/notify/worker.js';
import { createEventBus } from '../../src/shared/events.js';
import { testOnBothDatabases } from '../helpers/databases.js';
import { movableClock, startReceiver } from './listeners.js';

// The outbox's guarantees on both databases (issue 15): a job change and its notifications in
// one transaction, and one delivery sent once by stations that share the database.

const log = pino({ level: 'silent' });

async function runningJob(db: Queries, mac: string, now: number): Promise<JobRow> {
  await db.insertInto('devices').values({ mac, serial: '10000000c0ffee01', first_seen_at: now, last_seen_at: now }).execute();
  const job = await db.insertInto('jobs').values({ device_mac: mac, kind: 'backup', state: 'running', token: 't', created_at: now, started_at: now }).returningAll().executeTakeFirstOrThrow();
  return job as unknown as JobRow;
}

/** What a job store does in the transaction of a job change: the change, then its notifications. */
async function endJob(database: StationDatabase, notify: ReturnType<typeof createNotifyService>, job: JobRow, now: number, failAfter = false) {
  await inTransaction(database.db, async (tx) => {
    const ended = (await tx.updateTable('jobs').set({ state: 'ok', ended_at: now }).where('id', '=', job.id).returningAll().executeTakeFirstOrThrow()) as unknown as JobRow;
    const device = (await tx.selectFrom('devices').selectAll().where('mac', '=', job.device_mac).executeTakeFirst()) as DeviceRow | undefined;
    await notify.recordJobChange(tx, { state: 'ok', job: ended, view: toJobView(ended, undefined, now, null), device });
    if (failAfter) throw new Error('the job change failed after its notifications');
  });
}

testOnBothDatabases("a job change's webhook delivery and label are written with the transaction that changes the job, or not at all", async (t, database) => {
  const clock = movableClock();
  // The transaction path reads nothing through the job service: it is handed the job.
  const notify = createNotifyService({ db: database.db, bus: createEventBus(), jobs: {} as JobService, devices: {} as never, clock, log });
  t.after(() => notify.stop());
  const store = createNotifyStore(database.db);
  const hook = await notify.webhooks.add({ url: 'http://127.0.0.1:9/hook', events: ['job.ok'] });
  await notify.labels.save({ template: '^XA^FD{{serial}} {{job_id}}^FS^XZ', output: '/tmp', backups: true });

  const failing = await runningJob(database.db, 'dc:a6:32:00:00:01', clock.now());
  await assert.rejects(endJob(database, notify, failing, clock.now(), true), /failed after its notifications/);
  assert.equal((await database.db.selectFrom('jobs').select('state').where('id', '=', failing.id).executeTakeFirstOrThrow()).state, 'running');
  assert.deepEqual([await store.queuedFor(failing.id, 'job.ok'), await store.queuedFor(failing.id, 'label')], [new Set(), new Set()], 'no notification of a change that did not happen');

  const job = await runningJob(database.db, 'dc:a6:32:00:00:02', clock.now());
  await endJob(database, notify, job, clock.now());
  assert.deepEqual(await store.queuedFor(job.id, 'job.ok'), new Set([hook.id]));
  const [label] = await store.labelDeliveries(10);
  assert.deepEqual([label!.job_id, label!.event, label!.body], [job.id, 'label', `^XA^FD10000000c0ffee01 ${job.id}^FS^XZ`]);
  const [delivery] = await store.deliveriesOf(hook.id, 10);
  assert.deepEqual(JSON.parse(delivery!.body).job.state, 'ok', 'the payload is the job as that transaction left it');

  await endJob(database, notify, job, clock.now());
  assert.equal((await store.webhookDeliveries(10)).length + (await store.labelDeliveries(10)).length, 2, 'the same change again writes nothing twice');
});

testOnBothDatabases('two stations sending the same outbox send each delivery once', async (t, database) => {
  const clock = movableClock();
  const receiver = await startReceiver(t);
  const store = createNotifyStore(database.db);
  const hook = await store.addWebhook(receiver.url, 'secret-of-the-test', ['job.ok'], clock.now());
  for (const jobId of [1, 2, 3]) await store.enqueue({ webhookId: hook.id, event: 'job.ok', jobId, target: null, body: `{"job":${jobId}}` }, clock.now());
  const stations = [createDeliveryWorker({ store, clock, log }), createDeliveryWorker({ store: createNotifyStore(database.db), clock, log })];
  for (const station of stations) t.after(() => station.stop());

  await Promise.all([...stations.map((station) => station.deliverDue()), ...stations.map((station) => station.deliverDue())]);
  await Promise.all(stations.map((station) => station.deliverDue()));
  assert.deepEqual(receiver.received.map((r) => JSON.parse(r.body).job), [1, 2, 3], 'each once, in order');
  assert.deepEqual((await store.deliveriesOf(hook.id, 10)).map((row) => [row.state, row.attempts]), [['delivered', 1], ['delivered', 1], ['delivered', 1]]);
});

testOnBothDatabases('a webhook payload shows the job as the change that announced it left it, though a later change was written first', async (t, database) => {
  const clock = movableClock();
  // The job service's own reads (the listener reads a job only when a change comes without its row).
  const jobRows = createJobStore(database.db);
  const jobs = { get: (id: number) => jobRows.get(id), view: async (job: JobRow) => toJobView(job, undefined, clock.now(), null) } as unknown as JobService;
  const bus = createEventBus();
  const notify = createNotifyService({ db: database.db, bus, jobs, devices: { get: async () => undefined } as never, clock, log });
  t.after(() => notify.stop());
  const hook = await notify.webhooks.add({ url: 'http://127.0.0.1:9/hook', events: ['job.started', 'job.ok'] });

  const started = await runningJob(database.db, 'dc:a6:32:00:00:03', clock.now());
  // The job ends before the listener of its start ran (a fast device, or another connection).
  await database.db.updateTable('jobs').set({ state: 'ok', ended_at: clock.now() }).where('id', '=', started.id).execute();
  bus.emit('job.changed', { jobId: started.id, mac: started.device_mac, state: 'running', snapshot: started });
  bus.emit('job.changed', { jobId: started.id, mac: started.device_mac, state: 'ok' });
  await notify.deliverDue();

  const bodies = (await createNotifyStore(database.db).deliveriesOf(hook.id, 10)).map((row) => JSON.parse(row.body) as { event: string; job: { state: string } });
  assert.deepEqual(
    bodies.map((body) => [body.event, body.job.state]).sort(),
    [['job.ok', 'ok'], ['job.started', 'running']],
    'job.started carries the running job it announced; job.ok, sent without a row, the job read then',
  );
});
