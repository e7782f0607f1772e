import type { Db } from '../db/open.js';
import { cursorTerm, decodeCursor, deviceFilter, encodeCursor, orderBy, type DeviceQuery } from './list-query.js';

export interface DeviceRow {
  mac: string;
  ip: string | null;
  serial: string | null;
  model: string | null;
  storage_bytes: number | null;
  client_version: string | null;
  first_seen_at: number;
  last_seen_at: number;
  /** 0: its MAC gets no PXE offer, so it boots from eMMC (see netboot/). */
  netboot_enabled: number;
  boot_stage: string | null;
  boot_stage_at: number | null;
  /** When its provisioning client last registered; null if only DHCP/TFTP have seen it. */
  registered_at: number | null;
  /** The eMMC's CID register, 32 lower-case hex digits; null until a client reports it. */
  emmc_cid: string | null;
  /** The base URL its client last reached this server at (register or poll); see src/first-boot/. */
  server_url: string | null;
}

export interface DeviceFacts {
  mac: string;
  ip: string | null;
  serial?: string | null;
  model?: string | null;
  storageBytes?: number | null;
  clientVersion?: string | null;
  emmcCid?: string | null;
  /** A provisioning client spoke (registration or poll); false for a device seen only at boot. */
  byClient?: boolean;
}

export function createDeviceStore(db: Db) {
  const upsert = db.prepare<[Omit<DeviceFacts, 'byClient'> & { now: number; registeredAt: number | null }]>(`
    INSERT INTO devices (mac, ip, serial, model, storage_bytes, client_version, emmc_cid, first_seen_at, last_seen_at, registered_at)
    VALUES (@mac, @ip, @serial, @model, @storageBytes, @clientVersion, @emmcCid, @now, @now, @registeredAt)
    ON CONFLICT (mac) DO UPDATE SET
      ip = coalesce(excluded.ip, ip),
      serial = coalesce(excluded.serial, serial),
      model = coalesce(excluded.model, model),
      storage_bytes = coalesce(excluded.storage_bytes, storage_bytes),
      client_version = coalesce(excluded.client_version, client_version),
      emmc_cid = coalesce(excluded.emmc_cid, emmc_cid),
      last_seen_at = excluded.last_seen_at,
      registered_at = coalesce(excluded.registered_at, registered_at)`);
  const byMac = db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE mac = ?');
  const seen = db.prepare<{ mac: string; now: number }>('UPDATE devices SET last_seen_at = @now WHERE mac = @mac');
  const serverUrl = db.prepare<{ mac: string; url: string }>('UPDATE devices SET server_url = @url WHERE mac = @mac AND server_url IS NOT @url');
  const netboot = db.prepare<{ mac: string; enabled: number }>('UPDATE devices SET netboot_enabled = @enabled WHERE mac = @mac');
  const stage = db.prepare<{ mac: string; stage: string; at: number }>(
    'UPDATE devices SET boot_stage = @stage, boot_stage_at = @at, last_seen_at = max(last_seen_at, @at) WHERE mac = @mac',
  );
  const withNetbootOff = db.prepare<[], { mac: string }>('SELECT mac FROM devices WHERE netboot_enabled = 0');
  const byMacs = db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE mac IN (SELECT value FROM json_each(?))');
  // Never had a job or a backup (both keep their device by foreign key), netboot policy untouched.
  const unknownBefore = db.prepare<{ before: number; batch: number }, { mac: string }>(`
    SELECT mac FROM devices WHERE last_seen_at < @before AND netboot_enabled = 1
      AND mac NOT IN (SELECT device_mac FROM jobs) AND mac NOT IN (SELECT device_mac FROM backups)
    LIMIT @batch`);
  const forgetEvents = db.prepare<[string]>('DELETE FROM boot_events WHERE mac IN (SELECT value FROM json_each(?))');
  const forget = db.prepare<[string]>('DELETE FROM devices WHERE mac IN (SELECT value FROM json_each(?))');
  const sweepBatch = db.transaction((before: number, batch: number) => {
    const macs = unknownBefore.all({ before, batch }).map((row) => row.mac);
    forgetEvents.run(JSON.stringify(macs));
    forget.run(JSON.stringify(macs));
    return macs;
  });
  const statements = new Map<string, ReturnType<Db['prepare']>>();
  const prepared = (sql: string) => {
    let statement = statements.get(sql);
    if (!statement) statements.set(sql, (statement = db.prepare(sql)));
    return statement;
  };

  function filtered(query: Omit<DeviceQuery, 'limit'>, staleBefore: number) {
    const { terms, params } = deviceFilter(query, staleBefore);
    const where = (extra: string[]) => (terms.length + extra.length ? `WHERE ${[...terms, ...extra].join(' AND ')}` : '');
    const count = (extra: string[], values: Record<string, number | string> = {}) =>
      (prepared(`SELECT count(*) AS n FROM devices ${where(extra)}`).get({ ...params, ...values }) as { n: number }).n;
    return { where, params, count };
  }

  /** One page of a filtered list, and the cursor of the page after it. */
  function page(query: DeviceQuery, staleBefore: number) {
    const { where, params } = filtered(query, staleBefore);
    const cursor = query.cursor ? decodeCursor(query.cursor) : undefined;
    const at = cursor ? { cursorFirst: cursor.firstSeen, cursorMac: cursor.mac } : {};
    const rows = prepared(`SELECT * FROM devices ${where(cursor ? [cursorTerm(query.order)] : [])} ${orderBy(query.order)} LIMIT @limit`)
      .all({ ...params, ...at, limit: query.limit + 1 }) as DeviceRow[];
    const more = rows.length > query.limit;
    if (more) rows.pop();
    const last = rows.at(-1);
    return { rows, next: more && last ? encodeCursor(last.first_seen_at, last.mac) : null };
  }

  /** How many devices match, and how many of them come before the cursor's page. */
  function counts(query: Omit<DeviceQuery, 'limit'>, staleBefore: number) {
    const { count } = filtered(query, staleBefore);
    const cursor = query.cursor ? decodeCursor(query.cursor) : undefined;
    const skipped = cursor ? count([cursorTerm(query.order, true)], { cursorFirst: cursor.firstSeen, cursorMac: cursor.mac }) : 0;
    return { total: count([]), skipped };
  }

  return {
    /** Creates the device or refreshes what it told us; facts it did not send are kept. */
    save(facts: DeviceFacts, now: number): DeviceRow {
      const { byClient = true, ...known } = facts;
      upsert.run({
        serial: null,
        model: null,
        storageBytes: null,
        clientVersion: null,
        emmcCid: null,
        ...known,
        registeredAt: byClient ? now : null,
        now,
      });
      return byMac.get(facts.mac)!;
    },
    get: (mac: string) => byMac.get(mac),
    /** The device did something (a progress report): it is alive. */
    touch: (mac: string, now: number) => seen.run({ mac, now }),
    setServerUrl: (mac: string, url: string) => serverUrl.run({ mac, url }),
    setNetboot: (mac: string, enabled: boolean) => netboot.run({ mac, enabled: enabled ? 1 : 0 }).changes === 1,
    setBootStage: (mac: string, text: string, at: number) => stage.run({ mac, stage: text, at }),
    netbootDisabled: () => withNetbootOff.all().map((row) => row.mac),
    page,
    counts,
    count: (query: Omit<DeviceQuery, 'limit'>, staleBefore: number) => filtered(query, staleBefore).count([]),
    /** How many devices that match were first seen at or after `since` (new to a page opened then). */
    countSince: (query: Omit<DeviceQuery, 'limit'>, staleBefore: number, since: number) =>
      filtered(query, staleBefore).count(['first_seen_at >= @since'], { since }),
    /** The rows of these MACs that still exist (at most a page of them). */
    rowsOf: (macs: string[]) => byMacs.all(JSON.stringify(macs)),
    /**
     * Deletes up to `batch` devices that have no history and were last seen before `before`;
     * returns their MACs. None once shutdown has closed the database under a running sweep.
     */
    sweepUnknown: (before: number, batch: number): string[] => (db.open ? sweepBatch(before, batch) : []),
  };
}

export type DeviceStore = ReturnType<typeof createDeviceStore>;
