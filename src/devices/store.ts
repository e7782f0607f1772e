import type { Db } from '../db/open.js';

export interface DeviceRow {
  mac: string;
  ip: string | null;
  serial: string | null;
  model: string | null;
  storage_bytes: number | null;
  client_version: string | null;
  first_seen_at: number;
  last_seen_at: number;
}

export interface DeviceFacts {
  mac: string;
  ip: string | null;
  serial?: string | null;
  model?: string | null;
  storageBytes?: number | null;
  clientVersion?: string | null;
}

export function createDeviceStore(db: Db) {
  const upsert = db.prepare<[DeviceFacts & { now: number }]>(`
    INSERT INTO devices (mac, ip, serial, model, storage_bytes, client_version, first_seen_at, last_seen_at)
    VALUES (@mac, @ip, @serial, @model, @storageBytes, @clientVersion, @now, @now)
    ON CONFLICT (mac) DO UPDATE SET
      ip = coalesce(excluded.ip, ip),
      serial = coalesce(excluded.serial, serial),
      model = coalesce(excluded.model, model),
      storage_bytes = coalesce(excluded.storage_bytes, storage_bytes),
      client_version = coalesce(excluded.client_version, client_version),
      last_seen_at = excluded.last_seen_at`);
  const byMac = db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE mac = ?');
  const all = db.prepare<[], DeviceRow>('SELECT * FROM devices ORDER BY first_seen_at, mac');
  const seen = db.prepare<{ mac: string; now: number }>('UPDATE devices SET last_seen_at = @now WHERE mac = @mac');

  return {
    /** Creates the device or refreshes what it told us; facts it did not send are kept. */
    save(facts: DeviceFacts, now: number): DeviceRow {
      upsert.run({
        serial: null,
        model: null,
        storageBytes: null,
        clientVersion: null,
        ...facts,
        now,
      });
      return byMac.get(facts.mac)!;
    },
    get: (mac: string) => byMac.get(mac),
    /** The device did something (a progress report): it is alive. */
    touch: (mac: string, now: number) => seen.run({ mac, now }),
    list: () => all.all(),
  };
}

export type DeviceStore = ReturnType<typeof createDeviceStore>;
