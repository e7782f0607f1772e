import type { Db } from '../db/open.js';
import type { BackupRow } from '../backups/store.js';
import { DEVICE_SEARCH_SQL, deviceSearchParams } from '../devices/list-query.js';
import type { DeviceRow } from '../devices/store.js';
import type { JobRow } from '../jobs/store.js';

/** A record's identity: its serial, or its MAC when the device never reported a serial. */
export interface RecordKey {
  keyedBy: 'serial' | 'mac';
  key: string;
}

export interface RecordCursor extends RecordKey {
  firstSeen: number;
}

export interface RecordQuery {
  search?: string;
  cursor?: RecordCursor;
  limit: number;
}

// One row per record: devices grouped by serial, or alone by MAC when they have none.
const GROUPED = `SELECT CASE WHEN serial IS NULL THEN 'mac' ELSE 'serial' END AS keyedBy, coalesce(serial, mac) AS key,
    min(first_seen_at) AS firstSeen FROM devices GROUP BY keyedBy, key`;
// A record matches when any of its devices does: part of a MAC (any separators), IP, serial, model or eMMC CID.
const MATCHING = String.raw`(keyedBy, key) IN (SELECT CASE WHEN serial IS NULL THEN 'mac' ELSE 'serial' END, coalesce(serial, mac) FROM devices
    WHERE ${DEVICE_SEARCH_SQL} OR emmc_cid LIKE @hex ESCAPE '\')`;
const AFTER = '(firstSeen, keyedBy, key) > (@firstSeen, @keyedBy, @key)';

function searchParams(search: string | undefined) {
  const text = search?.trim();
  return text ? deviceSearchParams(text) : undefined;
}

export function createRecordStore(db: Db) {
  const devicesBySerial = db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE serial = ? ORDER BY first_seen_at, mac');
  const deviceByMac = db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE serial IS NULL AND mac = ?');
  const anyByMac = db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE mac = ?');
  const jobsOf = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE device_mac IN (SELECT value FROM json_each(?)) ORDER BY id');
  const backupsOf = db.prepare<[string], BackupRow>('SELECT * FROM backups WHERE device_mac IN (SELECT value FROM json_each(?)) ORDER BY id');
  const statements = new Map<string, ReturnType<Db['prepare']>>();
  const prepared = (sql: string) => {
    let statement = statements.get(sql);
    if (!statement) statements.set(sql, (statement = db.prepare(sql)));
    return statement;
  };

  return {
    /** One page of record keys, oldest first (by the first time any of its MACs was seen). */
    page(query: RecordQuery): { keys: RecordCursor[]; total: number; next: RecordCursor | null } {
      const search = searchParams(query.search);
      const filter = search ? [MATCHING] : [];
      const where = (terms: string[]) => (terms.length ? `WHERE ${terms.join(' AND ')}` : '');
      const params = { ...search, ...(query.cursor ?? {}) };
      const keys = prepared(`SELECT * FROM (${GROUPED}) ${where(query.cursor ? [...filter, AFTER] : filter)} ORDER BY firstSeen, keyedBy, key LIMIT @limit`)
        .all({ ...params, limit: query.limit + 1 }) as RecordCursor[];
      const more = keys.length > query.limit;
      if (more) keys.pop();
      const total = (prepared(`SELECT count(*) AS n FROM (${GROUPED}) ${where(filter)}`).get(search ?? {}) as { n: number }).n;
      return { keys, total, next: more ? keys.at(-1)! : null };
    },
    /** The devices (MACs) of a record. */
    devicesOf: (key: RecordKey): DeviceRow[] => (key.keyedBy === 'serial' ? devicesBySerial.all(key.key) : deviceByMac.all(key.key)),
    /** The record a MAC belongs to, if that MAC is known. */
    keyOfMac(mac: string): RecordKey | undefined {
      const device = anyByMac.get(mac);
      if (!device) return undefined;
      return device.serial === null ? { keyedBy: 'mac', key: device.mac } : { keyedBy: 'serial', key: device.serial };
    },
    jobsOf: (macs: string[]) => jobsOf.all(JSON.stringify(macs)),
    backupsOf: (macs: string[]) => backupsOf.all(JSON.stringify(macs)),
  };
}

export type RecordStore = ReturnType<typeof createRecordStore>;
