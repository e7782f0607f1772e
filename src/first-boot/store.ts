import type { Queries } from '../db/database.js';
import type { JobRow } from '../jobs/store.js';
import type { FirstBootHook } from './hook-files.js';

/** What the installed OS said on its first boot (stored as JSON on the job). */
export interface BootReport {
  serial: string | null;
  mac: string | null;
  os_release: string | null;
  kernel: string | null;
}

/**
 * The first-boot columns of jobs (migration 0018). Every change of boot_state is one conditional
 * UPDATE: of two callers (two requests, two stations) racing for the same job, one wins.
 */
export function createFirstBootStore(db: Queries) {
  const awaiting = (id: number) => db.updateTable('jobs').where('id', '=', id).where('boot_state', '=', 'awaiting');

  return {
    /** Marks a queued deploy as asking for first-boot confirmation, with its token's hash. */
    async arm(id: number, hash: string, hook: FirstBootHook, timeoutSeconds: number): Promise<boolean> {
      const result = await db
        .updateTable('jobs')
        .set({ boot_confirm: 1, boot_token_hash: hash, boot_hook: hook, boot_confirm_timeout_s: timeoutSeconds })
        .where('id', '=', id)
        .where('state', '=', 'queued')
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    byTokenHash: (hash: string) => db.selectFrom('jobs').selectAll().where('boot_token_hash', '=', hash).executeTakeFirst() as Promise<JobRow | undefined>,
    /** awaiting → confirmed: the job as confirmed, or undefined when it was no longer awaiting. */
    confirm: (id: number, report: BootReport, now: number) =>
      awaiting(id).set({ boot_state: 'confirmed', boot_confirmed_at: now, boot_report: JSON.stringify(report) }).returningAll().executeTakeFirst() as Promise<JobRow | undefined>,
    /** Jobs still awaiting their first boot whose deadline is at or before `now`. */
    due: (now: number) =>
      db.selectFrom('jobs').selectAll().where('boot_state', '=', 'awaiting').where('boot_deadline_at', '<=', now).orderBy('id').execute() as Promise<JobRow[]>,
    /** awaiting → not_confirmed: the job as expired, or undefined when it was no longer awaiting (a call came just in time). */
    expire: (id: number) => awaiting(id).set({ boot_state: 'not_confirmed' }).returningAll().executeTakeFirst() as Promise<JobRow | undefined>,
    /** awaiting → superseded for the device's jobs older than `newer`; their ids. */
    async supersede(mac: string, newer: number): Promise<number[]> {
      const rows = await db
        .updateTable('jobs')
        .set({ boot_state: 'superseded' })
        .where('device_mac', '=', mac)
        .where('boot_state', '=', 'awaiting')
        .where('id', '<', newer)
        .returning('id')
        .execute();
      return rows.map((row) => row.id).sort((a, b) => a - b);
    },
  };
}

export type FirstBootStore = ReturnType<typeof createFirstBootStore>;
