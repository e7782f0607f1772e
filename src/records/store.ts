import { sql, type RawBuilder } from 'kysely';
import type { BackupRow } from '../backups/store.js';
import type { Queries } from '../db/database.js';
import { deviceSearchCondition, deviceSearchParams } from '../devices/list-query.js';
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

// One row per record: devices grouped by serial, or alone by MAC when they have none. The
// camel-case names are quoted: PostgreSQL folds unquoted names to lower case.
const KEYED_BY = sql`CASE WHEN serial IS NULL THEN 'mac' ELSE 'serial' END`;
const GROUPED = sql`SELECT ${KEYED_BY} AS "keyedBy", coalesce(serial, mac) AS key, min(first_seen_at) AS "firstSeen"
    FROM devices GROUP BY ${KEYED_BY}, coalesce(serial, mac)`;

/** A record matches when any of its devices does: part of a MAC (any separators), IP, serial, model or eMMC CID. */
function matching(search: { like: string; hex: string }): RawBuilder<boolean> {
  return sql<boolean>`("keyedBy", key) IN (SELECT ${KEYED_BY}, coalesce(serial, mac) FROM devices
    WHERE ${deviceSearchCondition(search)} OR lower(emmc_cid) LIKE lower(${search.hex}) ESCAPE '\\')`;
}

const after = (cursor: RecordCursor) => sql<boolean>`("firstSeen", "keyedBy", key) > (${cursor.firstSeen}, ${cursor.keyedBy}, ${cursor.key})`;

const where = (terms: RawBuilder<boolean>[]) => (terms.length ? sql`WHERE ${sql.join(terms, sql` AND `)}` : sql``);

export function createRecordStore(db: Queries) {
  const devicesOfMacs = <T>(table: 'jobs' | 'backups', macs: string[]) =>
    macs.length === 0 ? Promise.resolve([] as T[]) : (db.selectFrom(table).selectAll().where('device_mac', 'in', macs).orderBy('id').execute() as Promise<T[]>);

  return {
    /** One page of record keys, oldest first (by the first time any of its MACs was seen). */
    async page(query: RecordQuery): Promise<{ keys: RecordCursor[]; total: number; next: RecordCursor | null }> {
      const text = query.search?.trim();
      const filter = text ? [matching(deviceSearchParams(text))] : [];
      const terms = query.cursor ? [...filter, after(query.cursor)] : filter;
      const { rows: keys } = await sql<RecordCursor>`SELECT * FROM (${GROUPED}) AS records ${where(terms)}
          ORDER BY "firstSeen", "keyedBy", key LIMIT ${query.limit + 1}`.execute(db);
      const more = keys.length > query.limit;
      if (more) keys.pop();
      const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM (${GROUPED}) AS records ${where(filter)}`.execute(db);
      return { keys, total: rows[0]!.n, next: more ? keys.at(-1)! : null };
    },
    /** The devices (MACs) of a record. */
    devicesOf: (key: RecordKey): Promise<DeviceRow[]> =>
      (key.keyedBy === 'serial'
        ? db.selectFrom('devices').selectAll().where('serial', '=', key.key).orderBy('first_seen_at').orderBy('mac')
        : db.selectFrom('devices').selectAll().where('serial', 'is', null).where('mac', '=', key.key)
      ).execute() as Promise<DeviceRow[]>,
    /** The record a MAC belongs to, if that MAC is known. */
    async keyOfMac(mac: string): Promise<RecordKey | undefined> {
      const device = await db.selectFrom('devices').select(['mac', 'serial']).where('mac', '=', mac).executeTakeFirst();
      if (!device) return undefined;
      return device.serial === null ? { keyedBy: 'mac', key: device.mac } : { keyedBy: 'serial', key: device.serial };
    },
    jobsOf: (macs: string[]) => devicesOfMacs<JobRow>('jobs', macs),
    backupsOf: (macs: string[]) => devicesOfMacs<BackupRow>('backups', macs),
  };
}

export type RecordStore = ReturnType<typeof createRecordStore>;
