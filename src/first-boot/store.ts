import type { Db } from '../db/open.js';
import type { JobRow } from '../jobs/store.js';
import type { FirstBootHook } from './hook-files.js';

/** What the installed OS said on its first boot (stored as JSON on the job). */
export interface BootReport {
  serial: string | null;
  mac: string | null;
  os_release: string | null;
  kernel: string | null;
}

/** The first-boot columns of jobs (migration 0018). */
export function createFirstBootStore(db: Db) {
  const arm = db.prepare<{ id: number; hash: string; hook: string; timeout: number }>(
    `UPDATE jobs SET boot_confirm = 1, boot_token_hash = @hash, boot_hook = @hook, boot_confirm_timeout_s = @timeout WHERE id = @id AND state = 'queued'`,
  );
  const byHash = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE boot_token_hash = ?');
  const confirm = db.prepare<{ id: number; now: number; report: string }>(
    `UPDATE jobs SET boot_state = 'confirmed', boot_confirmed_at = @now, boot_report = @report WHERE id = @id AND boot_state = 'awaiting'`,
  );
  const due = db.prepare<[number], JobRow>(`SELECT * FROM jobs WHERE boot_state = 'awaiting' AND boot_deadline_at <= ? ORDER BY id`);
  const expire = db.prepare<[number]>(`UPDATE jobs SET boot_state = 'not_confirmed' WHERE id = ? AND boot_state = 'awaiting'`);
  const byId = db.prepare<[number], JobRow>('SELECT * FROM jobs WHERE id = ?');
  const supersede = db.prepare<{ mac: string; newer: number }, { id: number }>(
    `UPDATE jobs SET boot_state = 'superseded' WHERE device_mac = @mac AND boot_state = 'awaiting' AND id < @newer RETURNING id`,
  );

  return {
    /** Marks a queued deploy as asking for first-boot confirmation, with its token's hash. */
    arm: (id: number, hash: string, hook: FirstBootHook, timeoutSeconds: number) => arm.run({ id, hash, hook, timeout: timeoutSeconds }).changes === 1,
    byTokenHash: (hash: string) => byHash.get(hash),
    /** awaiting → confirmed; false when it was no longer awaiting. */
    confirm: (id: number, report: BootReport, now: number) => confirm.run({ id, now, report: JSON.stringify(report) }).changes === 1,
    /** Jobs still awaiting their first boot whose deadline is at or before `now`. */
    due: (now: number) => due.all(now),
    /** awaiting → not_confirmed; false when it was no longer awaiting (a call came just in time). */
    expire: (id: number) => expire.run(id).changes === 1,
    get: (id: number) => byId.get(id),
    /** awaiting → superseded for the device's jobs older than `newer`; their ids. */
    supersede: (mac: string, newer: number) => supersede.all({ mac, newer }).map((row) => row.id),
  };
}

export type FirstBootStore = ReturnType<typeof createFirstBootStore>;
