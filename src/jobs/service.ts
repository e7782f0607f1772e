import type { Logger } from 'pino';
import type { DeviceStore } from '../devices/store.js';
import type { DeviceFilesService } from '../device-files/index.js';
import type { StoreJobFiles } from '../device-files/service.js';
import type { FirstBootService } from '../first-boot/service.js';
import { DEFAULT_FIRST_BOOT_HOOK, type FirstBootHook } from '../first-boot/hook-files.js';
import type { ImageLibrary, TransferPlan } from '../images/library.js';
import type { ImageRow } from '../images/store.js';
import type { Clock } from '../shared/clock.js';
import { badRequest, conflict, forbidden, gone, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { formatBytes } from '../shared/format.js';
import { normalizeMac } from '../shared/mac.js';
import { plainAddress } from '../shared/network.js';
import { newToken, tokensEqual } from '../shared/tokens.js';
import { createHash } from 'node:crypto';
import { isUniqueViolation } from '../db/errors.js';
import { createRateMeter } from './rate-meter.js';
import { inTransaction, type Queries } from '../db/database.js';
import { createJobStore, type FinalValues, type JobFilter, type JobFinish, type JobKind, type JobRow, type JobStore } from './store.js';
import type { TransferRegistry } from './transfers.js';
import { toJobView, type JobView } from './view.js';
import type { Waiters } from './waiters.js';

export interface JobServiceDeps {
  /** Where an order's rows are written together (one transaction); `store` reads and writes the rest. */
  db: Queries;
  store: JobStore;
  devices: DeviceStore;
  images: ImageLibrary;
  waiters: Waiters;
  transfers: TransferRegistry;
  clock: Clock;
  bus: EventBus;
  log: Logger;
  /** This server's name among the stations sharing the database: the jobs it hands out are served here. */
  station?: string;
  /** A running job with no word from its device for this long fails. */
  stallTimeoutMs: number;
  /**
   * Whether station `name` (another one sharing the database) is up: while it is, it judges the
   * jobs it serves itself, knowing what only it can see (bytes still moving on its sockets).
   */
  stationUp?: (name: string) => Promise<boolean>;
  /** What a device boots after a job ends ok, unless the order says otherwise. */
  defaultAfterSuccess: JobRow['after_success'];
  /** true: leave this queued job queued for now (rule work while the line is paused, src/rules/line.ts). */
  holdQueued?: (job: JobRow) => boolean;
  /**
   * Called when a device registers or polls, after a job it was running has been abandoned and
   * before the poll looks for work: the rule engine (src/rules/) may queue a job here.
   */
  onDeviceAsks?: (mac: string, trigger: 'register' | 'poll') => unknown;
  /** Per-device files written after a deploy (src/device-files/): ordered with `profile`. */
  deviceFiles?: DeviceFilesService;
  /** What follows from a job's change in other domains (netboot policy, files only it needed); awaited before it is announced. */
  onChanged?: (job: JobRow) => Promise<void> | void;
  /** First-boot confirmation (src/first-boot/): the one-time token of a deploy that asks for it. */
  firstBoot?: Pick<FirstBootService, 'newToken' | 'arm' | 'supersede'>;
}

export type PollOutcome =
  | { action: 'none'; abandoned?: JobRow }
  | { action: 'deploy'; job: JobRow; image: ImageRow; plan: TransferPlan; finish?: JobFinish; /** it writes per-device files */ files?: boolean }
  | { action: 'backup'; job: JobRow; finish?: JobFinish };

export interface OrderOptions {
  after?: JobRow['after_success'];
  /** Deploy: the whole target must equal the image afterwards (unmapped ranges zeroed, one full hash). */
  fullMatch?: boolean;
  /** The rule that orders it (src/rules/); a person when absent. `sequence`: the rule's number for the device ({{rule_sequence}}). */
  rule?: { id: number; name: string; sequence?: number };
  /** What the device does after an ok end: reboot (default), poweroff or wait. Told only to clients with the `finish` feature. */
  finish?: JobFinish;
  /** Deploy: the profile of per-device files written after the image (src/device-files/). */
  profile?: string;
  /** Deploy: the installed OS must call back on its first boot (src/first-boot/) within `confirmTimeout` seconds (default 600). */
  confirmBoot?: boolean;
  confirmTimeout?: number;
  /** Deploy with confirmBoot: the hook written into the image (default cmdline; src/first-boot/hook-files.ts). */
  firstBootHook?: FirstBootHook;
}

/** What a device says at the end of a deploy. */
export interface DeployReport {
  status: 'ok' | 'failed';
  /** Full mode (or full match): sha256 of the target's first image-size bytes, read back. */
  sha256?: string;
  bytes?: number;
  error?: string;
  /** Sparse mode: sha256 over the read-back chunk hashes, one lower-case hex line each. */
  ranges_sha256?: string;
  /** Per-device files written and read back: `IDX:SHA256,…` (src/device-files/). */
  files?: string;
}

/** The digest a sparse deploy's read-back must reproduce: each chunk's sha256 and a newline. */
export function rangesDigest(chunks: Array<{ sha256: string }>): string {
  return createHash('sha256').update(chunks.map((chunk) => `${chunk.sha256}\n`).join('')).digest('hex');
}

export type FinalOutcome = FinalValues;

/** A request to one of a job's device URLs: the job, its token, and who asks. */
export interface DeviceJobRequest {
  job: number;
  token: string | undefined;
  mac?: string;
  ip?: string;
}

/** Who took a job: the poll's source address, and whether the client said what it can do. */
export interface Taker {
  ip: string | null;
  /** The poll carried `features`: a client of this server, which reports a result. */
  reports: boolean;
}

/**
 * A client of the original contract (`curl url | dd`, no features, never a result) is given
 * this long after the whole image went out before its job ends as unconfirmed: time for dd
 * to take the last bytes, and for a client that does report after all to do so.
 */
export const SENT_UNREPORTED_GRACE_MS = 60_000;

const SHA256 = /^[0-9a-f]{64}$/;

/**
 * The job state machine: queued → running → ok | failed | cancelled.
 * Queued jobs wait for their device's poll, which hands each out exactly once (→ running).
 * A device that registers or polls again while its job is running has restarted mid-job:
 * that job fails as abandoned, and the device waits for the operator to act again.
 */
export function createJobService(deps: JobServiceDeps) {
  const { store, devices, images, waiters, transfers, clock, bus, log } = deps;
  const rates = createRateMeter();

  /** How long since the job's last sign of life (progress that moved, bytes, a retry). */
  const quietFor = (job: JobRow) => clock.now() - (job.last_activity_at ?? job.started_at ?? job.created_at);

  /**
   * A job changed: what follows from it in other domains (onChanged) is done before the change is
   * announced and before the request that made it is answered, so an answer never shows a job
   * ended while its device's netboot policy, say, is still the old one.
   */
  async function changed(job: JobRow) {
    try {
      await deps.onChanged?.(job);
    } catch (error) {
      log.error({ err: error, job: job.id }, 'following a job change failed');
    }
    bus.emit('job.changed', { jobId: job.id, mac: job.device_mac, state: job.state, snapshot: job });
  }

  async function requireDevice(macInput: string) {
    const mac = normalizeMac(macInput);
    const device = await devices.get(mac);
    if (!device) throw notFound(`no device with MAC ${mac} has registered`);
    return device;
  }

  function describe(job: JobRow) {
    return `job ${job.id} (${job.kind}, ${job.state})`;
  }

  /**
   * Queues a job. The job row, its finish, its first-boot token and its per-device files are one
   * transaction: a device polling meanwhile (here or on another station) sees the job complete
   * or not at all, and a refused order leaves nothing behind. It is announced after the commit.
   */
  async function order(
    mac: string,
    kind: JobKind,
    image: ImageRow | null,
    bytesTotal: number | null,
    options: OrderOptions,
    extras: { firstBoot?: { token: string; hook: FirstBootHook }; storeFiles?: StoreJobFiles } = {},
  ): Promise<JobRow> {
    const active = await store.activeFor(mac);
    if (active) throw conflict(`device ${mac} already has ${describe(active)}; cancel it first`);
    let job: JobRow;
    try {
      job = await inTransaction(deps.db, async (tx) => {
        const queued = createJobStore(tx);
        const afterSuccess = options.after ?? deps.defaultAfterSuccess;
        const fullMatch = options.fullMatch ? 1 : 0;
        const { id, finish } = await queued.create({ mac, kind, token: newToken(), imageId: image?.id ?? null, bytesTotal, afterSuccess, fullMatch, rule: options.rule }, clock.now());
        if (options.finish && options.finish !== finish) await queued.saveFinish(id, options.finish);
        if (extras.firstBoot) await deps.firstBoot!.arm(id, extras.firstBoot.token, extras.firstBoot.hook, options.confirmTimeout, tx);
        const created = (await queued.get(id))!;
        await extras.storeFiles?.(created, tx);
        return created;
      });
    } catch (error) {
      // The unique index jobs_one_active_per_device: an order on another station (or request) won.
      if (isUniqueViolation(error)) {
        throw conflict(`device ${mac} already has a queued or running job; cancel it first`);
      }
      throw error;
    }
    await deps.firstBoot?.supersede(mac, job.id);
    log.info({ job: job.id, mac, kind, image: image?.name, rule: options.rule?.name }, 'job queued');
    await changed(job);
    waiters.wake(mac);
    return job;
  }

  /** Ends an active job; returns the final row, or undefined if it had already ended. */
  async function finish(jobId: number, outcome: FinalOutcome): Promise<JobRow | undefined> {
    const ended = await endOn(store, jobId, outcome);
    await ended?.announce();
    return ended?.job;
  }

  /**
   * Ends an active job through `on` (the store, or one on a caller's transaction); undefined if it
   * had ended already. `announce` does what follows an end, once what was written is committed.
   */
  async function endOn(on: JobStore, jobId: number, outcome: FinalOutcome): Promise<{ job: JobRow; announce(): Promise<void> } | undefined> {
    if (!(await on.finish(jobId, outcome, clock.now()))) return undefined;
    const job = (await on.get(jobId))!;
    const announce = async () => {
      rates.forget(jobId);
      transfers.abortAll(jobId, new Error(`job ${jobId} ended (${job.state})`));
      log.info({ job: jobId, mac: job.device_mac, state: job.state, error: job.error }, 'job ended');
      await changed(job);
    };
    return { job, announce };
  }

  /** A deploy whose whole image went out, and of which nothing more will be heard. */
  async function endUnconfirmed(job: JobRow, why: string): Promise<JobRow | undefined> {
    const image = (await images.get(job.image_id!))!;
    return finish(job.id, {
      state: 'unconfirmed',
      error: `the whole image was sent, but ${why}: what the eMMC holds was not verified`,
      bytesDone: image.size,
      verified: 'sent',
      verifiedBytes: image.size,
    });
  }

  async function deviceAsks(mac: string, trigger: 'register' | 'poll') {
    try {
      await deps.onDeviceAsks?.(mac, trigger);
    } catch (error) {
      // A rule that cannot act must not cost the device its poll.
      log.error({ err: error, mac }, 'rule engine failed');
    }
  }

  async function abandonRunning(mac: string, why: string): Promise<JobRow | undefined> {
    const active = await store.activeFor(mac);
    if (active?.state !== 'running') return undefined;
    if (active.kind === 'deploy' && active.image_sent_at !== null) return endUnconfirmed(active, `${why} without reporting a result`);
    const consequence = active.kind === 'deploy' ? 'the eMMC may hold a partial image' : 'no backup was stored';
    const earlier = active.error ? ` (last problem: ${active.error})` : '';
    return finish(active.id, { state: 'failed', error: `abandoned: ${why} before reporting a result; ${consequence}${earlier}` });
  }

  /** Hands the device its queued job, if any: the one moment a job moves queued → running. */
  async function takeQueued(mac: string, features: ReadonlySet<string>, taker: Taker): Promise<PollOutcome | undefined> {
    const job = await store.activeFor(mac);
    if (job?.state !== 'queued' || deps.holdQueued?.(job)) return undefined;
    // The file may have changed or gone since the order: never hand out an image that is not
    // intact. While it is being re-hashed the job waits; a broken one fails without starting.
    const image = job.kind === 'deploy' ? (await images.get(job.image_id!))! : undefined;
    const problem = image ? await images.fileProblem(image) : null;
    if (problem?.checking) return undefined;
    if (problem) {
      await finish(job.id, { state: 'failed', error: `not started: image file: ${problem.reason}` });
      return undefined;
    }
    // A client that cannot write the job's per-device files must not start it: nothing is written.
    const filesProblem = job.kind === 'deploy' ? ((await deps.deviceFiles?.handOutProblem(job, features)) ?? null) : null;
    if (filesProblem) {
      await finish(job.id, { state: 'failed', error: filesProblem });
      return undefined;
    }
    // The one conditional write that hands the job out: another station (or poll) may have won.
    if (!(await store.markStarted(job.id, clock.now(), { ...taker, station: deps.station }))) return undefined;
    if (!image) {
      await store.saveTransfer(job.id, 'full', features.has('zstd') ? 'zstd' : 'identity', null);
      const started = (await store.get(job.id))!;
      await changed(started);
      return { action: 'backup', job: started, finish: features.has('finish') ? started.finish : undefined };
    }
    const plan = await images.transferPlan(image, features);
    await store.saveTransfer(job.id, plan.mode, plan.encoding, plan.bytesTotal);
    const started = (await store.get(job.id))!;
    await changed(started);
    const files = await deps.deviceFiles?.hasFiles(job.id);
    return { action: 'deploy', job: started, image, plan, finish: features.has('finish') ? started.finish : undefined, files };
  }

  /**
   * A sparse deploy is ok when the device read back every mapped chunk and each hashed to the
   * map (bmap semantics), proven by the digest over the chunk hashes; with a full match also
   * when the whole target hashes to the image with unmapped ranges as zeros.
   */
  async function finishSparseDeploy(job: JobRow, image: ImageRow, report: DeployReport): Promise<JobRow | undefined> {
    const digest = report.ranges_sha256?.toLowerCase();
    if (!digest || !SHA256.test(digest)) throw badRequest('an ok sparse deploy needs ranges_sha256: the digest over the read-back chunk hashes');
    if (digest !== rangesDigest(await images.chunksOf(image))) {
      return finish(job.id, { state: 'failed', error: 'the read-back of the mapped ranges does not match the image map' });
    }
    const map = (await images.blockMapOf(image))!;
    if (job.full_match) {
      const whole = report.sha256?.toLowerCase();
      if (whole !== map.sparse_sha256) {
        return finish(job.id, { state: 'failed', error: `full match asked: the target hashes to ${whole ?? 'nothing reported'}, the image (unmapped as zeros) to ${map.sparse_sha256}` });
      }
    }
    return finish(job.id, {
      state: 'ok',
      sha256: image.sha256,
      bytesDone: job.bytes_total,
      ...(job.full_match
        ? { verified: 'target', verifiedBytes: image.size, verifiedRanges: map.chunk_count }
        : { verified: 'mapped_ranges', verifiedBytes: map.mapped_bytes, verifiedRanges: map.chunk_count }),
    });
  }

  async function viewOf(job: JobRow, imageOf: (id: number) => ReturnType<typeof images.get>): Promise<JobView> {
    const image = job.image_id === null ? undefined : await imageOf(job.image_id);
    const view = toJobView(job, image, clock.now(), rates.rateOf(job.id));
    return deps.deviceFiles ? deps.deviceFiles.decorate(job, view) : view;
  }

  /** The job's final row, or 410 when it had already ended (another station or request ended it first). */
  function ended(job: JobRow | undefined, id: number): JobRow {
    if (!job) throw gone(`job ${id} has ended`);
    return job;
  }

  return {
    /** Polls parked right now, waiting for work. */
    waitingPolls: () => waiters.waiting(),
    /** Wakes the device's parked poll to look for its queued job again (e.g. the line resumed). */
    wake: (mac: string) => waiters.wake(mac),
    /** Wakes every parked poll, so each device asks the rules again (they changed, or the line resumed). */
    wakeAll: () => waiters.parked().forEach((mac) => waiters.wake(mac)),
    view: (job: JobRow) => viewOf(job, images.get),
    /** Views of many jobs, each image read once. */
    viewAll(jobs: JobRow[]): Promise<JobView[]> {
      const imagesById = new Map<number, ReturnType<typeof images.get>>();
      const imageOf = (id: number) => imagesById.get(id) ?? imagesById.set(id, images.get(id)).get(id)!;
      return Promise.all(jobs.map((job) => viewOf(job, imageOf)));
    },
    /** The job, or undefined (no error): for checks outside a request's own answer. */
    find: (id: number) => store.get(id),
    quietFor,
    async get(id: number): Promise<JobRow> {
      const job = await store.get(id);
      if (!job) throw notFound(`there is no job ${id}`);
      return job;
    },
    list: (filter: JobFilter) => store.list({ ...filter, mac: filter.mac === undefined ? undefined : normalizeMac(filter.mac) }),
    activeFor: (mac: string) => store.activeFor(mac),
    /** Jobs queued, started or ended at or after `since` (ms), by the time of their last change. */
    changedSince: (since: number) => store.changedSince(since),
    latestFor: (mac: string) => store.latestFor(mac),
    latestForEach: (macs: string[]) => store.latestForEach(macs),

    async orderDeploy(macInput: string, imageName?: string, options: OrderOptions = {}): Promise<JobRow> {
      const device = await requireDevice(macInput);
      const image = await images.resolveForDeploy(imageName);
      if (device.storage_bytes !== null && image.size > device.storage_bytes) {
        throw conflict(
          `image '${image.name}' (${formatBytes(image.size)}) is larger than the eMMC of ${device.mac} (${formatBytes(device.storage_bytes)})`,
        );
      }
      // Per-device files are rendered first: a value the device lacks refuses the order (400).
      if (options.profile !== undefined && !deps.deviceFiles) throw badRequest('per-device files are not available on this server');
      if (options.confirmBoot && !(deps.firstBoot && deps.deviceFiles)) throw badRequest('first-boot confirmation is not available on this server');
      // The one-time token exists before the files are rendered: they carry it ({{first_boot_token}}).
      const firstBoot = options.confirmBoot ? { ...(await deps.firstBoot!.newToken(device)), hook: options.firstBootHook ?? DEFAULT_FIRST_BOOT_HOOK } : undefined;
      const storeFiles = options.profile === undefined && !firstBoot
        ? undefined
        : await deps.deviceFiles!.prepare(options.profile, device, { image, ruleSequence: options.rule?.sequence, firstBoot });
      return order(device.mac, 'deploy', image, image.size, options, { firstBoot, storeFiles });
    },

    async orderBackup(macInput: string, options: OrderOptions = {}): Promise<JobRow> {
      const device = await requireDevice(macInput);
      return order(device.mac, 'backup', null, device.storage_bytes, { after: options.after, rule: options.rule, finish: options.finish });
    },

    async cancel(jobId: number): Promise<JobRow> {
      const job = await store.get(jobId);
      if (!job) throw notFound(`there is no job ${jobId}`);
      const cancelled = await finish(jobId, { state: 'cancelled', error: 'cancelled by the operator' });
      if (!cancelled) throw conflict(`${describe(job)} has already ended`);
      return cancelled;
    },

    async cancelForDevice(macInput: string): Promise<JobRow> {
      const mac = normalizeMac(macInput);
      const active = await store.activeFor(mac);
      if (!active) throw notFound(`device ${mac} has no queued or running job to cancel`);
      const cancelled = await finish(active.id, { state: 'cancelled', error: 'cancelled by the operator' });
      if (!cancelled) throw conflict(`${describe(active)} has already ended`);
      return cancelled;
    },

    /** A device (re)registered: a job it was running cannot finish any more. */
    async deviceRestarted(mac: string): Promise<JobRow | undefined> {
      const abandoned = await abandonRunning(mac, 'the device registered again (it restarted)');
      await deviceAsks(mac, 'register');
      return abandoned;
    },

    /**
     * A device asks for work. Answers at once when there is some; otherwise waits up to
     * `waitMs` for the operator to order it (long-poll), then answers "none".
     */
    async poll(
      mac: string,
      waitMs: number,
      signal?: AbortSignal,
      features: ReadonlySet<string> = new Set(),
      taker: Taker = { ip: null, reports: features.size > 0 },
    ): Promise<PollOutcome> {
      const abandoned = await abandonRunning(mac, 'the device polled for new work (its client restarted)');
      const deadline = clock.now() + waitMs;
      for (;;) {
        // Also after a wake: a rule may have been added or the line resumed meanwhile.
        await deviceAsks(mac, 'poll');
        const taken = await takeQueued(mac, features, taker);
        if (taken) return taken;
        const left = deadline - clock.now();
        if (left <= 0 || signal?.aborted) return { action: 'none', abandoned };
        const outcome = await waiters.wait(mac, left, signal);
        if (outcome !== 'woken') return { action: 'none', abandoned };
      }
    },

    /**
     * Checks a device-side job request: the job exists, the token is its own, the MAC (when
     * sent) is its device's, and it is running. Each failure gets its own 4xx and sentence.
     */
    async authorizeDevice(access: DeviceJobRequest, kind?: JobKind): Promise<JobRow> {
      const { job: jobId, token, mac: macInput } = access;
      const job = await store.get(jobId);
      if (!job) throw notFound(`there is no job ${jobId}`);
      if (!tokensEqual(job.token, token)) throw forbidden(`the token is not valid for job ${jobId}`);
      if (macInput !== undefined && macInput !== '') {
        const mac = normalizeMac(macInput);
        if (mac !== job.device_mac) throw forbidden(`job ${jobId} belongs to device ${job.device_mac}, not ${mac}`);
      }
      const from = access.ip === undefined ? undefined : plainAddress(access.ip);
      if (job.device_ip !== null && from !== undefined && from !== job.device_ip) {
        log.warn({ job: jobId, mac: job.device_mac, taken_by: job.device_ip, from }, 'job URL used from another address; refused');
        throw forbidden(`job ${jobId} was taken by ${job.device_ip}; its URLs do not answer ${from}`);
      }
      if (kind && job.kind !== kind) throw conflict(`job ${jobId} is a ${job.kind}, not a ${kind}`);
      if (job.state === 'queued') throw conflict(`job ${jobId} has not been handed to its device yet`);
      if (job.state !== 'running') {
        throw gone(`job ${jobId} has ended (${job.state}${job.error ? `: ${job.error}` : ''}); its URLs no longer work`);
      }
      return job;
    },

    async reportProgress(
      job: JobRow,
      bytesDone: number,
      phase: string | null,
      detail: { written?: number; verified?: number; rate?: number; discarded?: boolean } = {},
    ): Promise<JobRow> {
      const now = clock.now();
      if (!(await store.saveProgress(job, bytesDone, phase, now))) throw gone(`job ${job.id} has ended`);
      await store.saveDetail(job.id, detail);
      await devices.touch(job.device_mac, now);
      rates.record(job.id, phase ?? job.phase, bytesDone, now);
      const updated = ended(await store.get(job.id), job.id);
      await changed(updated);
      return updated;
    },

    /**
     * The device says an attempt failed and it tries again: a sign of life even though no byte
     * moved, and a reason shown on the job meanwhile (and in the stall message, should it come).
     */
    async retrying(job: JobRow, bytesDone: number, phase: string | null, problem: string): Promise<JobRow> {
      const now = clock.now();
      if (!(await store.saveProgress(job, bytesDone, phase, now))) throw gone(`job ${job.id} has ended`);
      await store.saveNote(job.id, problem, phase);
      await store.touch(job.id, now);
      await devices.touch(job.device_mac, now);
      const updated = ended(await store.get(job.id), job.id);
      await changed(updated);
      return updated;
    },

    /** Bytes are moving for this job (a stream chunk), so it is alive. */
    touch: (jobId: number) => store.touch(jobId, clock.now()),

    async note(jobId: number, error: string | null, phase: string | null = null) {
      await store.saveNote(jobId, error, phase);
      const job = await store.get(jobId);
      if (job) await changed(job);
    },

    recordUpload: (jobId: number, bytes: number | null, sha256: string | null, mapId: number | null = null) =>
      store.saveUpload(jobId, bytes, sha256, mapId),

    /** The device's verdict on a deploy: ok only if what it read back hashes to the image. */
    async finishDeploy(job: JobRow, report: DeployReport): Promise<JobRow> {
      if (report.status === 'failed') {
        return ended(await finish(job.id, { state: 'failed', error: report.error || 'the device reported a failure without a reason', sha256: report.sha256 }), job.id);
      }
      const filesProblem = (await deps.deviceFiles?.reportProblem(job, report.files)) ?? null;
      if (filesProblem) return ended(await finish(job.id, { state: 'failed', error: filesProblem }), job.id);
      const image = (await images.get(job.image_id!))!;
      if (job.transfer_mode === 'sparse') return ended(await finishSparseDeploy(job, image, report), job.id);
      const sha256 = report.sha256?.toLowerCase();
      if (!sha256 || !SHA256.test(sha256)) throw badRequest('an ok result needs sha256: the 64-hex-digit hash the device read back');
      if (report.bytes !== undefined && report.bytes !== image.size) {
        return ended(await finish(job.id, { state: 'failed', sha256, error: `the device verified ${report.bytes} bytes, the image has ${image.size}` }), job.id);
      }
      if (sha256 !== image.sha256) {
        const failed = await finish(job.id, {
          state: 'failed',
          sha256,
          error: `read-back sha256 ${sha256} does not match the image's ${image.sha256}: the eMMC does not hold the image`,
        });
        return ended(failed, job.id);
      }
      return ended(await finish(job.id, { state: 'ok', sha256, bytesDone: image.size, verified: 'image', verifiedBytes: image.size }), job.id);
    },

    /**
     * The whole image has gone out to the device (full-image transfer). A client of the
     * original contract will say nothing more: its job now waits only for the grace time.
     */
    async imageSent(jobId: number) {
      if (!(await store.markImageSent(jobId, clock.now()))) return;
      await store.saveNote(jobId, null, 'sent');
      const job = await store.get(jobId);
      if (job) await changed(job);
    },

    finish,
    /** Ends an active job inside the caller's transaction (a backup's row and its job's end, together); announce after the commit. */
    finishWithin: (tx: Queries, jobId: number, outcome: FinalOutcome) => endOn(createJobStore(tx), jobId, outcome),

    /**
     * Ends running jobs whose device has gone quiet (powered off, cable pulled, client killed):
     * failed, or unconfirmed when the whole image had been sent and only the word about it is missing.
     * Another station's jobs only once that station is down (it died with them).
     */
    async failStalled(): Promise<JobRow[]> {
      const now = clock.now();
      const failed: JobRow[] = [];
      for (const job of await store.running()) {
        if (transfers.isMoving(job.id, now, deps.stallTimeoutMs)) continue;
        if (job.station !== null && job.station !== deps.station && (await deps.stationUp?.(job.station))) continue;
        const quietMs = quietFor(job);
        if (job.kind === 'deploy' && job.image_sent_at !== null && !transfers.isActive(job.id)) {
          const grace = job.client_reports ? deps.stallTimeoutMs : Math.min(SENT_UNREPORTED_GRACE_MS, deps.stallTimeoutMs);
          if (now - job.image_sent_at < grace || quietMs < grace) continue;
          const unconfirmed = await endUnconfirmed(job, `the device reported no result within ${Math.round((now - job.image_sent_at) / 1000)} s`);
          if (unconfirmed) failed.push(unconfirmed);
          continue;
        }
        if (quietMs < deps.stallTimeoutMs) continue;
        const stalled = await finish(job.id, {
          state: 'failed',
          error: `no word from the device for ${Math.round(quietMs / 1000)} s${job.error ? ` (last problem: ${job.error})` : ''}`,
        });
        if (stalled) failed.push(stalled);
      }
      return failed;
    },
  };
}

export type JobService = ReturnType<typeof createJobService>;
