import { isIP } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Clock } from '../shared/clock.js';
import { badRequest, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { normalizeMac } from '../shared/mac.js';
import { plainAddress } from '../shared/network.js';
import type { JobService } from '../jobs/service.js';
import type { JobView } from '../jobs/view.js';
import { decodeEmmcCid, normalizeEmmcCid, type EmmcIdentity } from '../records/emmc-cid.js';
import type { DeviceQuery } from './list-query.js';
import { createRegistrationLimiter, DEFAULT_REGISTRATION_LIMIT, type RegistrationLimit } from './registration-limit.js';
import type { DeviceRow, DeviceStore } from './store.js';
import type { RegisterBody } from './schemas.js';

export interface DeviceView {
  mac: string;
  ip: string | null;
  serial: string | null;
  model: string | null;
  storage_bytes: number | null;
  client_version: string | null;
  /** The eMMC's CID register, decoded; null until the client reports it (a file target has none). */
  emmc: EmmcIdentity | null;
  first_seen_at: string;
  last_seen_at: string;
  /** Not heard from (poll, registration, progress) for STALE_AFTER_MS: shown as stale, never deleted. */
  stale: boolean;
  /** false for a device seen only by DHCP/TFTP: it netbooted, but no client has spoken yet. */
  registered: boolean;
  /**
   * When its client closed a long-poll before the answer and has not been heard from since (the
   * client exited or lost the network): known at once, where `stale` takes 90 s. Null otherwise.
   */
  client_hung_up_at: string | null;
  /** The station its client last spoke to (several stations share one database); null before stations. */
  station: string | null;
  /** A rule holds it for a person (src/rules/): which rule, and why. */
  rule_hold: { rule: string; reason: string | null } | null;
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

/** A device with no job, no backup and no netboot choice, unseen this long, is forgotten. */
export const DEFAULT_FORGET_UNKNOWN_AFTER_MS = 7 * 24 * 3600_000;
const SWEEP_BATCH = 500;

export interface DeviceServiceDeps {
  store: DeviceStore;
  jobs: JobService;
  clock: Clock;
  bus: EventBus;
  /** New devices per source address and window (register and poll alike). */
  registrationLimit?: RegistrationLimit;
  forgetUnknownAfterMs?: number;
  /** This server's name among the stations sharing the database: a client's device is its now. */
  station?: string;
  /** The rule holding the device for a person, if any. */
  holdsOf?: (macs: string[]) => Promise<Map<string, RuleHold>>;
}

type RuleHold = { rule: string; reason: string | null };

export function createDeviceService(deps: DeviceServiceDeps) {
  const { store, jobs, clock, bus } = deps;
  const limiter = createRegistrationLimiter(deps.registrationLimit ?? DEFAULT_REGISTRATION_LIMIT, clock);
  const forgetAfterMs = deps.forgetUnknownAfterMs ?? DEFAULT_FORGET_UNKNOWN_AFTER_MS;
  const staleBefore = () => clock.now() - STALE_AFTER_MS;
  /** MAC → when its client hung up a parked poll; any later word from it (last_seen_at) outdates it. */
  const hungUp = new Map<string, number>();
  const hungUpAt = (device: DeviceRow) => {
    const at = hungUp.get(device.mac);
    return at !== undefined && at >= device.last_seen_at ? at : null;
  };

  /** Views of a page of devices: their latest jobs, rule holds and images in a few queries, not a few per device. */
  async function viewAll(devices: DeviceRow[]): Promise<DeviceView[]> {
    const macs = devices.map((device) => device.mac);
    const [latest, holds] = await Promise.all([jobs.latestForEach(macs), deps.holdsOf?.(macs)]);
    const views = await jobs.viewAll(latest);
    const latestViews = new Map(latest.map((job, index) => [job.device_mac, views[index]!]));
    return devices.map((device) => view(device, latestViews.get(device.mac) ?? null, holds?.get(device.mac) ?? null));
  }

  function view(device: DeviceRow, latestView: JobView | null, ruleHold: RuleHold | null): DeviceView {
    // A device has at most one active job, and no job can be ordered after it while it is
    // active: the active job, if any, is the latest.
    const active = latestView?.state === 'queued' || latestView?.state === 'running';
    return {
      mac: device.mac,
      ip: device.ip,
      serial: device.serial,
      model: device.model,
      storage_bytes: device.storage_bytes,
      client_version: device.client_version,
      emmc: device.emmc_cid ? decodeEmmcCid(device.emmc_cid) : null,
      first_seen_at: new Date(device.first_seen_at).toISOString(),
      last_seen_at: new Date(device.last_seen_at).toISOString(),
      stale: clock.now() - device.last_seen_at > STALE_AFTER_MS,
      registered: device.registered_at !== null,
      station: device.station,
      rule_hold: ruleHold,
      client_hung_up_at: hungUpAt(device) === null ? null : new Date(hungUpAt(device)!).toISOString(),
      netboot: {
        enabled: device.netboot_enabled === 1,
        stage: device.boot_stage,
        stage_at: device.boot_stage_at === null ? null : new Date(device.boot_stage_at).toISOString(),
      },
      active_job: active ? latestView : null,
      latest_job: latestView,
    };
  }

  async function save(facts: Parameters<DeviceStore['save']>[0]) {
    hungUp.delete(facts.mac);
    const device = await store.save(facts, clock.now());
    bus.emit('device.changed', { mac: device.mac });
    return device;
  }

  return {
    /** One device's view (its latest job, its rule hold). */
    view: async (device: DeviceRow) => (await viewAll([device]))[0]!,
    viewAll,
    /** One page of devices that match, in a stable order; `next` continues it. */
    async page(query: DeviceQuery) {
      const [{ rows, next }, counts] = await Promise.all([store.page(query, staleBefore()), store.counts(query, staleBefore())]);
      return { devices: await viewAll(rows), next, ...counts };
    },
    /** Like page(), without counting: for a page that only tops itself up. */
    rows: async (query: DeviceQuery) => viewAll((await store.page(query, staleBefore())).rows),
    count: (query: Omit<DeviceQuery, 'limit'>) => store.count(query, staleBefore()),
    countSince: (query: Omit<DeviceQuery, 'limit'>, since: number) => store.countSince(query, staleBefore(), since),
    /** Views of just these devices (those that exist), e.g. the holders of DHCP leases. */
    viewsOf: async (macs: string[]) => viewAll(await store.rowsOf(macs)),
    /** The devices among `macs` that still exist, as rows (cheap: no job lookups). */
    rowsOf: (macs: string[]) => store.rowsOf(macs),
    isStale: (device: DeviceRow) => device.last_seen_at < staleBefore(),
    async get(macInput: string): Promise<DeviceRow> {
      const mac = normalizeMac(macInput);
      const device = await store.get(mac);
      if (!device) throw notFound(`no device with MAC ${mac} has registered`);
      return device;
    },

    /** A device announces itself (at every client start). Re-registering refreshes IP and last-seen. */
    async register(body: RegisterBody, sourceIp: string, serverUrl?: string): Promise<DeviceRow> {
      const mac = normalizeMac(body.mac);
      const ip = body.ip?.trim() || plainAddress(sourceIp);
      if (isIP(ip) === 0) throw badRequest(`invalid ip '${body.ip}': expected an IPv4 or IPv6 address`);
      const emmcCid = normalizeEmmcCid(body.emmc_cid);
      // A device the server has not met counts against its source address's share.
      if (!(await store.get(mac))) limiter.admit(plainAddress(sourceIp));
      const device = await save({
        mac,
        ip,
        serial: body.serial?.trim() || null,
        model: body.model?.trim() || null,
        storageBytes: body.storage_bytes ?? null,
        clientVersion: body.client_version?.trim() || null,
        emmcCid,
        station: deps.station ?? null,
      });
      // Before anything is ordered for it: a first-boot hook calls back where the client reached us.
      if (serverUrl) await store.setServerUrl(mac, serverUrl);
      await jobs.deviceRestarted(mac);
      return serverUrl ? (await store.get(mac))! : device;
    },

    /** A poll is a sign of life; a device that polls before registering is registered by it. */
    async seen(macInput: string, sourceIp: string, serverUrl?: string): Promise<DeviceRow> {
      const mac = normalizeMac(macInput);
      const known = await store.get(mac);
      if (!known) limiter.admit(plainAddress(sourceIp));
      const device = await save({ mac, ip: known ? null : plainAddress(sourceIp), station: deps.station ?? null });
      if (!serverUrl || device.server_url === serverUrl) return device;
      await store.setServerUrl(mac, serverUrl);
      return (await store.get(mac))!;
    },

    /** Its client closed a parked poll: shown at once as not polling, until it is heard from again. */
    pollHungUp(mac: string) {
      hungUp.set(mac, clock.now());
      bus.emit('device.changed', { mac });
    },

    /**
     * Forgets devices that only ever registered, polled or netbooted, and were last seen longer
     * ago than the retention: no job, no backup, no netboot choice. Devices with history stay.
     * Works in batches and yields between them, so a sweep of 100,000 does not stall requests.
     */
    async sweepUnknownDevices(): Promise<number> {
      if (forgetAfterMs <= 0) return 0;
      const before = clock.now() - forgetAfterMs;
      let removed = 0;
      for (;;) {
        const macs = await store.sweepUnknown(before, SWEEP_BATCH);
        removed += macs.length;
        for (const mac of macs) {
          hungUp.delete(mac);
          bus.emit('device.changed', { mac });
        }
        if (macs.length < SWEEP_BATCH) return removed;
        await nextTurn();
      }
    },
  };
}

export type DeviceService = ReturnType<typeof createDeviceService>;
