import type { Db } from '../db/open.js';
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

export function createJobStore(db: Db) {
  const insert = db.prepare<Omit<NewJob, 'rule'> & { now: number; orderedBy: string; ruleId: number | null; ruleName: string | null }>(`
    INSERT INTO jobs (device_mac, kind, state, token, image_id, bytes_total, after_success, full_match, created_at, ordered_by, rule_id, rule_name)
    VALUES (@mac, @kind, 'queued', @token, @imageId, @bytesTotal, @afterSuccess, @fullMatch, @now, @orderedBy, @ruleId, @ruleName)`);
  const transfer = db.prepare<{ id: number; mode: string; encoding: string | null; bytesTotal: number | null }>(
    'UPDATE jobs SET transfer_mode = @mode, encoding = @encoding, bytes_total = coalesce(@bytesTotal, bytes_total) WHERE id = @id',
  );
  const detail = db.prepare<{ id: number; written: number | null; verified: number | null; rate: number | null; discarded: number | null }>(`
    UPDATE jobs SET bytes_written = coalesce(@written, bytes_written), bytes_verified = coalesce(@verified, bytes_verified),
      device_rate = coalesce(@rate, device_rate), discarded = coalesce(@discarded, discarded)
    WHERE id = @id AND state = 'running'`);
  const byId = db.prepare<[number], JobRow>('SELECT * FROM jobs WHERE id = ?');
  const activeForDevice = db.prepare<[string], JobRow>(
    `SELECT * FROM jobs WHERE device_mac = ? AND state IN ('queued', 'running')`,
  );
  const running = db.prepare<[], JobRow>(`SELECT * FROM jobs WHERE state = 'running'`);
  const latestForDevice = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE device_mac = ? ORDER BY id DESC LIMIT 1');
  const start = db.prepare<{ id: number; now: number; ip: string | null; reports: number }>(`
    UPDATE jobs SET state = 'running', started_at = @now, last_activity_at = @now, device_ip = @ip, client_reports = @reports
    WHERE id = @id AND state = 'queued'`);
  // A report that moves nothing (same bytes, same phase) is not a sign of progress: the stall
  // timeout keeps running, so a device stuck while still reporting ends instead of hanging forever.
  // The time since phase_started_at, added to the current phase's sum in phase_ms. Only a phase
  // named in lower-case letters, digits, '_' and '-' is counted: the name is a JSON path key.
  const CLOSE_PHASE = `CASE WHEN phase_started_at IS NULL OR phase IS NULL OR phase NOT GLOB '[a-z]*' OR phase GLOB '*[^a-z0-9_-]*' THEN phase_ms
    ELSE json_set(coalesce(phase_ms, '{}'), '$.' || phase, coalesce(json_extract(phase_ms, '$.' || phase), 0) + max(0, @now - phase_started_at)) END`;
  const progress = db.prepare<{ id: number; bytesDone: number; phase: string | null; now: number }>(`
    UPDATE jobs SET bytes_done = @bytesDone, phase = coalesce(@phase, phase),
      phase_ms = CASE WHEN @phase IS NOT NULL AND @phase IS NOT phase THEN ${CLOSE_PHASE} ELSE phase_ms END,
      phase_started_at = CASE WHEN @phase IS NOT NULL AND @phase IS NOT phase THEN @now ELSE coalesce(phase_started_at, @now) END,
      last_activity_at = CASE WHEN bytes_done = @bytesDone AND phase IS coalesce(@phase, phase) THEN last_activity_at ELSE @now END
    WHERE id = @id AND state = 'running'`);
  const imageSent = db.prepare<{ id: number; now: number }>(
    `UPDATE jobs SET image_sent_at = @now, last_activity_at = @now WHERE id = @id AND state = 'running' AND image_sent_at IS NULL`,
  );
  const activity = db.prepare<{ id: number; now: number }>(
    `UPDATE jobs SET last_activity_at = @now WHERE id = @id AND state = 'running'`,
  );
  const note = db.prepare<{ id: number; error: string | null; phase: string | null }>(
    `UPDATE jobs SET error = @error, phase = coalesce(@phase, phase) WHERE id = @id AND state IN ('queued', 'running')`,
  );
  const upload = db.prepare<{ id: number; bytes: number | null; sha256: string | null; mapId: number | null }>(
    `UPDATE jobs SET upload_bytes = @bytes, upload_sha256 = @sha256, upload_map_id = @mapId WHERE id = @id AND state = 'running'`,
  );
  const finish = db.prepare<{
    id: number; state: JobState; error: string | null; sha256: string | null; bytesDone: number | null; backupId: number | null; now: number;
    verified: Verified | null; verifiedBytes: number | null; verifiedRanges: number | null;
  }>(`
    UPDATE jobs SET state = @state, error = @error, sha256 = coalesce(@sha256, sha256),
      bytes_done = coalesce(@bytesDone, bytes_done), backup_id = coalesce(@backupId, backup_id),
      verified = @verified, verified_bytes = @verifiedBytes, verified_ranges = @verifiedRanges,
      phase_ms = ${CLOSE_PHASE}, phase_started_at = NULL,
      phase = NULL, upload_bytes = NULL, upload_sha256 = NULL, ended_at = @now, last_activity_at = @now,
      -- A deploy that asked for it now awaits its first boot (src/first-boot/), in the same change.
      boot_state = CASE WHEN boot_confirm = 1 AND @state IN ('ok', 'unconfirmed') THEN 'awaiting' ELSE boot_state END,
      boot_deadline_at = CASE WHEN boot_confirm = 1 AND @state IN ('ok', 'unconfirmed') THEN @now + 1000 * coalesce(boot_confirm_timeout_s, 600) ELSE boot_deadline_at END
    WHERE id = @id AND state IN ('queued', 'running')`);
  const setFinish = db.prepare<{ id: number; finish: JobFinish }>(`UPDATE jobs SET finish = @finish WHERE id = @id AND state = 'queued'`);
  // A search of the index jobs_by_last_change (migration 0017); ORDER BY id would make SQLite scan.
  const changedSince = db.prepare<[number], JobRow>(
    'SELECT * FROM jobs WHERE coalesce(ended_at, started_at, created_at) >= ? ORDER BY coalesce(ended_at, started_at, created_at)',
  );
  const usingImage = db.prepare<[number], { n: number }>(
    `SELECT count(*) AS n FROM jobs WHERE image_id = ? AND state IN ('queued', 'running')`,
  );

  return {
    create({ rule, ...values }: NewJob, now: number): JobRow {
      const by = { orderedBy: rule ? 'rule' : 'operator', ruleId: rule?.id ?? null, ruleName: rule?.name ?? null };
      const { lastInsertRowid } = insert.run({ ...values, ...by, now });
      return byId.get(Number(lastInsertRowid))!;
    },
    get: (id: number) => byId.get(id),
    activeFor: (mac: string) => activeForDevice.get(mac),
    latestFor: (mac: string) => latestForDevice.get(mac),
    running: () => running.all(),
    /** queued → running, taken by the device at `ip`; false if the job was no longer queued. */
    markStarted: (id: number, now: number, taker: { ip: string | null; reports: boolean }) =>
      start.run({ id, now, ip: taker.ip, reports: taker.reports ? 1 : 0 }).changes === 1,
    /** The whole image has gone out to the device; true the first time. */
    markImageSent: (id: number, now: number) => imageSent.run({ id, now }).changes === 1,
    saveProgress: (id: number, bytesDone: number, phase: string | null, now: number) =>
      progress.run({ id, bytesDone, phase, now }).changes === 1,
    /** Best effort: a stream can close after shutdown has closed the database. */
    touch: (id: number, now: number) => db.open && activity.run({ id, now }).changes === 1,
    saveTransfer: (id: number, mode: 'full' | 'sparse', encoding: string | null, bytesTotal: number | null) =>
      transfer.run({ id, mode, encoding, bytesTotal }),
    saveDetail: (id: number, values: { written?: number; verified?: number; rate?: number; discarded?: boolean }) =>
      detail.run({
        id,
        written: values.written ?? null,
        verified: values.verified ?? null,
        rate: values.rate ?? null,
        discarded: values.discarded === undefined ? null : values.discarded ? 1 : 0,
      }),
    /** A problem worth showing while the job goes on (e.g. an upload attempt that was cut). */
    saveNote: (id: number, error: string | null, phase: string | null = null) => note.run({ id, error, phase }),
    saveUpload: (id: number, bytes: number | null, sha256: string | null, mapId: number | null = null) =>
      upload.run({ id, bytes, sha256, mapId }),
    /** Moves an active job to its final state; false if it had already ended. */
    finish(id: number, outcome: FinalValues, now: number): boolean {
      return finish.run({
        id,
        state: outcome.state,
        error: outcome.error ?? null,
        sha256: outcome.sha256 ?? null,
        bytesDone: outcome.bytesDone ?? null,
        backupId: outcome.backupId ?? null,
        verified: outcome.verified ?? null,
        verifiedBytes: outcome.verifiedBytes ?? null,
        verifiedRanges: outcome.verifiedRanges ?? null,
        now,
      }).changes === 1;
    },
    list(filter: JobFilter): JobPage {
      const where: string[] = [];
      const params: Record<string, unknown> = {};
      if (filter.mac) { where.push('device_mac = @mac'); params.mac = filter.mac; }
      if (filter.state) { where.push('state = @state'); params.state = filter.state; }
      if (filter.kind) { where.push('kind = @kind'); params.kind = filter.kind; }
      const clause = (terms: string[]) => (terms.length ? `WHERE ${terms.join(' AND ')}` : '');
      const limit = filter.limit ?? 100;
      const after = filter.cursor === undefined ? where : [...where, 'id < @cursor'];
      const rows = db.prepare(`SELECT * FROM jobs ${clause(after)} ORDER BY id DESC LIMIT @limit`)
        .all({ ...params, cursor: filter.cursor, limit: limit + 1 }) as JobRow[];
      const more = rows.length > limit;
      if (more) rows.pop();
      const { total } = db.prepare(`SELECT count(*) AS total FROM jobs ${clause(where)}`).get(params) as { total: number };
      return { rows, total, next: more ? rows.at(-1)!.id : null };
    },
    /** Sets what the device does after an ok end, while the job is still queued. */
    saveFinish: (id: number, finish: JobFinish) => setFinish.run({ id, finish }).changes === 1,
    imageInUse: (imageId: number) => usingImage.get(imageId)!.n > 0,
    /** Jobs queued, started or ended at or after `since` (ms), by the time of their last change. */
    changedSince: (since: number) => changedSince.all(since),
  };
}

export type JobStore = ReturnType<typeof createJobStore>;
