import type { Queries } from '../db/database.js';

const KEY = 'line_paused_at';

export interface LineState {
  paused: boolean;
  /** When the line was paused (ISO time); null while it runs. */
  paused_at: string | null;
}

/**
 * The Pause line switch: while paused no rule orders anything and no queued rule job is handed
 * out (it stays queued, visible). Kept in the settings table, so a restart does not resume a
 * line a person stopped, and every station sharing the database obeys one switch.
 *
 * `paused()` is asked on every poll, so it answers from memory: `refresh()` loads it (at start,
 * before any poll is served, and when another station says it flipped the switch); `pause` and
 * `resume` write through. Until the first `refresh()` the line counts as paused: a switch not
 * read yet must not let a restart resume a line a person stopped.
 */
export function createLineSwitch(db: Queries) {
  /** undefined: not read yet. */
  let pausedAt: number | null | undefined;

  async function refresh(): Promise<void> {
    const row = await db.selectFrom('settings').select('value').where('key', '=', KEY).executeTakeFirst();
    pausedAt = row ? Number(row.value) : null;
  }

  return {
    refresh,
    paused: () => pausedAt !== null,
    state: (): LineState => ({ paused: pausedAt !== null, paused_at: typeof pausedAt === 'number' ? new Date(pausedAt).toISOString() : null }),
    /** true when this call paused it; false when it was paused already (here or by another station, whose time is kept). */
    async pause(now: number): Promise<boolean> {
      const { numInsertedOrUpdatedRows } = await db
        .insertInto('settings')
        .values({ key: KEY, value: String(now) })
        .onConflict((oc) => oc.column('key').doNothing())
        .executeTakeFirst();
      if (Number(numInsertedOrUpdatedRows) === 1) {
        pausedAt = now;
        return true;
      }
      await refresh();
      return false;
    },
    /** true when this call resumed it; false when it was running already. */
    async resume(): Promise<boolean> {
      const { numDeletedRows } = await db.deleteFrom('settings').where('key', '=', KEY).executeTakeFirst();
      pausedAt = null;
      return Number(numDeletedRows) === 1;
    },
  };
}

export type LineSwitch = ReturnType<typeof createLineSwitch>;
