import { isIP } from 'node:net';
import type { Clock } from '../shared/clock.js';
import { badRequest, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { normalizeMac } from '../shared/mac.js';
import { plainAddress } from '../shared/network.js';
import type { JobService } from '../jobs/service.js';
import type { JobView } from '../jobs/view.js';
import type { DeviceRow, DeviceStore } from './store.js';
import type { RegisterBody } from './schemas.js';

export interface DeviceView {
  mac: string;
  ip: string | null;
  serial: string | null;
  model: string | null;
  storage_bytes: number | null;
  client_version: string | null;
  first_seen_at: string;
  last_seen_at: string;
  /** Not heard from (poll, registration, progress) for STALE_AFTER_MS: shown as stale, never deleted. */
  stale: boolean;
  /** false for a device seen only by DHCP/TFTP: it netbooted, but no client has spoken yet. */
  registered: boolean;
  netboot: {
    /** false: its MAC gets no PXE offer, so it boots from its eMMC. */
    enabled: boolean;
    /** The last thing dnsmasq saw it do, in words ("loaded kernel8.img"). */
    stage: string | null;
    stage_at: string | null;
  };
  active_job: JobView | null;
  /** The most recent job, active or ended: what the dashboard shows for the device. */
  latest_job: JobView | null;
}

/** Three missed 30 s long-polls. A device busy with a job reports progress every ~2 s instead. */
export const STALE_AFTER_MS = 90_000;

export interface DeviceServiceDeps {
  store: DeviceStore;
  jobs: JobService;
  clock: Clock;
  bus: EventBus;
}

export function createDeviceService({ store, jobs, clock, bus }: DeviceServiceDeps) {
  function view(device: DeviceRow): DeviceView {
    const active = jobs.activeFor(device.mac);
    const latest = jobs.latestFor(device.mac);
    return {
      mac: device.mac,
      ip: device.ip,
      serial: device.serial,
      model: device.model,
      storage_bytes: device.storage_bytes,
      client_version: device.client_version,
      first_seen_at: new Date(device.first_seen_at).toISOString(),
      last_seen_at: new Date(device.last_seen_at).toISOString(),
      stale: clock.now() - device.last_seen_at > STALE_AFTER_MS,
      registered: device.registered_at !== null,
      netboot: {
        enabled: device.netboot_enabled === 1,
        stage: device.boot_stage,
        stage_at: device.boot_stage_at === null ? null : new Date(device.boot_stage_at).toISOString(),
      },
      active_job: active ? jobs.view(active) : null,
      latest_job: latest ? jobs.view(latest) : null,
    };
  }

  function save(facts: Parameters<DeviceStore['save']>[0]) {
    const device = store.save(facts, clock.now());
    bus.emit('device.changed', { mac: device.mac });
    return device;
  }

  return {
    view,
    list: () => store.list().map(view),
    get(macInput: string): DeviceRow {
      const mac = normalizeMac(macInput);
      const device = store.get(mac);
      if (!device) throw notFound(`no device with MAC ${mac} has registered`);
      return device;
    },

    /** A device announces itself (at every client start). Re-registering refreshes IP and last-seen. */
    register(body: RegisterBody, sourceIp: string): DeviceRow {
      const mac = normalizeMac(body.mac);
      const ip = body.ip?.trim() || plainAddress(sourceIp);
      if (isIP(ip) === 0) throw badRequest(`invalid ip '${body.ip}': expected an IPv4 or IPv6 address`);
      const device = save({
        mac,
        ip,
        serial: body.serial?.trim() || null,
        model: body.model?.trim() || null,
        storageBytes: body.storage_bytes ?? null,
        clientVersion: body.client_version?.trim() || null,
      });
      jobs.deviceRestarted(mac);
      return device;
    },

    /** A poll is a sign of life; a device that polls before registering is registered by it. */
    seen(macInput: string, sourceIp: string): DeviceRow {
      const mac = normalizeMac(macInput);
      const known = store.get(mac);
      return save({ mac, ip: known ? null : plainAddress(sourceIp) });
    },
  };
}

export type DeviceService = ReturnType<typeof createDeviceService>;
