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
  /** 0: its MAC gets no PXE offer, so it boots from eMMC (see netboot/). */
  netboot_enabled: number;
  boot_stage: string | null;
  boot_stage_at: number | null;
  /** When its provisioning client last registered; null if only DHCP/TFTP have seen it. */
  registered_at: number | null;
}

export interface DeviceFacts {
  mac: string;
  ip: string | null;
  serial?: string | null;
  model?: string | null;
  storageBytes?: number | null;
  clientVersion?: string | null;
  /** A provisioning client spoke (registration or poll); false for a device seen only at boot. */
  byClient?: boolean;
}

export function createDeviceStore(db: Db) {
  const upsert = db.prepare<[Omit<DeviceFacts, 'byClient'> & { now: number; registeredAt: number | null }]>(`
    INSERT INTO devices (mac, ip, serial, model, storage_bytes, client_version, first_seen_at, last_seen_at, registered_at)
    VALUES (@mac, @ip, @serial, @model, @storageBytes, @clientVersion, @now, @now, @registeredAt)
    ON CONFLICT (mac) DO UPDATE SET
      ip = coalesce(excluded.ip, ip),
      serial = coalesce(excluded.serial, serial),
      model = coalesce(excluded.model, model),
      storage_bytes = coalesce(excluded.storage_bytes, storage_bytes),
      client_version = coalesce(excluded.client_version, client_version),
      last_seen_at = excluded.last_seen_at,
      registered_at = coalesce(excluded.registered_at, registered_at)`);
  const byMac = db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE mac = ?');
  const all = db.prepare<[], DeviceRow>('SELECT * FROM devices ORDER BY first_seen_at, mac');
  const seen = db.prepare<{ mac: string; now: number }>('UPDATE devices SET last_seen_at = @now WHERE mac = @mac');
  const netboot = db.prepare<{ mac: string; enabled: number }>('UPDATE devices SET netboot_enabled = @enabled WHERE mac = @mac');
  const stage = db.prepare<{ mac: string; stage: string; at: number }>(
    'UPDATE devices SET boot_stage = @stage, boot_stage_at = @at, last_seen_at = max(last_seen_at, @at) WHERE mac = @mac',
  );
  const withNetbootOff = db.prepare<[], { mac: string }>('SELECT mac FROM devices WHERE netboot_enabled = 0');

  return {
    /** Creates the device or refreshes what it told us; facts it did not send are kept. */
    save(facts: DeviceFacts, now: number): DeviceRow {
      const { byClient = true, ...known } = facts;
      upsert.run({
        serial: null,
        model: null,
        storageBytes: null,
        clientVersion: null,
        ...known,
        registeredAt: byClient ? now : null,
        now,
      });
      return byMac.get(facts.mac)!;
    },
    get: (mac: string) => byMac.get(mac),
    /** The device did something (a progress report): it is alive. */
    touch: (mac: string, now: number) => seen.run({ mac, now }),
    setNetboot: (mac: string, enabled: boolean) => netboot.run({ mac, enabled: enabled ? 1 : 0 }).changes === 1,
    setBootStage: (mac: string, text: string, at: number) => stage.run({ mac, stage: text, at }),
    netbootDisabled: () => withNetbootOff.all().map((row) => row.mac),
    list: () => all.all(),
  };
}

export type DeviceStore = ReturnType<typeof createDeviceStore>;
