import type { Queries } from '../db/database.js';

export interface StationRow {
  name: string;
  /** Where the other stations reach it (--station-url); null when it gave none. */
  url: string | null;
  started_at: number;
  last_seen_at: number;
}

/** The stations that share this database (migration 0020). */
export function createStationStore(db: Queries) {
  return {
    /** This station started (or restarted): its row, created or refreshed. */
    announce: (name: string, url: string | null, now: number) =>
      db
        .insertInto('stations')
        .values({ name, url, started_at: now, last_seen_at: now })
        .onConflict((conflict) => conflict.column('name').doUpdateSet({ url, started_at: now, last_seen_at: now }))
        .execute(),
    /** It is alive: the others see it as up while this is recent. */
    heartbeat: (name: string, now: number) => db.updateTable('stations').set({ last_seen_at: now }).where('name', '=', name).execute(),
    list: () => db.selectFrom('stations').selectAll().orderBy('name').execute() as Promise<StationRow[]>,
    get: (name: string) => db.selectFrom('stations').selectAll().where('name', '=', name).executeTakeFirst() as Promise<StationRow | undefined>,
  };
}

export type StationStore = ReturnType<typeof createStationStore>;
