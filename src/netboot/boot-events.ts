import type { Queries } from '../db/database.js';
import type { BootEvent } from './log-parser.js';

export interface BootEventRow {
  id: number;
  mac: string;
  at: number;
  kind: BootEvent['kind'];
  ip: string | null;
  file: string | null;
}

/** Kept per device: enough to read a whole boot (a CM4 asks for ~15 files) several times over. */
const KEEP_PER_DEVICE = 200;

export function createBootEventStore(db: Queries) {
  return {
    /** Stores one event and drops the device's events beyond the newest KEEP_PER_DEVICE. */
    async add(event: BootEvent, at: number): Promise<void> {
      const { mac } = event;
      await db.insertInto('boot_events').values({ mac, at, kind: event.kind, ip: event.ip, file: event.file }).execute();
      // The newest event beyond those kept (none while fewer are stored: NULL, nothing deleted).
      const newestDropped = db.selectFrom('boot_events').select('id').where('mac', '=', mac).orderBy('id', 'desc').limit(1).offset(KEEP_PER_DEVICE);
      await db.deleteFrom('boot_events').where('mac', '=', mac).where('id', '<=', newestDropped).execute();
    },
    /** Newest first. */
    recent: (mac: string, limit = 50) =>
      db.selectFrom('boot_events').selectAll().where('mac', '=', mac).orderBy('id', 'desc').limit(limit).execute() as Promise<BootEventRow[]>,
  };
}

export type BootEventStore = ReturnType<typeof createBootEventStore>;
