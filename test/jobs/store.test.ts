import assert from 'node:assert/strict';
import { postgresDatabase, type StationDatabase } from '../../src/db/database.js';
import { isUniqueViolation } from '../../src/db/errors.js';
import { closedPhaseMs, createJobStore, type NewJob } from '../../src/jobs/store.js';
import { testOnBothDatabases } from '../helpers/databases.js';
import { testDatabaseUrl } from '../helpers/postgres.js';
import { test } from 'node:test';

// The job store on both databases (issue 15): the state machine's writes are conditional, so
// a job is handed out and ended once, whoever races for it.

const MAC = 'dc:a6:32:00:00:01';
const order = (mac = MAC): NewJob => ({ mac, kind: 'backup', token: 'secret', imageId: null, bytesTotal: 1000, afterSuccess: 'emmc', fullMatch: 0 });

async function withDevice({ db }: StationDatabase, mac = MAC) {
  await db.insertInto('devices').values({ mac, first_seen_at: 1, last_seen_at: 1 }).execute();
}

testOnBothDatabases('a job is created queued; a second active job for the device is refused by the unique index', async (_t, database) => {
  await withDevice(database);
  const store = createJobStore(database.db);
  const job = await store.create({ ...order(), rule: { id: 7, name: 'line' } }, 1000);
  assert.equal(job.state, 'queued');
  assert.equal(job.ordered_by, 'rule');
  assert.equal(job.rule_name, 'line');
  assert.equal(job.finish, 'reboot', 'defaults come back from the database');
  await assert.rejects(store.create(order(), 1001), (error) => isUniqueViolation(error));
  assert.equal((await store.activeFor(MAC))?.id, job.id);
  assert.equal((await store.latestFor(MAC))?.id, job.id);
});

testOnBothDatabases('queued → running once; progress, phases and the stall clock; finish once', async (_t, database) => {
  await withDevice(database);
  const store = createJobStore(database.db);
  const { id } = await store.create(order(), 1000);
  assert.equal(await store.saveFinish(id, 'poweroff'), true, 'finish is set while queued');
  assert.equal(await store.markStarted(id, 2000, { ip: '10.20.50.101', reports: true }), true);
  assert.equal(await store.markStarted(id, 2001, { ip: '10.20.50.102', reports: true }), false, 'handed out once');
  assert.equal(await store.saveFinish(id, 'wait'), false, 'not once it runs');
  let job = (await store.get(id))!;
  assert.deepEqual([job.state, job.device_ip, job.client_reports, job.finish], ['running', '10.20.50.101', 1, 'poweroff']);

  assert.equal(await store.saveProgress(job, 100, 'writing', 3000), true);
  job = (await store.get(id))!;
  assert.deepEqual([job.bytes_done, job.phase, job.phase_started_at, job.last_activity_at], [100, 'writing', 3000, 3000]);
  assert.equal(await store.saveProgress(job, 100, 'writing', 4000), true);
  job = (await store.get(id))!;
  assert.equal(job.last_activity_at, 3000, 'a report that moves nothing is no sign of life');
  assert.equal(await store.saveProgress(job, 600, 'verifying', 5500), true);
  job = (await store.get(id))!;
  assert.deepEqual(JSON.parse(job.phase_ms!), { writing: 2500 });
  assert.equal(await store.touch(id, 5600), true);
  await store.saveDetail(id, { written: 600, verified: 200, rate: 50, discarded: true });
  await store.saveNote(id, 'attempt 1 was cut', null);
  assert.equal(await store.markImageSent(id, 5700), true);
  assert.equal(await store.markImageSent(id, 5800), false, 'the first time only');
  job = (await store.get(id))!;
  assert.deepEqual([job.bytes_written, job.bytes_verified, job.device_rate, job.discarded, job.error, job.image_sent_at], [600, 200, 50, 1, 'attempt 1 was cut', 5700]);

  assert.equal(await store.finish(id, { state: 'ok', sha256: 'a'.repeat(64), verified: 'server_sha256' }, 6000), true);
  assert.equal(await store.finish(id, { state: 'failed', error: 'late' }, 6100), false, 'ended once');
  job = (await store.get(id))!;
  assert.deepEqual([job.state, job.error, job.sha256, job.phase, job.phase_started_at, job.ended_at], ['ok', null, 'a'.repeat(64), null, null, 6000]);
  assert.deepEqual(JSON.parse(job.phase_ms!), { writing: 2500, verifying: 500 });
  assert.equal(job.boot_state, null, 'no first boot was asked for');
  assert.equal(await store.saveProgress(job, 700, null, 6200), false, 'an ended job takes no progress');
  assert.equal(await store.touch(id, 6300), false);
});

testOnBothDatabases('an ok deploy that asked for first-boot confirmation awaits it, with its deadline', async (_t, database) => {
  await withDevice(database);
  const store = createJobStore(database.db);
  const { id } = await store.create({ ...order(), kind: 'deploy' }, 1000);
  await database.db.updateTable('jobs').set({ boot_confirm: 1, boot_confirm_timeout_s: 60 }).where('id', '=', id).execute();
  await store.markStarted(id, 2000, { ip: null, reports: true });
  await store.finish(id, { state: 'unconfirmed', verified: 'sent' }, 3000);
  const job = (await store.get(id))!;
  assert.deepEqual([job.boot_state, job.boot_deadline_at], ['awaiting', 63_000]);
});

testOnBothDatabases('lists newest first with filters, a cursor and totals; jobs changed since; an image in use', async (_t, database) => {
  const store = createJobStore(database.db);
  const ids: number[] = [];
  for (const [n, mac] of ['dc:a6:32:00:00:01', 'dc:a6:32:00:00:02', 'dc:a6:32:00:00:03'].entries()) {
    await withDevice(database, mac);
    const job = await store.create(order(mac), 1000 + n);
    if (n < 2) await store.finish(job.id, { state: 'cancelled' }, 2000 + n);
    ids.push(job.id);
  }
  const first = await store.list({ limit: 2 });
  assert.deepEqual(first.rows.map((job) => job.id), [ids[2], ids[1]]);
  assert.equal(first.total, 3);
  const rest = await store.list({ limit: 2, cursor: first.next! });
  assert.deepEqual([rest.rows.map((job) => job.id), rest.next], [[ids[0]], null]);
  const cancelled = await store.list({ state: 'cancelled', mac: 'dc:a6:32:00:00:02' });
  assert.deepEqual([cancelled.rows.map((job) => job.id), cancelled.total], [[ids[1]], 1]);
  assert.deepEqual((await store.changedSince(2001)).map((job) => job.id), [ids[1]], 'by the time of the last change');
  assert.deepEqual((await store.running()).length, 0);
  const second = await store.create(order('dc:a6:32:00:00:01'), 1500);
  assert.deepEqual(
    (await store.latestForEach(['dc:a6:32:00:00:01', 'dc:a6:32:00:00:02', 'dc:a6:32:99:99:99'])).map((job) => job.id).sort((x, y) => x - y),
    [ids[1]!, second.id].sort((x, y) => x - y),
    "each device's latest job, one query; a device without jobs has none",
  );
  assert.deepEqual(await store.latestForEach([]), []);

  await database.db.insertInto('images').values({ id: 5, name: 'os', file: 'os.img', size: 1, sha256: 'b'.repeat(64), source: 'upload', created_at: 1 }).execute();
  await database.db.updateTable('jobs').set({ image_id: 5 }).where('id', '=', ids[2]!).execute();
  assert.equal(await store.imageInUse(5), true);
  await store.finish(ids[2]!, { state: 'cancelled' }, 3000);
  assert.equal(await store.imageInUse(5), false);
});

test('closing a phase adds the time since it started to its sum; an unreadable sum starts again; odd names are not counted', () => {
  assert.equal(closedPhaseMs({ phase_ms: '{"writing":100}', phase: 'writing', phase_started_at: 1000 }, 1500), '{"writing":600}');
  assert.equal(closedPhaseMs({ phase_ms: null, phase: 'sent', phase_started_at: 1000 }, 900), '{"sent":0}', 'never negative');
  assert.equal(closedPhaseMs({ phase_ms: '{"a":1}', phase: 'odd"phase', phase_started_at: 0 }, 5), '{"a":1}', 'only plain words are counted');
  assert.equal(closedPhaseMs({ phase_ms: '{"a":1}', phase: null, phase_started_at: null }, 5), '{"a":1}');
  assert.equal(closedPhaseMs({ phase_ms: 'not json', phase: 'b', phase_started_at: 0 }, 5), '{"b":5}');
});

test('two stations racing to hand out one job on one PostgreSQL: exactly one wins', async (t) => {
  const url = await testDatabaseUrl(t);
  const stations = await Promise.all([postgresDatabase(url), postgresDatabase(url), postgresDatabase(url)]);
  t.after(() => Promise.all(stations.map((station) => station.close())));
  await withDevice(stations[0]!);
  for (let round = 0; round < 20; round++) {
    const { id } = await createJobStore(stations[0]!.db).create(order(), round);
    const wins = await Promise.all(stations.map((station, n) => createJobStore(station.db).markStarted(id, round, { ip: `10.20.50.${n + 1}`, reports: true })));
    assert.equal(wins.filter(Boolean).length, 1, `round ${round}: ${wins}`);
    const ends = await Promise.all(stations.map((station) => createJobStore(station.db).finish(id, { state: 'cancelled' }, round)));
    assert.equal(ends.filter(Boolean).length, 1, `round ${round}: ended once`);
  }
});
