import { isIP } from 'node:net';
import type { Clock } from '../shared/clock.js';
import { badRequest, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { normalizeMac } from '../shared/mac.js';
import { plainAddress } from '../shared/network.js';
import type { JobService } from '../jobs/service.js';
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
  active_job: { id: number; kind: string; state: string } | null;
}

export interface DeviceServiceDeps {
  store: DeviceStore;
  jobs: JobService;
  clock: Clock;
  bus: EventBus;
}

export function createDeviceService({ store, jobs, clock, bus }: DeviceServiceDeps) {
  function view(device: DeviceRow): DeviceView {
    const active = jobs.activeFor(device.mac);
    return {
      mac: device.mac,
      ip: device.ip,
      serial: device.serial,
      model: device.model,
      storage_bytes: device.storage_bytes,
      client_version: device.client_version,
      first_seen_at: new Date(device.first_seen_at).toISOString(),
      last_seen_at: new Date(device.last_seen_at).toISOString(),
      active_job: active ? { id: active.id, kind: active.kind, state: active.state } : null,
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
