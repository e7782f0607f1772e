import type { Db } from '../db/open.js';
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

export function createBootEventStore(db: Db) {
  const insert = db.prepare<{ mac: string; at: number; kind: string; ip: string | null; file: string | null }>(
    'INSERT INTO boot_events (mac, at, kind, ip, file) VALUES (@mac, @at, @kind, @ip, @file)',
  );
  const prune = db.prepare<{ mac: string; keep: number }>(`
    DELETE FROM boot_events WHERE mac = @mac AND id <= (
      SELECT id FROM boot_events WHERE mac = @mac ORDER BY id DESC LIMIT 1 OFFSET @keep)`);
  const recent = db.prepare<{ mac: string; limit: number }, BootEventRow>(
    'SELECT * FROM boot_events WHERE mac = @mac ORDER BY id DESC LIMIT @limit',
  );

  return {
    add(event: BootEvent, at: number) {
      insert.run({ mac: event.mac, at, kind: event.kind, ip: event.ip, file: event.file });
      prune.run({ mac: event.mac, keep: KEEP_PER_DEVICE });
    },
    /** Newest first. */
    recent: (mac: string, limit = 50) => recent.all({ mac, limit }),
  };
}

export type BootEventStore = ReturnType<typeof createBootEventStore>;
