import { sql, type RawBuilder } from 'kysely';
import { inTransaction, type Queries } from '../db/database.js';
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
  /** The station its client last registered or polled at: where its work is served (issue 15). */
  station: string | null;
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
  /** The station it spoke to (a client's word only). */
  station?: string | null;
}

export function createDeviceStore(db: Queries) {
  const byMac = (mac: string) => db.selectFrom('devices').selectAll().where('mac', '=', mac).executeTakeFirst() as Promise<DeviceRow | undefined>;
  const where = (terms: RawBuilder<boolean>[]) => (terms.length ? sql`WHERE ${sql.join(terms, sql` AND `)}` : sql``);

  async function count(terms: RawBuilder<boolean>[]): Promise<number> {
    const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM devices ${where(terms)}`.execute(db);
    return rows[0]!.n;
  }

  /** One page of a filtered list, and the cursor of the page after it. */
  async function page(query: DeviceQuery, staleBefore: number) {
    const cursor = query.cursor ? decodeCursor(query.cursor) : undefined;
    const terms = deviceFilter(query, staleBefore);
    const { rows } = await sql<DeviceRow>`SELECT * FROM devices ${where(cursor ? [...terms, cursorTerm(query.order, cursor)] : terms)}
        ${orderBy(query.order)} LIMIT ${query.limit + 1}`.execute(db);
    const more = rows.length > query.limit;
    if (more) rows.pop();
    const last = rows.at(-1);
    return { rows, next: more && last ? encodeCursor(last.first_seen_at, last.mac) : null };
  }

  /** How many devices match, and how many of them come before the cursor's page. */
  async function counts(query: Omit<DeviceQuery, 'limit'>, staleBefore: number) {
    const terms = deviceFilter(query, staleBefore);
    const cursor = query.cursor ? decodeCursor(query.cursor) : undefined;
    const [total, skipped] = await Promise.all([count(terms), cursor ? count([...terms, cursorTerm(query.order, cursor, true)]) : 0]);
    return { total, skipped };
  }

  return {
    /** Creates the device or refreshes what it told us; facts it did not send are kept. */
    async save(facts: DeviceFacts, now: number): Promise<DeviceRow> {
      const { byClient = true, ...known } = facts;
      return (await db
        .insertInto('devices')
        .values({
          mac: known.mac,
          ip: known.ip,
          serial: known.serial ?? null,
          model: known.model ?? null,
          storage_bytes: known.storageBytes ?? null,
          client_version: known.clientVersion ?? null,
          emmc_cid: known.emmcCid ?? null,
          first_seen_at: now,
          last_seen_at: now,
          registered_at: byClient ? now : null,
          station: byClient ? (known.station ?? null) : null,
        })
        .onConflict((conflict) =>
          conflict.column('mac').doUpdateSet((eb) => ({
            ip: eb.fn.coalesce('excluded.ip', 'devices.ip'),
            serial: eb.fn.coalesce('excluded.serial', 'devices.serial'),
            model: eb.fn.coalesce('excluded.model', 'devices.model'),
            storage_bytes: eb.fn.coalesce('excluded.storage_bytes', 'devices.storage_bytes'),
            client_version: eb.fn.coalesce('excluded.client_version', 'devices.client_version'),
            emmc_cid: eb.fn.coalesce('excluded.emmc_cid', 'devices.emmc_cid'),
            last_seen_at: eb.ref('excluded.last_seen_at'),
            registered_at: eb.fn.coalesce('excluded.registered_at', 'devices.registered_at'),
            station: eb.fn.coalesce('excluded.station', 'devices.station'),
          })),
        )
        .returningAll()
        .executeTakeFirstOrThrow()) as DeviceRow;
    },
    get: byMac,
    /** The device did something (a progress report): it is alive. */
    touch: (mac: string, now: number) => db.updateTable('devices').set({ last_seen_at: now }).where('mac', '=', mac).execute(),
    setServerUrl: (mac: string, url: string) =>
      db.updateTable('devices').set({ server_url: url }).where('mac', '=', mac).where(sql<boolean>`server_url IS DISTINCT FROM ${url}`).execute(),
    setNetboot: async (mac: string, enabled: boolean) =>
      Number((await db.updateTable('devices').set({ netboot_enabled: enabled ? 1 : 0 }).where('mac', '=', mac).executeTakeFirst()).numUpdatedRows) === 1,
    setBootStage: (mac: string, text: string, at: number) =>
      db
        .updateTable('devices')
        .set({ boot_stage: text, boot_stage_at: at, last_seen_at: sql`CASE WHEN last_seen_at > ${at} THEN last_seen_at ELSE ${at} END` })
        .where('mac', '=', mac)
        .execute(),
    netbootDisabled: async () => (await db.selectFrom('devices').select('mac').where('netboot_enabled', '=', 0).execute()).map((row) => row.mac),
    page,
    counts,
    count: (query: Omit<DeviceQuery, 'limit'>, staleBefore: number) => count(deviceFilter(query, staleBefore)),
    /** How many devices that match were first seen at or after `since` (new to a page opened then). */
    countSince: (query: Omit<DeviceQuery, 'limit'>, staleBefore: number, since: number) =>
      count([...deviceFilter(query, staleBefore), sql<boolean>`first_seen_at >= ${since}`]),
    /** The rows of these MACs that still exist (at most a page of them). */
    rowsOf: async (macs: string[]) =>
      macs.length === 0 ? [] : ((await db.selectFrom('devices').selectAll().where('mac', 'in', macs).execute()) as DeviceRow[]),
    /**
     * Deletes up to `batch` devices that have no history and were last seen before `before`;
     * returns their MACs. The DELETE checks the conditions itself, so a device that got a job
     * (on any station) since it was picked is kept.
     */
    sweepUnknown: (before: number, batch: number): Promise<string[]> =>
      inTransaction(db, async (tx) => {
        // Never had a job or a backup (both keep their device by foreign key), netboot policy untouched.
        const forgettable = (query: typeof tx) =>
          query
            .selectFrom('devices')
            .select('mac')
            .where('last_seen_at', '<', before)
            .where('netboot_enabled', '=', 1)
            .where('mac', 'not in', (eb) => eb.selectFrom('jobs').select('device_mac'))
            .where('mac', 'not in', (eb) => eb.selectFrom('backups').select('device_mac'));
        const picked = (await forgettable(tx).limit(batch).execute()).map((row) => row.mac);
        if (picked.length === 0) return [];
        const gone = await tx
          .deleteFrom('devices')
          .where('mac', 'in', picked)
          .where('mac', 'in', forgettable(tx))
          .returning('mac')
          .execute();
        const macs = gone.map((row) => row.mac);
        if (macs.length > 0) await tx.deleteFrom('boot_events').where('mac', 'in', macs).execute();
        return macs;
      }),
  };
}

export type DeviceStore = ReturnType<typeof createDeviceStore>;
