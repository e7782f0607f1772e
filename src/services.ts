import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { createAdminAuth } from './admin/auth.js';
import { createLoginThrottle } from './admin/login-throttle.js';
import { createPasswordStore } from './admin/passwords.js';
import { createSessionStore } from './admin/sessions.js';
import { ensureAdminToken } from './admin/token.js';
import { createCacheBuilder } from './blockmap/cache-builder.js';
import { createBlockMapStore } from './blockmap/store.js';
import { createBackupService } from './backups/service.js';
import { createBackupStore } from './backups/store.js';
import type { Config } from './config.js';
import type { StationDatabase } from './db/database.js';
import type { Channel } from './db/pg-channel.js';
import {
  createCopyFetcher, createCopyServing, createStationClient, createStationService, createStationStore, relayStationEvents, singleStationEvents, stationSecret, STATION_DOWN_AFTER_MS,
  type CopyFetcher,
} from './stations/index.js';
import { createLiveViews } from './dashboard/live.js';
import { createDeviceService } from './devices/service.js';
import { createIdentityCheck } from './devices/identity.js';
import { createNetbootService } from './netboot/service.js';
import { resolveNetbootSettings, type InterfaceProbe } from './netboot/settings.js';
import { createDeviceStore } from './devices/store.js';
import { createGoldenWatcher } from './images/golden.js';
import { createImageCopyStore } from './images/copies-store.js';
import { createImageLibrary } from './images/library.js';
import { aloneCopy, sharedCopy } from './images/local-copy.js';
import { recheckBmapMaps } from './images/recheck-maps.js';
import { createImageStore } from './images/store.js';
import { createJobService } from './jobs/service.js';
import { createJobStore, type JobRow } from './jobs/store.js';
import { createTransferRegistry } from './jobs/transfers.js';
import { createWaiters } from './jobs/waiters.js';
import { guarded } from './shared/background.js';
import { systemClock, type Clock } from './shared/clock.js';
import { createEventBus, type DomainEvents } from './shared/events.js';
import { ensureDir } from './shared/files.js';
import { createTransferService } from './transfers/service.js';
import { createNotifyService } from './notify/index.js';
import { createLineSwitch, createRuleEngine, createRuleService, createRuleStore } from './rules/index.js';
import { createRecordService, createRecordStore } from './records/index.js';
import { createDeviceFilesService, createDeviceFilesStore } from './device-files/index.js';
import { createFirstBootService, createFirstBootStore } from './first-boot/index.js';

export interface ServiceOptions {
  config: Config;
  log: Logger;
  clock?: Clock;
  /** Which network interfaces exist (for checking --netboot-interface); the kernel's by default. */
  interfaces?: InterfaceProbe;
  /** The open database (db/database.ts: openStationDatabase); closed with the services. */
  database: StationDatabase;
  /** Word between the stations sharing a PostgreSQL (db/pg-channel.ts); none for SQLite. */
  channel?: Channel;
  /** How long another station may stay silent in a request before it is given up on (stations/client.ts). */
  peerIdleMs?: number;
}

/** Wires the domain services around one database. No sockets, timers or signals here. */
export function createServices(options: ServiceOptions) {
  const { config, log, clock = systemClock } = options;
  const { dataDir } = config;
  for (const dir of ['', 'images', 'backups', 'tmp']) ensureDir(join(dataDir, dir));
  const { database, channel } = options;
  const adminToken = ensureAdminToken(dataDir);
  const bus = createEventBus();
  // What views and parked polls follow: this station's events, and the other stations' too.
  const stationEvents = channel ? relayStationEvents({ local: bus, channel, log: log.child({ module: 'stations' }) }) : singleStationEvents(bus);
  const transfersInFlight = createTransferRegistry(clock);
  let secret: string | undefined; // the stations' shared secret, read at start (recover)
  const stationClient = createStationClient({ station: config.station, secret: () => secret, idleMs: options.peerIdleMs });

  const jobStore = createJobStore(database.db);
  const line = createLineSwitch(database.db);
  const deviceStore = createDeviceStore(database.db);
  const imageStore = createImageStore(database.db);
  const blockMaps = createBlockMapStore(database.db);
  // Several stations on one PostgreSQL: each holds its own copy of every image, fetched from
  // the others (stations/copy-fetcher.ts); alone (SQLite), every image's file is its own.
  const shared = database.dialect === 'postgres';
  const copyStore = createImageCopyStore(database.db);
  let fetcher: CopyFetcher | undefined;
  const caches = createCacheBuilder({
    store: blockMaps,
    dataDir,
    log: log.child({ module: 'cache' }),
    onReady: () => bus.emit('image.changed', { name: '' }),
  });
  const images = createImageLibrary({
    store: imageStore,
    blockMaps,
    caches,
    dataDir,
    clock,
    bus,
    log: log.child({ module: 'images' }),
    imageInUse: jobStore.imageInUse,
    station: config.station,
    copies: copyStore,
    local: shared
      ? sharedCopy({ copies: copyStore, images: imageStore, station: config.station, note: (id) => fetcher?.noteOf(id), onDamaged: () => fetcher?.trigger() })
      : aloneCopy,
  });
  const deviceFiles = createDeviceFilesService({ store: createDeviceFilesStore(database.db), clock, bus, log: log.child({ module: 'device-files' }) });
  const firstBoot = createFirstBootService({
    store: createFirstBootStore(database.db),
    clock,
    bus,
    log: log.child({ module: 'first-boot' }),
    publicUrl: config.publicUrl,
    onSettled: (job) => ruleEngine.firstBootSettled(job),
  });
  const stationStore = createStationStore(database.db);
  const jobs = createJobService({
    db: database.db,
    store: jobStore,
    devices: deviceStore,
    images,
    waiters: createWaiters(),
    transfers: transfersInFlight,
    clock,
    bus,
    log: log.child({ module: 'jobs' }),
    station: config.station,
    stallTimeoutMs: config.jobStallTimeout * 1000,
    stationUp: async (name) => {
      const row = await stationStore.get(name);
      return row !== undefined && clock.now() - row.last_seen_at < STATION_DOWN_AFTER_MS;
    },
    defaultAfterSuccess: config.afterSuccess,
    holdQueued: (job) => job.ordered_by === 'rule' && line.paused(),
    onChanged: followJobChange,
    onDeviceAsks: (mac, trigger) => ruleEngine.consider(mac, trigger),
    deviceFiles,
    firstBoot,
  });
  const ruleStore = createRuleStore(database.db);
  const ruleEngine = createRuleEngine({ store: ruleStore, devices: deviceStore, jobs, images, line, clock, bus, log: log.child({ module: 'rules' }) });
  const rules = createRuleService({ store: ruleStore, engine: ruleEngine, line, devices: deviceStore, jobs, clock, bus, requireProfile: deviceFiles.profile });
  const netboot = createNetbootService({
    settings: resolveNetbootSettings(config, options.interfaces),
    db: database.db,
    devices: deviceStore,
    bus,
    clock,
    log: log.child({ module: 'netboot' }),
  });
  const devices = createDeviceService({
    store: deviceStore,
    jobs,
    clock,
    bus,
    station: config.station,
    registrationLimit: { perAddress: config.deviceRegistrationLimit, windowMs: 60_000 },
    forgetUnknownAfterMs: config.forgetUnknownDevicesAfter * 86_400_000,
    holdsOf: (macs) => rules.holdsOf(macs),
  });
  const identity = createIdentityCheck({ leases: netboot.leaseBook, clock, log: log.child({ module: 'devices' }) });
  const backups = createBackupService({
    db: database.db,
    images,
    blockMaps,
    caches,
    store: createBackupStore(database.db),
    jobs,
    transfers: transfersInFlight,
    dataDir,
    clock,
    bus,
    log: log.child({ module: 'backups' }),
    station: config.station,
    fromStation: (name, path, what, options) => stations.fromStation(name, path, what, options),
  });
  const transfers = createTransferService({ jobs, images, backups, transfers: transfersInFlight, log: log.child({ module: 'transfers' }) });
  const records = createRecordService({ store: createRecordStore(database.db), jobs });
  const notify = createNotifyService({ db: database.db, bus, jobs, devices: deviceStore, clock, log: log.child({ module: 'notify' }) });
  const sessions = createSessionStore(database.db, clock);
  const passwords = createPasswordStore(database.db);
  const auth = createAdminAuth({ adminToken, sessions });
  const golden = createGoldenWatcher({ library: images, store: imageStore, station: config.station, dataDir, clock, log: log.child({ module: 'golden' }) });

  const stations = createStationService({
    store: stationStore,
    station: config.station,
    url: config.stationUrl ?? null,
    dialect: database.dialect,
    channelState: () => channel?.state() ?? 'single',
    parkedPolls: () => jobs.waitingPolls(),
    clock,
    client: stationClient,
  });
  const live = createLiveViews({ bus: stationEvents.bus, devices, images, backups, stations, clock, log: log.child({ module: 'dashboard' }) });

  fetcher = shared
    ? createCopyFetcher({
        copies: copyStore,
        images: imageStore,
        blockMaps,
        files: images.files,
        client: stationClient,
        station: config.station,
        dataDir,
        clock,
        bus,
        log: log.child({ module: 'copies' }),
        // Deploys parked here for the copy can go now.
        onComplete: () => jobs.wakeAll(),
      })
    : undefined;
  const copyServing = createCopyServing({ images: imageStore, copies: copyStore, blockMaps, station: config.station, dataDir });

  /** What follows from a job's change, done before the change is announced (jobs/service.ts). */
  async function followJobChange(job: JobRow) {
    // Work for a device means it must netboot to do it.
    if (job.state === 'queued') await netboot.setNetboot(job.device_mac, true);
    if (job.state === 'queued' || job.state === 'running') return;
    // When a job ends, bytes it alone needed can go: a superseded image, an unpublished upload.
    await Promise.all([images.sweepRetired(), backups.discardUnpublished(job.id)]);
    // Its work done, a device boots from eMMC next unless the order said otherwise: no loop. A
    // job that handed its work over unconfirmed counts as done too: the device was given all of
    // it, and netbooting it again would loop it into provisioning with nobody asking.
    const done = job.state === 'ok' || job.state === 'unconfirmed';
    if (done && job.after_success === 'emmc') await netboot.setNetboot(job.device_mac, false);
  }
  // Another station's order for a device parked here wakes its poll; another station's rule or
  // line change makes every parked device ask again (as this station's own changes do).
  stationEvents.onRemote('job.changed', ({ mac, state }) => state === 'queued' && jobs.wake(mac));
  // An image added (or compressed, or copied) on another station may be one to fetch.
  stationEvents.onRemote('image.changed', () => fetcher?.trigger());
  // And one removed there: this station's copy of it goes too, once no deploy here needs it.
  stationEvents.onRemote('image.changed', guarded(log, 'removing files of images removed on another station', () => images.sweepRetired()));
  // A device's boot policy set on another station (an order there, a click on its dashboard):
  // this station's dnsmasq, which may be the one the device boots from, follows it.
  stationEvents.onRemote('device.changed', guarded(log, "following another station's boot policy", ({ mac }: DomainEvents['device.changed']) => netboot.followPolicy(mac)));
  // A backup deleted on another station: its file, when this station holds it, goes now.
  stationEvents.onRemote('backup.changed', guarded(log, 'removing the file of a backup deleted on another station', ({ backupId }: DomainEvents['backup.changed']) => backups.removeDeletedFiles(backupId)));
  stationEvents.onRemote('rules.changed', guarded(log, 'following another station\'s rules', async () => {
    await line.refresh();
    jobs.wakeAll();
  }));
  // Word from other stations sent while this one was cut off is lost (db/pg-channel.ts): once
  // back, what it waits on is read again.
  let cutOff = false;
  channel?.onState(guarded(log, 'catching up after a lost database connection', async (state: string) => {
    if (state === 'reconnecting') cutOff = true;
    if (state !== 'connected' || !cutOff) return;
    cutOff = false;
    log.info('in touch with the other stations again');
    await line.refresh();
    jobs.wakeAll();
    fetcher?.trigger();
    await backups.removeDeletedFiles();
  }));
  // So does a deploy whose first boot never called back (src/first-boot/): its next power cycle
  // or reboot brings it back to provisioning.
  bus.on('job.changed', guarded(log, 'netboot after an unconfirmed first boot', async ({ mac, state }: DomainEvents['job.changed']) => {
    if (state === 'not_confirmed') await netboot.setNetboot(mac, true);
  }));

  return {
    config,
    database,
    bus,
    stationEvents,
    stations,
    clock,
    adminToken,
    devices,
    identity,
    jobs,
    rules,
    images,
    backups,
    transfers,
    records,
    deviceFiles,
    firstBoot,
    golden,
    notify,
    netboot,
    sessions,
    passwords,
    loginThrottle: createLoginThrottle(clock),
    auth,
    live,
    blockMaps,
    caches,
    /** Fetches this station's image copies from the others (PostgreSQL only); server.ts starts and stops it. */
    fetcher,
    copyServing,
    stationClient,
    /** The secret stations prove themselves with; undefined while this one is alone (SQLite). */
    stationSecret: () => secret,
    /** Start-up housekeeping: what a previous process left half-done; a first admin password. */
    async recover(initialAdminPassword?: string) {
      await stations.announce();
      if (shared) secret = await stationSecret(database.db);
      await line.refresh(); // whether the line is paused: read once, then kept in memory (rules/line.ts)
      await images.checkFiles(); // image files deleted or changed while the server was down: marked broken
      // Compressed caches that a previous run did not finish, and maps for images older than maps.
      for (const mapId of await blockMaps.needingCache()) {
        const file = await blockMaps.fileFor(mapId);
        // Compressed where the file is: another station's image or backup is not here.
        if (file && existsSync(join(dataDir, file))) caches.enqueue({ mapId, rawPath: join(dataDir, file) });
      }
      // In the background: maps for images older than maps, and a one-time check of maps an
      // earlier version made from bmaps (images/recheck-maps.ts).
      guarded(log, 'mapping images', async () => {
        await images.mapOldImages();
        await recheckBmapMaps({ store: imageStore, blockMaps, caches, pathOf: images.pathOf, isLocal: images.isLocal, clock, bus, log: log.child({ module: 'images' }) });
      })();
      if (initialAdminPassword && !(await passwords.isSet())) {
        await passwords.set(initialAdminPassword);
        log.info('admin password set from CM4PROV_ADMIN_PASSWORD');
      }
      const awaiting = new Set((await jobStore.running()).filter((job) => job.upload_sha256 !== null).map((job) => job.id));
      await backups.sweepLeftovers(awaiting);
      await images.sweepRetired();
      await notify.start(); // webhook deliveries and labels a previous run left pending
    },
    async close() {
      await notify.stop();
      await caches.stop();
      stationEvents.close();
      await channel?.close();
      await database.close();
    },
  };
}

export type Services = ReturnType<typeof createServices>;
