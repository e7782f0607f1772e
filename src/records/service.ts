import type { JobService } from '../jobs/service.js';
import { badRequest, notFound } from '../shared/errors.js';
import { normalizeMac } from '../shared/mac.js';
import type { RecordCursor, RecordKey, RecordStore } from './store.js';
import { toDeviceRecord, type DeviceRecord } from './view.js';

export const DEFAULT_RECORD_PAGE = 100;
export const MAX_RECORD_PAGE = 500;

/** Cursors read like `1717171717171.s.MTAwMDAwMDBjMGZmZWUwMQ`: first seen, key kind, key (base64url). */
export function encodeRecordCursor(cursor: RecordCursor): string {
  return `${cursor.firstSeen}.${cursor.keyedBy === 'serial' ? 's' : 'm'}.${Buffer.from(cursor.key).toString('base64url')}`;
}

export function decodeRecordCursor(text: string): RecordCursor {
  const match = /^(\d{1,16})\.([sm])\.([A-Za-z0-9_-]{1,200})$/.exec(text);
  if (!match) throw badRequest(`invalid cursor '${text.slice(0, 40)}': pass the 'next' value of the page before`);
  return { firstSeen: Number(match[1]), keyedBy: match[2] === 's' ? 'serial' : 'mac', key: Buffer.from(match[3]!, 'base64url').toString() };
}

/** Device records: one per device (its serial, or its MAC), with every job and backup of every MAC it used. */
export function createRecordService(deps: { store: RecordStore; jobs: JobService }) {
  const { store, jobs } = deps;

  async function build(key: RecordKey): Promise<DeviceRecord | undefined> {
    const devices = await store.devicesOf(key);
    if (devices.length === 0) return undefined;
    const macs = devices.map((device) => device.mac);
    const [jobRows, backups] = await Promise.all([store.jobsOf(macs), store.backupsOf(macs)]);
    return toDeviceRecord(key, devices, await jobs.viewAll(jobRows), backups);
  }
  const buildAll = async (keys: RecordKey[]) => (await Promise.all(keys.map(build))).flatMap((record) => record ?? []);

  return {
    /** One page of records matching `search`, oldest first; `next` continues it. */
    async page(query: { search?: string; cursor?: string; limit?: number }) {
      const cursor = query.cursor ? decodeRecordCursor(query.cursor) : undefined;
      const { keys, total, next } = await store.page({ search: query.search, cursor, limit: query.limit ?? DEFAULT_RECORD_PAGE });
      return { records: await buildAll(keys), total, next: next ? encodeRecordCursor(next) : null };
    },
    /** Every record matching `search`, a page at a time from the database (for an export). */
    async all(search?: string): Promise<DeviceRecord[]> {
      const all: DeviceRecord[] = [];
      let cursor: RecordCursor | undefined;
      do {
        const page = await store.page({ search, cursor, limit: MAX_RECORD_PAGE });
        all.push(...(await buildAll(page.keys)));
        cursor = page.next ?? undefined;
      } while (cursor);
      return all;
    },
    /** The record of a serial, or of the device with this MAC (under its serial when it has one). */
    async get(key: string): Promise<DeviceRecord> {
      const bySerial = await build({ keyedBy: 'serial', key });
      if (bySerial) return bySerial;
      let mac: string | undefined;
      try {
        mac = normalizeMac(key);
      } catch {
        // Not a MAC either: not found, below.
      }
      const found = mac === undefined ? undefined : await store.keyOfMac(mac);
      const record = found && (await build(found));
      if (!record) throw notFound(`no device record for '${key.slice(0, 64)}': give a device's serial or one of its MACs`);
      return record;
    },
  };
}

export type RecordService = ReturnType<typeof createRecordService>;
