import { mkdirSync, writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Db } from '../db/open.js';
import type { DeviceStore } from '../devices/store.js';
import { guarded } from '../shared/background.js';
import type { Clock } from '../shared/clock.js';
import type { EventBus } from '../shared/events.js';
import { createBootEventStore } from './boot-events.js';
import { dnsmasqPaths, renderDnsmasqConfig } from './dnsmasq-config.js';
import { createLeaseBook, readLeases } from './leases.js';
import { createLogParser, describeBootEvent, type BootEvent } from './log-parser.js';
import { createPolicyFiles } from './policy-files.js';
import { inSubnet, type NetbootSettings } from './settings.js';
import { createDnsmasqSupervisor, type DnsmasqStatus } from './supervisor.js';
import { tailFile } from './tail.js';

export interface NetbootStatus {
  enabled: boolean;
  mode?: NetbootSettings['mode'];
  interface?: string;
  address?: string;
  subnet?: string;
  range?: string | null;
  proxy?: boolean;
  tftp_root?: string;
  config_file?: string;
  non_pi_clients?: NetbootSettings['nonPiClients'];
  /** The supervised dnsmasq (managed mode only). */
  dnsmasq?: DnsmasqStatus | null;
}

export interface NetbootDeps {
  settings: NetbootSettings | undefined;
  db: Db;
  devices: DeviceStore;
  bus: EventBus;
  clock: Clock;
  log: Logger;
}

/**
 * The provisioning LAN's DHCP and TFTP: writes dnsmasq's config, runs dnsmasq (managed) or
 * follows its log (external), turns its log into per-device boot stages, and keeps each
 * device's boot policy in dnsmasq's hosts dir. Without --netboot-interface it only keeps the
 * policy in the database.
 */
export function createNetbootService(deps: NetbootDeps) {
  const { settings, db, devices, bus, clock, log } = deps;
  const events = createBootEventStore(db);
  const paths = settings && dnsmasqPaths(settings);
  const parser = settings && createLogParser(settings.tftpRoot);
  const policy = paths && createPolicyFiles(paths.hostsDir);
  let stopTail: (() => void) | undefined;

  function record(event: BootEvent) {
    const known = devices.get(event.mac);
    // Other hosts on the LAN are only in the lease list; a Pi becomes a device at its first boot.
    if (!known && !event.raspberryPi) return;
    const now = clock.now();
    if (!known || (event.kind === 'dhcp-ack' && event.ip)) devices.save({ mac: event.mac, ip: event.ip, byClient: false }, now);
    events.add(event, now);
    devices.setBootStage(event.mac, describeBootEvent(event), now);
    bus.emit('device.changed', { mac: event.mac });
  }

  // dnsmasq's lines arrive outside any request: a database error in recording one is logged, not fatal.
  const onLine = guarded(log, "recording dnsmasq's boot events", (line: string) => {
    const event = parser?.parse(line);
    if (event) record(event);
  });

  const supervisor =
    settings?.mode === 'managed'
      ? createDnsmasqSupervisor({
          command: settings.dnsmasqPath,
          args: [`--conf-file=${paths!.config}`, '--no-daemon'],
          log: log.child({ process: 'dnsmasq' }),
          clock,
          onLine,
          onChange: () => bus.emit('netboot.changed', {}),
        })
      : undefined;

  return {
    settings,
    start() {
      if (!settings || !paths) return;
      mkdirSync(settings.stateDir, { recursive: true });
      mkdirSync(settings.tftpRoot, { recursive: true });
      writeFileSync(paths.config, renderDnsmasqConfig(settings));
      policy!.sync(devices.netbootDisabled());
      // TFTP lines name only an IP: teach the parser the addresses leased before this start.
      for (const lease of readLeases(paths.leases)) parser!.learn(lease.ip, lease.mac, devices.get(lease.mac) !== undefined);
      if (supervisor) supervisor.start();
      else stopTail = tailFile(paths.log, onLine);
      log.info({ mode: settings.mode, interface: settings.interface, config: paths.config }, 'netboot (DHCP + TFTP) on');
    },
    async stop() {
      stopTail?.();
      await supervisor?.stop();
    },
    status(): NetbootStatus {
      if (!settings || !paths) return { enabled: false };
      return {
        enabled: true,
        mode: settings.mode,
        interface: settings.interface,
        address: settings.address,
        subnet: `${settings.network}/${settings.prefix}`,
        range: settings.range ? `${settings.range.first}-${settings.range.last}` : null,
        proxy: settings.proxy,
        tftp_root: settings.tftpRoot,
        config_file: paths.config,
        non_pi_clients: settings.nonPiClients,
        dnsmasq: supervisor?.status() ?? null,
      };
    },
    leases: () => (paths ? readLeases(paths.leases) : []),
    /** Which MAC holds which address, when this server hands out the addresses (not in proxy mode). */
    leaseBook: paths && settings && !settings.proxy ? createLeaseBook(paths.leases, inSubnet(settings)) : undefined,
    bootEvents: (mac: string, limit?: number) => events.recent(mac, limit),
    /** Lets a device netboot again, or sends it to its eMMC next boot (no PXE offer). */
    setNetboot(mac: string, enabled: boolean) {
      if (!devices.setNetboot(mac, enabled)) return false;
      policy?.apply(mac, enabled);
      bus.emit('device.changed', { mac });
      return true;
    },
  };
}

export type NetbootService = ReturnType<typeof createNetbootService>;
