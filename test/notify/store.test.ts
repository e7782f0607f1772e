import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { inTransaction, type StationDatabase } from '../../src/db/database.js';
import { createNotifyStore, type NewDelivery } from '../../src/notify/store.js';
import { testOnBothDatabases } from '../helpers/databases.js';

// The notify store's queries on both databases (issue 15): webhooks, the outbox, label settings.

const event = (webhookId: number | null, jobId: number, name = 'job.ok'): NewDelivery => ({ webhookId, event: name, jobId, target: webhookId === null ? '/spool' : null, body: `{"job":${jobId}}` });

testOnBothDatabases('webhooks are added with their row, listed in order and removed with their deliveries', async (_t, { db }) => {
  const store = createNotifyStore(db);
  const first = await store.addWebhook('https://a.example.test/x', 'secret-one', ['job.ok', 'job.failed'], 1000);
  assert.deepEqual(first, { id: first.id, url: 'https://a.example.test/x', secret: 'secret-one', events: '["job.ok","job.failed"]', created_at: 1000 });
  const second = await store.addWebhook('https://b.example.test/y', 'secret-two', ['job.queued'], 2000);
  assert.ok(second.id > first.id);
  assert.deepEqual(await store.webhook(second.id), second);
  assert.equal(await store.webhook(second.id + 1), undefined);
  assert.deepEqual((await store.webhooks()).map((hook) => hook.url), ['https://a.example.test/x', 'https://b.example.test/y']);

  const delivery = (await store.enqueue(event(first.id, 7), 3000))!;
  await store.enqueue(event(second.id, 7), 3000);
  assert.equal(await store.removeWebhook(first.id), true);
  assert.equal(await store.removeWebhook(first.id), false, 'a second removal finds nothing');
  assert.equal(await store.delivery(delivery), undefined, 'its deliveries went with it');
  assert.deepEqual([...(await store.queuedFor(7, 'job.ok'))], [second.id], "the other webhook's stayed");
  await assert.rejects(store.enqueue(event(first.id, 8), 3000), 'a delivery of a webhook that is gone is refused (foreign key)');
});

testOnBothDatabases('a job event is queued once per webhook and once for labels; reprints repeat; racing writers make one row', async (_t, { db }) => {
  const store = createNotifyStore(db);
  const hook = await store.addWebhook('https://a.example.test/x', 's', ['job.ok'], 1000);
  const other = await store.addWebhook('https://b.example.test/x', 's', ['job.ok'], 1000);
  const id = await store.enqueue(event(hook.id, 5), 2000);
  assert.equal(typeof id, 'number');
  assert.equal(await store.enqueue(event(hook.id, 5), 2500), undefined, 'the same webhook, job and event: nothing');
  assert.equal(typeof (await store.enqueue(event(other.id, 5), 2000)), 'number', 'another webhook has its own');
  assert.equal(typeof (await store.enqueue(event(hook.id, 5, 'job.started'), 2000)), 'number', 'another event has its own');
  assert.equal(typeof (await store.enqueue(event(null, 5, 'label'), 2000)), 'number');
  assert.equal(await store.enqueue(event(null, 5, 'label'), 2000), undefined, 'a job prints one label by itself');
  const reprints = [await store.enqueue(event(null, 5, 'label.reprint'), 2000), await store.enqueue(event(null, 5, 'label.reprint'), 2000)];
  assert.ok(reprints.every((reprint) => typeof reprint === 'number') && reprints[0] !== reprints[1], 'reprints may repeat');
  assert.deepEqual(await store.queuedFor(5, 'job.ok'), new Set([hook.id, other.id]));
  assert.deepEqual(await store.queuedFor(5, 'label'), new Set([null]));
  assert.deepEqual(await store.queuedFor(6, 'job.ok'), new Set());

  const raced = await Promise.all([store.enqueue(event(hook.id, 9), 2000), store.enqueue(event(hook.id, 9), 2000)]);
  assert.equal(raced.filter((result) => result !== undefined).length, 1, 'two writers at once: one row');

  const row = (await store.delivery(id!))!;
  assert.deepEqual(row, {
    id, webhook_id: hook.id, event: 'job.ok', job_id: 5, target: null, body: '{"job":5}', state: 'pending', attempts: 0,
    next_attempt_at: 2000, last_attempt_at: null, last_status: null, last_error: null, delivered_at: null, created_at: 2000,
  });
  await assert.rejects(db.updateTable('outbox').set({ state: 'sent' }).where('id', '=', id!).execute(), 'the state is one of three (CHECK)');
});

testOnBothDatabases('heads are the oldest pending delivery of each queue; listings are newest first', async (_t, { db }) => {
  const store = createNotifyStore(db);
  assert.equal(await store.newestQueuedAt(), undefined);
  const a = await store.addWebhook('https://a.example.test/x', 's', ['job.ok'], 1000);
  const b = await store.addWebhook('https://b.example.test/x', 's', ['job.ok'], 1000);
  const a1 = (await store.enqueue(event(a.id, 1), 2000))!;
  const b1 = (await store.enqueue(event(b.id, 1), 2100))!;
  const a2 = (await store.enqueue(event(a.id, 2), 2200))!;
  const l1 = (await store.enqueue(event(null, 1, 'label'), 2300))!;
  const l2 = (await store.enqueue(event(null, 2, 'label'), 2400))!;
  assert.deepEqual((await store.heads()).map((row) => row.id), [a1, b1, l1]);
  assert.equal(await store.markDelivered(a1, 3000, 204), true);
  assert.equal(await store.markAttemptFailed(l1, { now: 3000, status: null, error: 'no printer', next: 9000, giveUp: true }), true);
  assert.deepEqual((await store.heads()).map((row) => row.id), [b1, a2, l2], 'the next of each queue once its head is done');

  assert.deepEqual((await store.deliveriesOf(a.id, 10)).map((row) => row.id), [a2, a1]);
  assert.deepEqual((await store.deliveriesOf(a.id, 1)).map((row) => row.id), [a2]);
  assert.deepEqual((await store.labelDeliveries(10)).map((row) => row.id), [l2, l1]);
  assert.deepEqual((await store.webhookDeliveries(2)).map((row) => row.id), [a2, b1]);
  assert.equal(await store.newestQueuedAt(), 2400);
});

testOnBothDatabases('attempts are recorded only on pending deliveries; stats count them; requeue starts a given-up one over', async (_t, { db }) => {
  const store = createNotifyStore(db);
  const hook = await store.addWebhook('https://a.example.test/x', 's', ['job.ok'], 1000);
  assert.deepEqual(await store.stats(hook.id), { pending: 0, failed: 0, last_delivered_at: null, last_attempt_at: null, last_error: null });
  const first = (await store.enqueue(event(hook.id, 1), 2000))!;
  const second = (await store.enqueue(event(hook.id, 2), 2000))!;
  await store.enqueue(event(hook.id, 3), 2000);

  assert.equal(await store.markAttemptFailed(first, { now: 3000, status: 500, error: 'HTTP 500', next: 8000, giveUp: false }), true);
  let row = (await store.delivery(first))!;
  assert.deepEqual([row.state, row.attempts, row.last_attempt_at, row.last_status, row.last_error, row.next_attempt_at], ['pending', 1, 3000, 500, 'HTTP 500', 8000]);
  assert.equal(await store.markDelivered(first, 8000, 200), true);
  row = (await store.delivery(first))!;
  assert.deepEqual([row.state, row.attempts, row.delivered_at, row.last_status, row.last_error], ['delivered', 2, 8000, 200, null]);
  assert.equal(await store.markDelivered(first, 9000, 200), false, 'delivered once');
  assert.equal(await store.markAttemptFailed(first, { now: 9000, status: null, error: 'x', next: 0, giveUp: false }), false, 'a delivered row takes no attempt');

  assert.equal(await store.markAttemptFailed(second, { now: 9500, status: null, error: 'no answer', next: 0, giveUp: true }), true);
  assert.equal((await store.delivery(second))!.state, 'failed');
  assert.deepEqual(await store.stats(hook.id), { pending: 1, failed: 1, last_delivered_at: 8000, last_attempt_at: 9500, last_error: 'no answer' });

  assert.equal(await store.requeue(second, 10_000), true);
  row = (await store.delivery(second))!;
  assert.deepEqual([row.state, row.attempts, row.next_attempt_at], ['pending', 0, 10_000]);
  assert.equal(await store.requeue(second, 11_000), false, 'a pending delivery is not requeued');
  assert.equal(await store.requeue(first, 11_000), true, 'a delivered one may be sent again');
  assert.equal(await store.requeue(999_999, 11_000), false);
});

testOnBothDatabases('a delivery is claimed by moving its due time: of two claims with the same due time one wins', async (_t, { db }) => {
  const store = createNotifyStore(db);
  const id = (await store.enqueue(event(null, 1, 'label'), 2000))!;
  const claims = await Promise.all([store.reschedule(id, 2000, 30_000), store.reschedule(id, 2000, 31_000)]);
  assert.deepEqual(claims.sort(), [false, true]);
  const until = (await store.delivery(id))!.next_attempt_at;
  assert.equal(await store.reschedule(id, until, 2000), true, 'released by its claimant');
  assert.equal((await store.delivery(id))!.next_attempt_at, 2000);
  await store.markDelivered(id, 3000, null);
  assert.equal(await store.reschedule(id, 2000, 40_000), false, 'a delivered row is not claimed');
});

testOnBothDatabases('label settings: off at first, saved whole; a locked read waits for the transaction that holds it', async (_t, { db }) => {
  const store = createNotifyStore(db);
  assert.deepEqual(await store.labelSettings(), { enabled: 0, template: null, output: null, backups: 0, enabled_at: null });
  const on = { enabled: 1, template: '^XA^XZ', output: '/spool', backups: 1, enabled_at: 5000 };
  await store.saveLabelSettings(on);
  assert.deepEqual(await store.labelSettings(), on);

  // PostgreSQL: the row lock makes the second wait. SQLite: the one connection runs one
  // transaction at a time, so it waits for the first there in any case.
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const first = inTransaction(db, async (tx) => {
    const locked = createNotifyStore(tx);
    assert.deepEqual(await locked.labelSettingsForUpdate(), on);
    await held;
    await locked.saveLabelSettings({ ...on, template: '^XA^FDfirst^FS^XZ' });
  });
  await sleep(50);
  const second = inTransaction(db, async (tx) => (await createNotifyStore(tx).labelSettingsForUpdate()).template);
  let secondRead = false;
  void second.then(() => (secondRead = true));
  await sleep(100);
  const waited = !secondRead;
  // Released before asserting: a failed assertion must not leave the transaction open.
  release();
  await first;
  assert.ok(waited, 'the second read waits while the first transaction holds the row');
  assert.equal(await second, '^XA^FDfirst^FS^XZ', "and then sees the first one's write");
});

testOnBothDatabases('a transaction that fails leaves no outbox row behind', async (_t, database: StationDatabase) => {
  const store = createNotifyStore(database.db);
  await assert.rejects(
    inTransaction(database.db, async (tx) => {
      await createNotifyStore(tx).enqueue(event(null, 1, 'label'), 2000);
      throw new Error('the job change failed');
    }),
    /the job change failed/,
  );
  assert.deepEqual(await store.queuedFor(1, 'label'), new Set());
});
