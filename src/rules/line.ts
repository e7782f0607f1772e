import type { Db } from '../db/open.js';

const KEY = 'line_paused_at';

export interface LineState {
  paused: boolean;
  /** When the line was paused (ISO time); null while it runs. */
  paused_at: string | null;
}

/**
 * The Pause line switch: while paused no rule orders anything and no queued rule job is handed
 * out (it stays queued, visible). Kept in the settings table, so a restart does not resume a
 * line a person stopped.
 */
export function createLineSwitch(db: Db) {
  const read = db.prepare<[string], { value: string }>('SELECT value FROM settings WHERE key = ?');
  const write = db.prepare<[string, string]>('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  const clear = db.prepare<[string]>('DELETE FROM settings WHERE key = ?');
  // Read on every poll: kept in memory, written through.
  let pausedAt: number | null = read.get(KEY) ? Number(read.get(KEY)!.value) : null;

  return {
    paused: () => pausedAt !== null,
    state: (): LineState => ({ paused: pausedAt !== null, paused_at: pausedAt === null ? null : new Date(pausedAt).toISOString() }),
    /** true when this call paused it (it was running). */
    pause(now: number): boolean {
      if (pausedAt !== null) return false;
      write.run(KEY, String(now));
      pausedAt = now;
      return true;
    },
    /** true when this call resumed it (it was paused). */
    resume(): boolean {
      if (pausedAt === null) return false;
      clear.run(KEY);
      pausedAt = null;
      return true;
    },
  };
}

export type LineSwitch = ReturnType<typeof createLineSwitch>;
