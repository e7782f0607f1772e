import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import pino from 'pino';
import { inTransaction, postgresDatabase, type Queries, type StationDatabase } from '../../src/db/database.js';
import { isUniqueViolation } from '../../src/db/errors.js';
import { createFirstBootService } from '../../src/first-boot/service.js';
import { createFirstBootStore, type BootReport } from '../../src/first-boot/store.js';
import type { JobRow } from '../../src/jobs/store.js';
import { createEventBus } from '../../src/shared/events.js';
import { testOnBothDatabases } from '../helpers/databases.js';
import { testDatabaseUrl } from '../helpers/postgres.js';

// The first-boot store on both databases (issue 15): every change of a job's boot_state is one
// conditional update, so two callers (two requests, two stations) never both win.

const A = 'dc:a6:32:00:00:0a';
const B = 'dc:a6:32:00:00:0b';
const REPORT: BootReport = { serial: '10000000abcdef01', mac: A, os_release: 'Debian GNU/Linux 13 (trixie)', kernel: '6.12.0-rpi-v8' };

type JobFields = { state?: string; boot_state?: string; boot_deadline_at?: number; boot_confirm?: number };

async function jobFor(db: Queries, mac: string, fields: JobFields = {}): Promise<number> {
  await db.insertInto('devices').values({ mac, first_seen_at: 1, last_seen_at: 1 }).onConflict((oc) => oc.column('mac').doNothing()).execute();
  const { state = 'ok', ...boot } = fields;
  const job = await db.insertInto('jobs').values({ device_mac: mac, kind: 'deploy', state, token: 't', created_at: 1, ...boot }).returning('id').executeTakeFirstOrThrow();
  return job.id;
}

const jobRow = (db: Queries, id: number) => db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();

const awaiting = (deadline = 1000): JobFields => ({ boot_state: 'awaiting', boot_deadline_at: deadline, boot_confirm: 1 });

testOnBothDatabases('arming marks a queued deploy only; its hash finds it; a hash arms one job', async (_t, database) => {
  const store = createFirstBootStore(database.db);
  const queued = await jobFor(database.db, A, { state: 'queued' });
  const running = await jobFor(database.db, B, { state: 'running' });
  assert.equal(await store.arm(queued, 'h1', 'cmdline-boot', 120), true);
  const armed = (await jobRow(database.db, queued))!;
  assert.deepEqual([armed.boot_confirm, armed.boot_token_hash, armed.boot_hook, armed.boot_confirm_timeout_s, armed.boot_state], [1, 'h1', 'cmdline-boot', 120, null]);
  assert.equal(await store.arm(running, 'h2', 'cmdline', 600), false, 'a running job is past arming');
  assert.equal((await jobRow(database.db, running))!.boot_token_hash, null);
  assert.equal(await store.arm(9999, 'h3', 'cmdline', 600), false);

  assert.equal((await store.byTokenHash('h1'))!.id, queued);
  assert.equal(await store.byTokenHash('h2'), undefined);
  assert.equal(await jobRow(database.db, 9999), undefined);
  const another = await jobFor(database.db, 'dc:a6:32:00:00:0c', { state: 'queued' });
  await assert.rejects(store.arm(another, 'h1', 'cmdline', 600), (error) => isUniqueViolation(error));
});

testOnBothDatabases('confirming takes an awaiting job once and records the report; a settled one is refused', async (_t, database) => {
  const store = createFirstBootStore(database.db);
  const job = await jobFor(database.db, A, awaiting());
  const notAwaited = await jobFor(database.db, B);
  const confirmed = (await store.confirm(job, REPORT, 500))!;
  assert.deepEqual([confirmed.id, confirmed.boot_state, confirmed.boot_confirmed_at], [job, 'confirmed', 500]);
  assert.deepEqual(JSON.parse(confirmed.boot_report!), REPORT);
  assert.equal(await store.confirm(job, REPORT, 600), undefined, 'a second call loses');
  assert.equal((await jobRow(database.db, job))!.boot_confirmed_at, 500, 'and changes nothing');
  assert.equal(await store.confirm(notAwaited, REPORT, 600), undefined);
  assert.equal(await store.expire(job), undefined, 'a confirmed boot does not expire');
});

testOnBothDatabases('jobs due are those awaiting past their deadline; expiring takes each once', async (_t, database) => {
  const store = createFirstBootStore(database.db);
  const late = await jobFor(database.db, A, awaiting(1000));
  const exact = await jobFor(database.db, B, awaiting(2000));
  await jobFor(database.db, 'dc:a6:32:00:00:0c', awaiting(2001));
  await jobFor(database.db, 'dc:a6:32:00:00:0d', { boot_state: 'superseded', boot_deadline_at: 10 });
  assert.deepEqual((await store.due(2000)).map((job) => job.id), [late, exact]);
  const expired = (await store.expire(late))!;
  assert.deepEqual([expired.id, expired.boot_state], [late, 'not_confirmed']);
  assert.equal(await store.expire(late), undefined, 'once');
  assert.equal(await store.confirm(late, REPORT, 3000), undefined, 'a call after the expiry confirms nothing');
  assert.deepEqual((await store.due(2000)).map((job) => job.id), [exact]);
});

testOnBothDatabases("a newer job supersedes the device's older awaiting jobs only", async (_t, database) => {
  const store = createFirstBootStore(database.db);
  const first = await jobFor(database.db, A, awaiting());
  const second = await jobFor(database.db, A, awaiting());
  const confirmed = await jobFor(database.db, A, { boot_state: 'confirmed' });
  const otherDevice = await jobFor(database.db, B, awaiting());
  const newer = await jobFor(database.db, A, { state: 'queued' });
  const later = await jobFor(database.db, A, awaiting());
  assert.deepEqual(await store.supersede(A, newer), [first, second]);
  assert.deepEqual(await store.supersede(A, newer), [], 'already done');
  const states = await Promise.all([first, confirmed, otherDevice, later].map(async (id) => (await jobRow(database.db, id))!.boot_state));
  assert.deepEqual(states, ['superseded', 'confirmed', 'awaiting', 'awaiting']);
});

const serviceOn = (station: StationDatabase, onSettled?: (job: JobRow) => Promise<void>) =>
  createFirstBootService({
    store: createFirstBootStore(station.db),
    clock: { now: () => 500 },
    bus: createEventBus(),
    log: pino({ level: 'silent' }),
    publicUrl: undefined,
    onSettled,
  });

testOnBothDatabases("arming in the transaction that creates the job: armed with it, or not at all", async (_t, database) => {
  const service = serviceOn(database);
  const { token } = service.newToken({ server_url: null });
  const armedIn = (fail: boolean) =>
    inTransaction(database.db, async (tx) => {
      const job = await jobFor(tx, fail ? A : B, { state: 'queued' });
      await service.arm(job, token, 'none', 90, tx);
      if (fail) throw new Error('the order failed');
      return job;
    });
  await assert.rejects(armedIn(true), /the order failed/);
  assert.equal(await createFirstBootStore(database.db).byTokenHash(createHash('sha256').update(token).digest('hex')), undefined);
  const job = await armedIn(false);
  const armed = (await jobRow(database.db, job))!;
  assert.deepEqual([armed.boot_confirm, armed.boot_hook, armed.boot_confirm_timeout_s], [1, 'none', 90]);
});

test('two stations confirming the same first boot at once: one confirms, the other is refused', async (t) => {
  const url = await testDatabaseUrl(t);
  const stations: StationDatabase[] = [];
  t.after(() => Promise.all(stations.map((station) => station.close())));
  for (let i = 0; i < 2; i++) stations.push(await postgresDatabase(url));
  const settled: JobRow[] = [];
  const services = stations.map((station) => serviceOn(station, async (job) => void settled.push(job)));
  const jobs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const mac = `dc:a6:32:00:01:0${i}`;
    const job = await jobFor(stations[0]!.db, mac, { state: 'queued' });
    const { token } = services[0]!.newToken({ server_url: null });
    await services[0]!.arm(job, token, 'cmdline', 600);
    await stations[0]!.db.updateTable('jobs').set({ state: 'ok', boot_state: 'awaiting', boot_deadline_at: 1000 }).where('id', '=', job).execute();
    // Each station gets the same call twice at once (a hook retrying, a copied token).
    const outcomes = await Promise.allSettled(services.flatMap((service) => [service.confirm({ token, mac }), service.confirm({ token, mac })]));
    assert.equal(outcomes.filter((outcome) => outcome.status === 'fulfilled').length, 1, `job ${job}: one confirmation of four calls`);
    for (const outcome of outcomes) if (outcome.status === 'rejected') assert.equal((outcome.reason as { statusCode?: number }).statusCode, 409);
    jobs.push(job);
  }
  assert.deepEqual(settled.map((row) => [row.id, row.boot_state]), jobs.map((job) => [job, 'confirmed']), 'the rule engine hears of each once');
});
