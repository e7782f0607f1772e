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
import { sqliteDatabase } from './db/database.js';
import { openDatabase, type Db } from './db/open.js';
import { createLiveViews } from './dashboard/live.js';
import { createDeviceService } from './devices/service.js';
import { createIdentityCheck } from './devices/identity.js';
import { createNetbootService } from './netboot/service.js';
import { resolveNetbootSettings, type InterfaceProbe } from './netboot/settings.js';
import { createDeviceStore } from './devices/store.js';
import { createGoldenWatcher } from './images/golden.js';
import { createImageLibrary } from './images/library.js';
import { recheckBmapMaps } from './images/recheck-maps.js';
import { createImageStore } from './images/store.js';
import { createJobService } from './jobs/service.js';
import { createJobStore } from './jobs/store.js';
import { createTransferRegistry } from './jobs/transfers.js';
import { createWaiters } from './jobs/waiters.js';
import { guarded } from './shared/background.js';
import { systemClock, type Clock } from './shared/clock.js';
import { createEventBus } from './shared/events.js';
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
}

/** Wires the domain services around one database. No sockets, timers or signals here. */
export function createServices(options: ServiceOptions) {
  const { config, log, clock = systemClock } = options;
  const { dataDir } = config;
  for (const dir of ['', 'images', 'backups', 'tmp']) ensureDir(join(dataDir, dir));
  const db: Db = openDatabase(join(dataDir, 'cm4prov.sqlite'));
  // The query layer both databases speak (db/database.ts), over the same connection. Stores move
  // to it one domain at a time (issue 15); until all have, the others use `db` directly.
  const database = sqliteDatabase(db);
  const adminToken = ensureAdminToken(dataDir);
  const bus = createEventBus();
  const transfersInFlight = createTransferRegistry(clock);

  const jobStore = createJobStore(db);
  const line = createLineSwitch(db);
  const deviceStore = createDeviceStore(db);
  const imageStore = createImageStore(db);
  const blockMaps = createBlockMapStore(db);
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
  });
  const deviceFiles = createDeviceFilesService({ store: createDeviceFilesStore(db), clock, bus });
  const firstBoot = createFirstBootService({
    store: createFirstBootStore(db),
    clock,
    bus,
    log: log.child({ module: 'first-boot' }),
    publicUrl: config.publicUrl,
    onSettled: (job) => ruleEngine.firstBootSettled(job),
  });
  const jobs = createJobService({
    store: jobStore,
    devices: deviceStore,
    images,
    waiters: createWaiters(),
    transfers: transfersInFlight,
    clock,
    bus,
    log: log.child({ module: 'jobs' }),
    stallTimeoutMs: config.jobStallTimeout * 1000,
    defaultAfterSuccess: config.afterSuccess,
    holdQueued: (job) => job.ordered_by === 'rule' && line.paused(),
    onDeviceAsks: (mac, trigger) => ruleEngine.consider(mac, trigger),
    deviceFiles,
    firstBoot,
  });
  const ruleStore = createRuleStore(db);
  const ruleEngine = createRuleEngine({ store: ruleStore, devices: deviceStore, jobs, images, line, clock, bus, log: log.child({ module: 'rules' }) });
  const rules = createRuleService({ store: ruleStore, engine: ruleEngine, line, devices: deviceStore, jobs, clock, bus, requireProfile: deviceFiles.profile });
  const netboot = createNetbootService({
    settings: resolveNetbootSettings(config, options.interfaces),
    db,
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
    registrationLimit: { perAddress: config.deviceRegistrationLimit, windowMs: 60_000 },
    forgetUnknownAfterMs: config.forgetUnknownDevicesAfter * 86_400_000,
    holdOf: (mac) => rules.holdOf(mac),
  });
  const identity = createIdentityCheck({ leases: netboot.leaseBook, clock, log: log.child({ module: 'devices' }) });
  const backups = createBackupService({
    db,
    images,
    blockMaps,
    caches,
    store: createBackupStore(db),
    jobs,
    transfers: transfersInFlight,
    dataDir,
    clock,
    bus,
    log: log.child({ module: 'backups' }),
  });
  const transfers = createTransferService({ jobs, images, backups, transfers: transfersInFlight });
  const records = createRecordService({ store: createRecordStore(database.db), jobs });
  const notify = createNotifyService({ db, bus, jobs, devices: deviceStore, clock, log: log.child({ module: 'notify' }) });
  const sessions = createSessionStore(db, clock);
  const passwords = createPasswordStore(db);
  const auth = createAdminAuth({ adminToken, sessions });
  const live = createLiveViews({ bus, devices, images, backups, clock, log: log.child({ module: 'dashboard' }) });
  const golden = createGoldenWatcher({ library: images, store: imageStore, dataDir, clock, log: log.child({ module: 'golden' }) });

  bus.on('job.changed', ({ jobId, mac, state }) => {
    // Work for a device means it must netboot to do it. So does a deploy whose first boot never
    // called back (src/first-boot/): its next power cycle or reboot brings it back to provisioning.
    if (state === 'queued' || state === 'not_confirmed') netboot.setNetboot(mac, true);
    if (state === 'confirmed' || state === 'not_confirmed') return;
    if (state === 'queued' || state === 'running') return;
    // When a job ends, bytes it alone needed can go: a superseded image, an unpublished upload.
    images.sweepRetired();
    void backups.discardUnpublished(jobId);
    // Its work done, a device boots from eMMC next unless the order said otherwise: no loop. A
    // job that handed its work over unconfirmed counts as done too: the device was given all of
    // it, and netbooting it again would loop it into provisioning with nobody asking.
    const done = state === 'ok' || state === 'unconfirmed';
    if (done && jobs.get(jobId).after_success === 'emmc') netboot.setNetboot(mac, false);
  });

  return {
    config,
    db,
    database,
    bus,
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
    /** Start-up housekeeping: what a previous process left half-done; a first admin password. */
    async recover(initialAdminPassword?: string) {
      images.checkFiles(); // image files deleted or changed while the server was down: marked broken
      // Compressed caches that a previous run did not finish, and maps for images older than maps.
      for (const mapId of blockMaps.needingCache()) {
        const file = blockMaps.fileFor(mapId);
        if (file) caches.enqueue({ mapId, rawPath: join(dataDir, file) });
      }
      // In the background: maps for images older than maps, and a one-time check of maps an
      // earlier version made from bmaps (images/recheck-maps.ts).
      guarded(log, 'mapping images', async () => {
        await images.mapOldImages();
        await recheckBmapMaps({ store: imageStore, blockMaps, caches, pathOf: images.pathOf, clock, bus, log: log.child({ module: 'images' }) });
      })();
      if (initialAdminPassword && !passwords.isSet()) {
        await passwords.set(initialAdminPassword);
        log.info('admin password set from CM4PROV_ADMIN_PASSWORD');
      }
      const awaiting = new Set(jobStore.running().filter((job) => job.upload_sha256 !== null).map((job) => job.id));
      await backups.sweepLeftovers(awaiting);
      images.sweepRetired();
      notify.start(); // webhook deliveries and labels a previous run left pending
    },
    async close() {
      await notify.stop();
      await caches.stop();
      await database.close(); // closes `db` too
    },
  };
}

export type Services = ReturnType<typeof createServices>;
