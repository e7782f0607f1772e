import { sql } from 'kysely';
import type { Queries } from '../db/database.js';
import type { Verified } from './verification.js';

export type JobKind = 'deploy' | 'backup';
/** `unconfirmed`: the work was handed over (the whole image sent, a backup body received), but nothing confirms it is complete. */
export type JobState = 'queued' | 'running' | 'ok' | 'unconfirmed' | 'failed' | 'cancelled';
export type FinalState = 'ok' | 'unconfirmed' | 'failed' | 'cancelled';
export const ACTIVE_STATES: readonly JobState[] = ['queued', 'running'];
export const JOB_STATES: readonly JobState[] = ['queued', 'running', 'ok', 'unconfirmed', 'failed', 'cancelled'];

export interface JobRow {
  id: number;
  device_mac: string;
  kind: JobKind;
  state: JobState;
  token: string;
  image_id: number | null;
  backup_id: number | null;
  phase: string | null;
  bytes_total: number | null;
  bytes_done: number;
  sha256: string | null;
  error: string | null;
  upload_bytes: number | null;
  upload_sha256: string | null;
  upload_map_id: number | null;
  created_at: number;
  started_at: number | null;
  ended_at: number | null;
  last_activity_at: number | null;
  /** What the device boots after this job ends ok: its eMMC (no more PXE offer) or the network. */
  after_success: 'emmc' | 'netboot';
  /** Decided when handed out: 'full' (whole image, one hash) or 'sparse' (mapped chunks, each read back). */
  transfer_mode: 'full' | 'sparse' | null;
  encoding: 'zstd' | 'identity' | null;
  /** The operator asked for the whole target to equal the image, unmapped ranges as zeros. */
  full_match: number;
  bytes_written: number | null;
  bytes_verified: number | null;
  device_rate: number | null;
  discarded: number | null;
  /** What the finished job proved (see verification.ts); null while active, or when it proved nothing. */
  verified: Verified | null;
  verified_bytes: number | null;
  verified_ranges: number | null;
  /** The device's address when it took the job: its job URLs answer only there. */
  device_ip: string | null;
  /** 1: the client said what it can do when it took the job, and so reports a result. */
  client_reports: number;
  /** When the last byte of the whole image had been sent (full-image transfers). */
  image_sent_at: number | null;
  /** Who ordered it: a person (admin API, dashboard, CLI) or a rule (src/rules/), named as it was then. */
  ordered_by: 'operator' | 'rule';
  rule_id: number | null;
  rule_name: string | null;
  /** What the device does once this job has ended ok: reboot, power off, or wait (LED steady on). */
  finish: JobFinish;
  /** 1: the deploy asked for first-boot confirmation (src/first-boot/). */
  boot_confirm: number;
  boot_confirm_timeout_s: number | null;
  /** sha256 (hex) of the one-time first-boot token; the token itself is never stored. */
  boot_token_hash: string | null;
  /** Set when the job ends ok (or unconfirmed) with boot_confirm: awaiting, then confirmed or not_confirmed. */
  boot_state: 'awaiting' | 'confirmed' | 'not_confirmed' | 'superseded' | null;
  boot_deadline_at: number | null;
  boot_confirmed_at: number | null;
  /** JSON object: milliseconds spent in each phase the device reported (migration 0019). */
  phase_ms: string | null;
  phase_started_at: number | null;
  /** The station that handed it out and serves its bytes (issue 15); null while queued, or before stations. */
  station: string | null;
  /** JSON: what the first-boot call said (serial, mac, os_release, kernel). */
  boot_report: string | null;
  /** The hook the deploy wrote into the image (src/first-boot/hook-files.ts). */
  boot_hook: 'cmdline' | 'cmdline-boot' | 'none' | null;
}

export type JobFinish = 'reboot' | 'poweroff' | 'wait';
export const JOB_FINISHES: readonly JobFinish[] = ['reboot', 'poweroff', 'wait'];

export interface NewJob {
  mac: string;
  kind: JobKind;
  token: string;
  imageId: number | null;
  bytesTotal: number | null;
  afterSuccess: JobRow['after_success'];
  fullMatch: number;
  /** Set when a rule orders the job; a person otherwise. */
  rule?: { id: number; name: string };
}

/** How a job ends: its state, and what it proved (see verification.ts). */
export interface FinalValues {
  state: FinalState;
  error?: string | null;
  sha256?: string | null;
  bytesDone?: number | null;
  backupId?: number | null;
  verified?: Verified | null;
  verifiedBytes?: number | null;
  verifiedRanges?: number | null;
}

export interface JobFilter {
  mac?: string;
  state?: JobState;
  kind?: JobKind;
  limit?: number;
  /** The `next` of the page before: only jobs older than that one. */
  cursor?: number;
}

/** A page of jobs, newest first: `total` match the filter; `next` continues after `rows`. */
export interface JobPage {
  rows: JobRow[];
  total: number;
  next: number | null;
}

/** Phases counted in phase_ms: a device's plain words (writing, verifying), not any text it sends. */
const COUNTED_PHASE = /^[a-z][a-z0-9_-]{0,31}$/;

/**
 * phase_ms with the time since phase_started_at added to the current phase's sum: the phase the
 * job leaves. Computed here rather than in SQL, so no JSON function of either database is needed.
 */
export function closedPhaseMs(job: Pick<JobRow, 'phase_ms' | 'phase' | 'phase_started_at'>, now: number): string | null {
  if (job.phase === null || job.phase_started_at === null || !COUNTED_PHASE.test(job.phase)) return job.phase_ms;
  let spent: Record<string, number> = {};
  try {
    spent = job.phase_ms === null ? {} : (JSON.parse(job.phase_ms) as Record<string, number>);
  } catch {
    spent = {};
  }
  return JSON.stringify({ ...spent, [job.phase]: (spent[job.phase] ?? 0) + Math.max(0, now - job.phase_started_at) });
}

const one = (result: { numUpdatedRows: bigint }) => Number(result.numUpdatedRows) === 1;

export function createJobStore(db: Queries) {
  const byId = (id: number) => db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst() as Promise<JobRow | undefined>;
  const running = () => db.updateTable('jobs').where('state', '=', 'running');

  /**
   * The phase sums change only if the row still has the phase the caller read: a report that
   * raced another one loses its phase time rather than counting it twice.
   */
  const phaseMsIfUnchanged = (job: Pick<JobRow, 'phase' | 'phase_started_at'>, value: string | null) =>
    sql<string | null>`CASE WHEN phase IS NOT DISTINCT FROM ${job.phase} AND phase_started_at IS NOT DISTINCT FROM ${job.phase_started_at}
      THEN ${value} ELSE phase_ms END`;

  return {
    async create({ rule, ...values }: NewJob, now: number): Promise<JobRow> {
      return (await db
        .insertInto('jobs')
        .values({
          device_mac: values.mac,
          kind: values.kind,
          state: 'queued',
          token: values.token,
          image_id: values.imageId,
          bytes_total: values.bytesTotal,
          after_success: values.afterSuccess,
          full_match: values.fullMatch,
          created_at: now,
          ordered_by: rule ? 'rule' : 'operator',
          rule_id: rule?.id ?? null,
          rule_name: rule?.name ?? null,
        })
        .returningAll()
        .executeTakeFirstOrThrow()) as JobRow;
    },
    get: byId,
    activeFor: (mac: string) =>
      db.selectFrom('jobs').selectAll().where('device_mac', '=', mac).where('state', 'in', ACTIVE_STATES).executeTakeFirst() as Promise<JobRow | undefined>,
    latestFor: (mac: string) =>
      db.selectFrom('jobs').selectAll().where('device_mac', '=', mac).orderBy('id', 'desc').limit(1).executeTakeFirst() as Promise<JobRow | undefined>,
    /** The latest job of each of these devices that has one (one query, for a page of devices). */
    latestForEach: (macs: string[]) =>
      macs.length === 0
        ? Promise.resolve([] as JobRow[])
        : (db
            .selectFrom('jobs')
            .selectAll()
            .where('id', 'in', (eb) => eb.selectFrom('jobs').select((inner) => inner.fn.max('id').as('id')).where('device_mac', 'in', macs).groupBy('device_mac'))
            .execute() as Promise<JobRow[]>),
    running: () => db.selectFrom('jobs').selectAll().where('state', '=', 'running').orderBy('id').execute() as Promise<JobRow[]>,
    /**
     * queued → running, taken by the device at `ip`; false if the job was no longer queued. One
     * conditional statement: of two stations racing for the job, exactly one gets true.
     */
    markStarted: async (id: number, now: number, taker: { ip: string | null; reports: boolean; station?: string }) =>
      one(
        await db
          .updateTable('jobs')
          .set({ state: 'running', started_at: now, last_activity_at: now, device_ip: taker.ip, client_reports: taker.reports ? 1 : 0, station: taker.station ?? null })
          .where('id', '=', id)
          .where('state', '=', 'queued')
          .executeTakeFirst(),
      ),
    /** The whole image has gone out to the device; true the first time. */
    markImageSent: async (id: number, now: number) =>
      one(await running().set({ image_sent_at: now, last_activity_at: now }).where('id', '=', id).where('image_sent_at', 'is', null).executeTakeFirst()),
    /**
     * Progress of a running job, as read in `job`. A report that moves nothing (same bytes, same
     * phase) is not a sign of progress: the stall timeout keeps running, so a device stuck while
     * still reporting ends instead of hanging forever. A new phase closes the one before
     * (its time added to phase_ms).
     */
    async saveProgress(job: JobRow, bytesDone: number, phase: string | null, now: number): Promise<boolean> {
      const phaseChanges = phase !== null && phase !== job.phase;
      const result = await running()
        .set({
          bytes_done: bytesDone,
          phase: sql`coalesce(${phase}, phase)`,
          ...(phaseChanges ? { phase_ms: phaseMsIfUnchanged(job, closedPhaseMs(job, now)), phase_started_at: now } : { phase_started_at: sql`coalesce(phase_started_at, ${now})` }),
          last_activity_at: sql`CASE WHEN bytes_done = ${bytesDone} AND phase IS NOT DISTINCT FROM coalesce(${phase}, phase) THEN last_activity_at ELSE ${now} END`,
        })
        .where('id', '=', job.id)
        .executeTakeFirst();
      return one(result);
    },
    /** Best effort: a stream can close after shutdown has closed the database. */
    async touch(id: number, now: number): Promise<boolean> {
      try {
        return one(await running().set({ last_activity_at: now }).where('id', '=', id).executeTakeFirst());
      } catch {
        return false;
      }
    },
    saveTransfer: (id: number, mode: 'full' | 'sparse', encoding: string | null, bytesTotal: number | null) =>
      db
        .updateTable('jobs')
        .set({ transfer_mode: mode, encoding, bytes_total: sql`coalesce(${bytesTotal}, bytes_total)` })
        .where('id', '=', id)
        .execute(),
    saveDetail: (id: number, values: { written?: number; verified?: number; rate?: number; discarded?: boolean }) => {
      const set = {
        ...(values.written === undefined ? {} : { bytes_written: values.written }),
        ...(values.verified === undefined ? {} : { bytes_verified: values.verified }),
        ...(values.rate === undefined ? {} : { device_rate: values.rate }),
        ...(values.discarded === undefined ? {} : { discarded: values.discarded ? 1 : 0 }),
      };
      return Object.keys(set).length === 0 ? Promise.resolve() : running().set(set).where('id', '=', id).execute().then(() => undefined);
    },
    /** A problem worth showing while the job goes on (e.g. an upload attempt that was cut). */
    saveNote: (id: number, error: string | null, phase: string | null = null) =>
      db
        .updateTable('jobs')
        .set({ error, phase: sql`coalesce(${phase}, phase)` })
        .where('id', '=', id)
        .where('state', 'in', ACTIVE_STATES)
        .execute(),
    saveUpload: (id: number, bytes: number | null, sha256: string | null, mapId: number | null = null) =>
      running().set({ upload_bytes: bytes, upload_sha256: sha256, upload_map_id: mapId }).where('id', '=', id).execute(),
    /** Moves an active job to its final state; false if it had already ended. */
    async finish(id: number, outcome: FinalValues, now: number): Promise<boolean> {
      const job = await byId(id);
      if (!job || !ACTIVE_STATES.includes(job.state)) return false;
      // A deploy that asked for it now awaits its first boot (src/first-boot/), in the same change.
      const awaitsBoot = outcome.state === 'ok' || outcome.state === 'unconfirmed';
      const result = await db
        .updateTable('jobs')
        .set({
          state: outcome.state,
          error: outcome.error ?? null,
          sha256: sql`coalesce(${outcome.sha256 ?? null}, sha256)`,
          bytes_done: sql`coalesce(${outcome.bytesDone ?? null}, bytes_done)`,
          backup_id: sql`coalesce(${outcome.backupId ?? null}, backup_id)`,
          verified: outcome.verified ?? null,
          verified_bytes: outcome.verifiedBytes ?? null,
          verified_ranges: outcome.verifiedRanges ?? null,
          phase_ms: phaseMsIfUnchanged(job, closedPhaseMs(job, now)),
          phase_started_at: null,
          phase: null,
          upload_bytes: null,
          upload_sha256: null,
          ended_at: now,
          last_activity_at: now,
          ...(awaitsBoot
            ? {
                boot_state: sql`CASE WHEN boot_confirm = 1 THEN 'awaiting' ELSE boot_state END`,
                boot_deadline_at: sql`CASE WHEN boot_confirm = 1 THEN ${now} + 1000 * coalesce(boot_confirm_timeout_s, 600) ELSE boot_deadline_at END`,
              }
            : {}),
        })
        .where('id', '=', id)
        .where('state', 'in', ACTIVE_STATES)
        .executeTakeFirst();
      return one(result);
    },
    async list(filter: JobFilter): Promise<JobPage> {
      let matching = db.selectFrom('jobs');
      if (filter.mac) matching = matching.where('device_mac', '=', filter.mac);
      if (filter.state) matching = matching.where('state', '=', filter.state);
      if (filter.kind) matching = matching.where('kind', '=', filter.kind);
      const limit = filter.limit ?? 100;
      const page = filter.cursor === undefined ? matching : matching.where('id', '<', filter.cursor);
      const rows = (await page.selectAll().orderBy('id', 'desc').limit(limit + 1).execute()) as JobRow[];
      const more = rows.length > limit;
      if (more) rows.pop();
      const { total } = await matching.select((eb) => eb.fn.countAll<number>().as('total')).executeTakeFirstOrThrow();
      return { rows, total, next: more ? rows.at(-1)!.id : null };
    },
    /** Sets what the device does after an ok end, while the job is still queued. */
    saveFinish: async (id: number, finish: JobFinish) =>
      one(await db.updateTable('jobs').set({ finish }).where('id', '=', id).where('state', '=', 'queued').executeTakeFirst()),
    imageInUse: async (imageId: number) => {
      const { n } = await db
        .selectFrom('jobs')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('image_id', '=', imageId)
        .where('state', 'in', ACTIVE_STATES)
        .executeTakeFirstOrThrow();
      return n > 0;
    },
    /**
     * Jobs queued, started or ended at or after `since` (ms), by the time of their last change.
     * A search of the index jobs_by_last_change (migration 0017); ORDER BY id would make SQLite scan.
     */
    changedSince: (since: number) =>
      db
        .selectFrom('jobs')
        .selectAll()
        .where(sql<boolean>`coalesce(ended_at, started_at, created_at) >= ${since}`)
        .orderBy(sql`coalesce(ended_at, started_at, created_at)`)
        .execute() as Promise<JobRow[]>,
  };
}

export type JobStore = ReturnType<typeof createJobStore>;
