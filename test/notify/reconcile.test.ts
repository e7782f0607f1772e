import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MAC, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { RECONCILE_MARGIN_MS } from '../../src/notify/reconcile.js';
import { movableClock, startReceiver } from './listeners.js';

const MAC_2 = 'dc:a6:32:00:00:02';
const iso = (ms: number) => new Date(ms).toISOString();
const deliveriesOf = async (server: TestServer, hookId: number) => (await server.admin('GET', `/api/webhooks/${hookId}/deliveries`)).body.deliveries as any[];

/**
 * What a crash between a job's change and its outbox rows leaves: the job row changed, nothing
 * told on the bus, so no outbox row. Written straight into the database, as the job store would.
 */
async function changeJobBehindNotify(server: TestServer, jobId: number, state: 'cancelled' | 'ok', now: number) {
  const { db } = server.server.services.database;
  const started = state === 'ok' ? { started_at: now } : {};
  const changed = await db.updateTable('jobs').set({ state, ...started, ended_at: now }).where('id', '=', jobId).executeTakeFirst();
  assert.equal(Number(changed.numUpdatedRows), 1);
}

/** Restarts the server and waits for the first delivery pass after it. */
async function restart(server: TestServer) {
  await server.restart();
  await server.server.services.notify.deliverDue();
}

test('a job change whose outbox row a crash kept out is queued at the next start and delivered once; delivered events are not sent again', async (t) => {
  const clock = movableClock();
  const server = await startTestServer(t, {}, { clock });
  const receiver = await startReceiver(t);
  const { id } = (await server.admin('POST', '/api/webhooks', { url: receiver.url })).body;
  await registerDevice(server);
  const job = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  await waitFor('job.queued delivered', () => receiver.accepted().length === 1);

  clock.advance(1_000);
  const endedAt = clock.now();
  await changeJobBehindNotify(server, job.id, 'cancelled', endedAt);
  clock.advance(1_000);
  await server.server.services.notify.deliverDue();
  assert.equal((await deliveriesOf(server, id)).length, 1, 'the change made no outbox row (the crash window)');

  await restart(server);
  const accepted = receiver.accepted();
  assert.deepEqual(accepted.map((r) => [r.json.event, r.json.job.id]), [['job.queued', job.id], ['job.cancelled', job.id]], 'the missing job.cancelled, once; job.queued not again');
  const late = accepted[1]!.json;
  assert.equal(late.occurred_at, iso(endedAt), "occurred_at is the job's own ended_at");
  assert.equal(late.recovered_at, iso(clock.now()), 'recovered_at says when the job in it was read');
  assert.deepEqual([late.job.state, late.job.ended_at], ['cancelled', iso(endedAt)]);
  assert.equal(accepted[0]!.json.recovered_at, undefined, 'an event queued as it happened has no recovered_at');
  assert.deepEqual((await deliveriesOf(server, id)).map((d) => [d.event, d.state]), [['job.cancelled', 'delivered'], ['job.queued', 'delivered']]);

  await restart(server);
  assert.equal(receiver.received.length, 2, 'a second start queues nothing again');
  assert.equal((await deliveriesOf(server, id)).length, 2);
});

test("a label missed by a crash is printed at the next start, but only for jobs that ended after labels were on and events after the webhook was made", async (t) => {
  const clock = movableClock();
  const server = await startTestServer(t, {}, { clock });
  const receiver = await startReceiver(t);
  const spool = tempDir(t);
  await registerDevice(server);
  await registerDevice(server, MAC_2);
  const before = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  await changeJobBehindNotify(server, before.id, 'ok', clock.now());

  clock.advance(1_000);
  assert.equal((await server.admin('POST', '/api/labels', { template: '^XA^FDjob {{job_id}}^FS^XZ', output: spool, backups: true })).status, 200);
  const { id } = (await server.admin('POST', '/api/webhooks', { url: receiver.url, events: ['job.ok'] })).body;
  const after = (await server.admin('POST', `/api/devices/${MAC_2}/backup`)).body;
  clock.advance(1_000);
  await changeJobBehindNotify(server, after.id, 'ok', clock.now());
  await server.server.services.notify.deliverDue();
  assert.deepEqual([readdirSync(spool).length, receiver.received.length], [0, 0], 'nothing was queued by the changes themselves');

  await restart(server);
  const labels = readdirSync(spool);
  assert.deepEqual(labels.map((name) => readFileSync(join(spool, name), 'utf8')), [`^XA^FDjob ${after.id}^FS^XZ`], 'one label, of the job that ended after labels were on');
  assert.deepEqual(receiver.accepted().map((r) => [r.json.event, r.json.job.id]), [['job.ok', after.id]], 'not the job that ended before the webhook was made');

  await restart(server);
  assert.deepEqual([readdirSync(spool).length, receiver.received.length], [1, 1], 'nothing twice');
  assert.equal((await deliveriesOf(server, id)).length, 1);
});

test('reconciliation looks back only to the newest outbox row less the margin', async (t) => {
  const clock = movableClock();
  const server = await startTestServer(t, {}, { clock });
  const receiver = await startReceiver(t);
  const { id } = (await server.admin('POST', '/api/webhooks', { url: receiver.url, events: ['job.queued', 'job.cancelled'] })).body;
  await registerDevice(server);
  await registerDevice(server, MAC_2);
  const old = (await server.admin('POST', `/api/devices/${MAC}/backup`)).body;
  await changeJobBehindNotify(server, old.id, 'cancelled', clock.now());
  clock.advance(RECONCILE_MARGIN_MS + 1_000);
  const recent = (await server.admin('POST', `/api/devices/${MAC_2}/backup`)).body;

  await restart(server);
  assert.deepEqual((await deliveriesOf(server, id)).map((d) => [d.event, d.job_id]).reverse(), [['job.queued', old.id], ['job.queued', recent.id]],
    'a change older than the newest row by more than the margin is not looked for');
});
