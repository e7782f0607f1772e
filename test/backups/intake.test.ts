import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import type { TestContext } from 'node:test';
import pino from 'pino';
import type { BackupJobs } from '../../src/backups/intake.js';
import { createBackupService } from '../../src/backups/service.js';
import { createBackupStore } from '../../src/backups/store.js';
import { createBlockMapStore, type BlockMapStore } from '../../src/blockmap/store.js';
import type { StationDatabase } from '../../src/db/database.js';
import { createJobStore } from '../../src/jobs/store.js';
import { createTransferRegistry } from '../../src/jobs/transfers.js';
import { createEventBus } from '../../src/shared/events.js';
import { testOnBothDatabases } from '../helpers/databases.js';
import { tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

// Backup intake on both databases (issue 15): a backup's row and its job's end commit together
// or not at all, and one job's upload attempts, reports and clean-up never interleave.

const MAC = 'dc:a6:32:00:00:01';
const clock = { now: () => 1_700_000_000_000 };
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

interface Options {
  /** The job's conditional end finds it ended already (cancelled, stalled, on another station). */
  endedMeanwhile?: boolean;
  blockMaps?: (real: BlockMapStore) => BlockMapStore;
}

/** A backup service over the real stores, and a running backup job of `bytesTotal` (null: the device gave no size). */
async function build(t: TestContext, database: StationDatabase, bytesTotal: number | null, options: Options = {}) {
  const { db } = database;
  const dataDir = tempDir(t);
  await db.insertInto('devices').values({ mac: MAC, first_seen_at: 1, last_seen_at: 1 }).execute();
  const jobStore = createJobStore(db);
  const created = await jobStore.create({ mac: MAC, kind: 'backup', token: 't', imageId: null, bytesTotal, afterSuccess: 'emmc', fullMatch: 0 }, clock.now());
  assert.ok(await jobStore.markStarted(created.id, clock.now(), { ip: null, reports: true, station: 'north' }));
  const job = (await jobStore.get(created.id))!;

  const announced: number[] = [];
  // As src/services.ts does: an end's follow-ups, awaited before the end is announced.
  const followEnd = async (id: number) => {
    await backups.discardUnpublished(id);
    announced.push(id);
  };
  // The job service's part, on its real store; finishWithin writes on the caller's transaction.
  const jobs: BackupJobs = {
    get: async (id) => (await jobStore.get(id)) ?? assert.fail(`no job ${id}`),
    async finish(id, outcome) {
      if (!(await jobStore.finish(id, outcome, clock.now()))) return undefined;
      await followEnd(id);
      return jobStore.get(id);
    },
    async finishWithin(tx, id, outcome) {
      const within = createJobStore(tx);
      if (options.endedMeanwhile || !(await within.finish(id, outcome, clock.now()))) return undefined;
      return { job: (await within.get(id))!, announce: () => followEnd(id) };
    },
    note: (id, error, phase) => jobStore.saveNote(id, error, phase),
    touch: (id) => jobStore.touch(id, clock.now()),
    recordUpload: (id, bytes, sha, mapId) => jobStore.saveUpload(id, bytes, sha, mapId),
  };
  const events: number[] = [];
  const bus = createEventBus();
  bus.on('backup.changed', ({ backupId }) => events.push(backupId));
  const enqueued: number[] = [];
  const blockMaps = createBlockMapStore(db);
  const backups = createBackupService({
    db,
    store: createBackupStore(db),
    blockMaps: options.blockMaps ? options.blockMaps(blockMaps) : blockMaps,
    caches: { enqueue: ({ mapId }) => enqueued.push(mapId) },
    images: { adoptVerifiedFile: () => assert.fail('not used'), addFromStream: () => assert.fail('not used'), remove: () => assert.fail('not used'), view: () => assert.fail('not used') },
    jobs,
    transfers: createTransferRegistry(clock),
    dataDir,
    clock,
    bus,
    log: pino({ level: 'silent' }),
  });
  const backupFiles = () => readdirSync(join(dataDir, 'backups'), { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name);
  const tempFiles = () => readdirSync(join(dataDir, 'tmp'));
  const rows = () => db.selectFrom('backups').selectAll().execute();
  return { backups, job, jobs, jobStore, dataDir, announced, events, enqueued, backupFiles, tempFiles, rows };
}

const body = (data: Buffer) => Readable.from([data]);
const statusOf = (status: number) => (error: unknown) => (error as { statusCode?: number }).statusCode === status;

testOnBothDatabases('a body with no checksum to follow is stored, and its job ends with it in the same commit', async (t, database) => {
  const data = randomBytes(300_000);
  const { backups, job, jobStore, announced, events, enqueued, tempFiles } = await build(t, database, data.length);
  const received = await backups.receiveUpload(job, body(data), { declaredBytes: data.length, checksumFollows: false });
  assert.equal(received.sha256, sha256(data));
  const stored = received.stored!;
  assert.deepEqual([stored.size, stored.sha256, stored.job_id, stored.completeness, stored.device_checked], [data.length, sha256(data), job.id, 'whole', 0]);
  assert.equal(stored.station, 'north', 'the station that served the job holds the file');
  assert.ok(existsSync(backups.pathOf(stored)));
  const ended = (await jobStore.get(job.id))!;
  assert.deepEqual([ended.state, ended.backup_id, ended.verified], ['ok', stored.id, 'server_sha256']);
  assert.deepEqual(announced, [job.id], 'the end is announced once, after the commit');
  assert.deepEqual(events, [stored.id]);
  assert.deepEqual(enqueued, [stored.block_map_id]);
  assert.deepEqual(tempFiles(), []);
  assert.deepEqual((await backups.page({})).backups.map((backup) => backup.id), [stored.id]);
});

testOnBothDatabases('a job that ended before its backup could be stored keeps no row and no file', async (t, database) => {
  const data = randomBytes(50_000);
  const { backups, job, announced, events, backupFiles, tempFiles, rows } = await build(t, database, null, { endedMeanwhile: true });
  await assert.rejects(backups.receiveUpload(job, body(data), { checksumFollows: false }), statusOf(409));
  assert.deepEqual(await rows(), [], 'the row went with the transaction');
  assert.deepEqual([backupFiles(), tempFiles()], [[], []]);
  assert.deepEqual([announced, events], [[], []]);
});

testOnBothDatabases('a backup row that cannot be written leaves no file, and the job goes on', async (t, database) => {
  const data = randomBytes(50_000);
  const unknownMap = (real: BlockMapStore): BlockMapStore => ({ ...real, add: async () => 999_999 });
  const { backups, job, jobStore, announced, backupFiles, rows } = await build(t, database, data.length, { blockMaps: unknownMap });
  await assert.rejects(backups.receiveUpload(job, body(data), { checksumFollows: false }), (error: { code?: string }) =>
    ['SQLITE_CONSTRAINT_FOREIGNKEY', '23503'].includes(error.code ?? ''),
  );
  assert.deepEqual([await rows(), backupFiles(), announced], [[], [], []]);
  assert.equal((await jobStore.get(job.id))!.state, 'running');
});

testOnBothDatabases('with a checksum to follow the body waits; of two matching reports at once, one stores it', async (t, database) => {
  const data = randomBytes(200_000);
  const { backups, job, jobStore, tempFiles, rows } = await build(t, database, data.length);
  const received = await backups.receiveUpload(job, body(data), { checksumFollows: true });
  assert.equal(received.stored, null);
  assert.deepEqual(tempFiles(), [`backup-job${job.id}.received`]);
  assert.deepEqual(await rows(), [], 'not a backup before the device confirms');
  const waiting = (await jobStore.get(job.id))!;
  assert.deepEqual([waiting.upload_sha256, waiting.upload_bytes, waiting.phase], [sha256(data), data.length, 'awaiting-checksum']);

  const report = { status: 'ok' as const, sha256: sha256(data).toUpperCase() };
  const outcomes = await Promise.allSettled([backups.finishFromReport(waiting, report), backups.finishFromReport(waiting, report)]);
  const fulfilled = outcomes.filter((outcome) => outcome.status === 'fulfilled');
  const rejected = outcomes.filter((outcome) => outcome.status === 'rejected');
  assert.equal(fulfilled.length, 1);
  assert.equal(fulfilled[0]!.value.state, 'ok');
  assert.equal(fulfilled[0]!.value.verified, 'device_sha256');
  assert.ok(statusOf(410)(rejected[0]!.reason), 'the second report finds the job ended');
  const stored = await rows();
  assert.equal(stored.length, 1);
  assert.deepEqual([stored[0]!.sha256, stored[0]!.device_checked], [sha256(data), 1]);
  assert.deepEqual(tempFiles(), []);
});

testOnBothDatabases('a job that ends while its body awaits the checksum leaves no body behind', async (t, database) => {
  const data = randomBytes(20_000);
  const { backups, job, jobs, tempFiles } = await build(t, database, data.length);
  await backups.receiveUpload(job, body(data), { checksumFollows: true });
  assert.deepEqual(tempFiles(), [`backup-job${job.id}.received`]);
  assert.ok(await jobs.finish(job.id, { state: 'cancelled', error: 'cancelled by the operator' }));
  await waitFor('the received body to go', () => tempFiles().length === 0);
  await assert.rejects(backups.finishFromReport(job, { status: 'ok' }), statusOf(410));
});

testOnBothDatabases('a report of another sha256 fails the job and leaves nothing; so does a received body lost with a crash', async (t, database) => {
  const data = randomBytes(20_000);
  const first = await build(t, database, data.length);
  await first.backups.receiveUpload(first.job, body(data), { checksumFollows: true });
  const corrupted = await first.backups.finishFromReport(first.job, { status: 'ok', sha256: 'c'.repeat(64) });
  assert.equal(corrupted.state, 'failed');
  assert.match(corrupted.error!, /the upload was corrupted/);
  assert.deepEqual([first.tempFiles(), await first.rows()], [[], []]);

  // A second job: its received body vanished (moved by a publish that never committed, then swept).
  const second = await first.jobStore.create({ mac: MAC, kind: 'backup', token: 'u', imageId: null, bytesTotal: data.length, afterSuccess: 'emmc', fullMatch: 0 }, 2);
  await first.jobStore.markStarted(second.id, 3, { ip: null, reports: true });
  await first.backups.receiveUpload((await first.jobStore.get(second.id))!, body(data), { checksumFollows: true });
  rmSync(join(first.dataDir, 'tmp', `backup-job${second.id}.received`));
  await assert.rejects(first.backups.finishFromReport(second, { status: 'ok', sha256: sha256(data) }), /no longer on the server/);
  const failed = (await first.jobStore.get(second.id))!;
  assert.equal(failed.state, 'failed');
  assert.deepEqual(await first.rows(), []);
});

testOnBothDatabases('a newer upload attempt cuts one in flight; only the newer one counts', async (t, database) => {
  const data = randomBytes(1024 * 1024);
  const { backups, job, jobStore, tempFiles } = await build(t, database, data.length);
  const older = new PassThrough();
  // Its refusal is awaited below; taken now, so that it never counts as unhandled meanwhile.
  const olderRefused = assert.rejects(backups.receiveUpload(job, older, { declaredBytes: data.length, checksumFollows: true }), statusOf(400));
  older.write(randomBytes(64 * 1024));
  await waitFor('the older attempt to reach the disk', () => tempFiles().some((name) => name.endsWith('.part')));

  const newerBody = new PassThrough();
  const newerUpload = backups.receiveUpload(job, newerBody, { declaredBytes: data.length, checksumFollows: true });
  await olderRefused;
  await waitFor('the newer attempt to reach the disk', () => tempFiles().some((name) => name.endsWith('.part')));
  assert.equal((await jobStore.get(job.id))!.error, null, 'the older attempt, cut by the newer one, notes no failure on the job');
  newerBody.end(data);
  assert.equal((await newerUpload).sha256, sha256(data));
  const current = (await jobStore.get(job.id))!;
  assert.deepEqual([current.state, current.upload_sha256], ['running', sha256(data)]);
  assert.deepEqual(tempFiles(), [`backup-job${job.id}.received`]);
});

testOnBothDatabases('at start-up, files without a row and temp files of dead transfers go; kept bodies and stored backups stay', async (t, database) => {
  const data = randomBytes(10_000);
  const { backups, job, dataDir, backupFiles, tempFiles } = await build(t, database, null);
  const { stored } = await backups.receiveUpload(job, body(data), { checksumFollows: false });
  mkdirSync(join(dataDir, 'backups', 'dca632000002'));
  writeFileSync(join(dataDir, 'backups', 'dca632000002', 'stray.img'), 'left by a crash');
  for (const name of ['backup-job7.received', 'backup-job8.received', 'backup-job9-x.part']) writeFileSync(join(dataDir, 'tmp', name), 'x');
  await backups.sweepLeftovers(new Set([7]));
  assert.deepEqual(backupFiles(), [stored!.file.split('/').at(-1)]);
  assert.deepEqual(tempFiles(), ['backup-job7.received']);
});

testOnBothDatabases('of two deletes of a backup at once, one removes it and the other is told it is not there', async (t, database) => {
  const data = randomBytes(10_000);
  const { backups, job, events, backupFiles } = await build(t, database, null);
  const { stored } = await backups.receiveUpload(job, body(data), { checksumFollows: false });
  const outcomes = await Promise.allSettled([backups.remove(stored!.id), backups.remove(stored!.id)]);
  assert.deepEqual(outcomes.map((outcome) => outcome.status).sort(), ['fulfilled', 'rejected']);
  assert.ok(statusOf(404)(outcomes.find((outcome) => outcome.status === 'rejected')!.reason));
  assert.deepEqual(backupFiles(), []);
  assert.deepEqual(events, [stored!.id, stored!.id], 'stored once, removed once');
  await assert.rejects(backups.get(stored!.id), statusOf(404));
});
