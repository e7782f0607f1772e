import { mkdirSync, writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Queries } from '../db/database.js';
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
  db: Queries;
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
  // Each line's writes wait for the previous line's: boot events get their ids, and a device its
  // boot stage, in the order dnsmasq logged them, though every write is async.
  const lines = oneAtATime();
  // A device's policy is written to the database, then to its file: one change at a time, so the
  // file ends as the database does; start-up's sync takes its turn too.
  const policyChanges = oneAtATime();
  /** MAC → the policy this station last wrote to its file (another station's change is followed only when it differs). */
  const applied = new Map<string, boolean>();

  async function record(event: BootEvent) {
    const known = await devices.get(event.mac);
    // Other hosts on the LAN are only in the lease list; a Pi becomes a device at its first boot.
    if (!known && !event.raspberryPi) return;
    const now = clock.now();
    if (!known || (event.kind === 'dhcp-ack' && event.ip)) await devices.save({ mac: event.mac, ip: event.ip, byClient: false }, now);
    await events.add(event, now);
    await devices.setBootStage(event.mac, describeBootEvent(event), now);
    bus.emit('device.changed', { mac: event.mac });
  }

  // dnsmasq's lines arrive outside any request: a database error in recording one is logged, not
  // fatal. Parsing stays synchronous, in line order (a DHCP ack teaches the parser an address).
  const onLine = guarded(log, "recording dnsmasq's boot events", (line: string) => {
    const event = parser?.parse(line);
    if (event) return lines.run(() => record(event));
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
    async start() {
      if (!settings || !paths) return;
      mkdirSync(settings.stateDir, { recursive: true });
      mkdirSync(settings.tftpRoot, { recursive: true });
      writeFileSync(paths.config, renderDnsmasqConfig(settings));
      await policyChanges.run(async () => policy!.sync(await devices.netbootDisabled()));
      // TFTP lines name only an IP: teach the parser the addresses leased before this start.
      for (const lease of readLeases(paths.leases)) parser!.learn(lease.ip, lease.mac, (await devices.get(lease.mac)) !== undefined);
      if (supervisor) supervisor.start();
      else stopTail = tailFile(paths.log, onLine);
      log.info({ mode: settings.mode, interface: settings.interface, config: paths.config }, 'netboot (DHCP + TFTP) on');
    },
    async stop() {
      stopTail?.();
      await supervisor?.stop();
      await lines.settled(); // the last lines' writes, before the database closes
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
    /**
     * Another station changed a device: its boot policy here follows the database (this
     * station's dnsmasq may be the one the device boots from). Written only when it differs from
     * what this station last wrote for it.
     */
    followPolicy: (mac: string): Promise<void> =>
      policyChanges.run(async () => {
        if (!policy) return;
        const device = await devices.get(mac);
        if (!device) return;
        const enabled = device.netboot_enabled === 1;
        if (applied.get(mac) === enabled) return;
        policy.apply(mac, enabled);
        applied.set(mac, enabled);
      }),
    /** Lets a device netboot again, or sends it to its eMMC next boot (no PXE offer). False for an unknown device. */
    setNetboot: (mac: string, enabled: boolean): Promise<boolean> =>
      policyChanges.run(async () => {
        if (!(await devices.setNetboot(mac, enabled))) return false;
        policy?.apply(mac, enabled);
        applied.set(mac, enabled);
        bus.emit('device.changed', { mac });
        return true;
      }),
  };
}

export type NetbootService = ReturnType<typeof createNetbootService>;

/** Runs tasks one after another, in the order given; one that fails is its caller's to report, and the next still runs. */
function oneAtATime() {
  let last: Promise<unknown> = Promise.resolve();
  return {
    run<T>(task: () => Promise<T>): Promise<T> {
      const result = last.then(task);
      last = result.catch(() => undefined);
      return result;
    },
    /** Settles once every task given so far has. */
    settled: () => last,
  };
}
