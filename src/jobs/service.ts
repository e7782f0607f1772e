import type { Logger } from 'pino';
import type { DeviceStore } from '../devices/store.js';
import type { DeviceFilesService } from '../device-files/index.js';
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
import { createRateMeter } from './rate-meter.js';
import type { FinalValues, JobFilter, JobFinish, JobKind, JobRow, JobStore } from './store.js';
import type { TransferRegistry } from './transfers.js';
import { toJobView, type JobView } from './view.js';
import type { Waiters } from './waiters.js';

export interface JobServiceDeps {
  store: JobStore;
  devices: DeviceStore;
  images: ImageLibrary;
  waiters: Waiters;
  transfers: TransferRegistry;
  clock: Clock;
  bus: EventBus;
  log: Logger;
  /** A running job with no word from its device for this long fails. */
  stallTimeoutMs: number;
  /** What a device boots after a job ends ok, unless the order says otherwise. */
  defaultAfterSuccess: JobRow['after_success'];
  /** true: leave this queued job queued for now (rule work while the line is paused, src/rules/line.ts). */
  holdQueued?: (job: JobRow) => boolean;
  /**
   * Called when a device registers or polls, after a job it was running has been abandoned and
   * before the poll looks for work: the rule engine (src/rules/) may queue a job here.
   */
  onDeviceAsks?: (mac: string, trigger: 'register' | 'poll') => void;
  /** Per-device files written after a deploy (src/device-files/): ordered with `profile`. */
  deviceFiles?: DeviceFilesService;
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

  function changed(job: JobRow) {
    bus.emit('job.changed', { jobId: job.id, mac: job.device_mac, state: job.state });
  }

  function requireDevice(macInput: string) {
    const mac = normalizeMac(macInput);
    const device = devices.get(mac);
    if (!device) throw notFound(`no device with MAC ${mac} has registered`);
    return device;
  }

  function describe(job: JobRow) {
    return `job ${job.id} (${job.kind}, ${job.state})`;
  }

  function order(mac: string, kind: JobKind, image: ImageRow | null, bytesTotal: number | null, options: OrderOptions, firstBoot?: { token: string; hook: FirstBootHook }): JobRow {
    const active = store.activeFor(mac);
    if (active) throw conflict(`device ${mac} already has ${describe(active)}; cancel it first`);
    let job: JobRow;
    try {
      const afterSuccess = options.after ?? deps.defaultAfterSuccess;
      const fullMatch = options.fullMatch ? 1 : 0;
      job = store.create({ mac, kind, token: newToken(), imageId: image?.id ?? null, bytesTotal, afterSuccess, fullMatch, rule: options.rule }, clock.now());
      if (options.finish && options.finish !== job.finish && store.saveFinish(job.id, options.finish)) job = store.get(job.id)!;
      if (firstBoot !== undefined) {
        deps.firstBoot!.arm(job.id, firstBoot.token, firstBoot.hook, options.confirmTimeout);
        job = store.get(job.id)!;
      }
      deps.firstBoot?.supersede(mac, job.id);
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw conflict(`device ${mac} already has a queued or running job; cancel it first`);
      }
      throw error;
    }
    log.info({ job: job.id, mac, kind, image: image?.name, rule: options.rule?.name }, 'job queued');
    changed(job);
    waiters.wake(mac);
    return job;
  }

  /** Ends an active job; returns the final row, or undefined if it had already ended. */
  function finish(jobId: number, outcome: FinalOutcome): JobRow | undefined {
    if (!store.finish(jobId, outcome, clock.now())) return undefined;
    const job = store.get(jobId)!;
    rates.forget(jobId);
    transfers.abortAll(jobId, new Error(`job ${jobId} ended (${job.state})`));
    log.info({ job: jobId, mac: job.device_mac, state: job.state, error: job.error }, 'job ended');
    changed(job);
    return job;
  }

  /** A deploy whose whole image went out, and of which nothing more will be heard. */
  function endUnconfirmed(job: JobRow, why: string): JobRow | undefined {
    const image = images.get(job.image_id!)!;
    return finish(job.id, {
      state: 'unconfirmed',
      error: `the whole image was sent, but ${why}: what the eMMC holds was not verified`,
      bytesDone: image.size,
      verified: 'sent',
      verifiedBytes: image.size,
    });
  }

  function deviceAsks(mac: string, trigger: 'register' | 'poll') {
    try {
      deps.onDeviceAsks?.(mac, trigger);
    } catch (error) {
      // A rule that cannot act must not cost the device its poll.
      log.error({ err: error, mac }, 'rule engine failed');
    }
  }

  function abandonRunning(mac: string, why: string): JobRow | undefined {
    const active = store.activeFor(mac);
    if (active?.state !== 'running') return undefined;
    if (active.kind === 'deploy' && active.image_sent_at !== null) return endUnconfirmed(active, `${why} without reporting a result`);
    const consequence = active.kind === 'deploy' ? 'the eMMC may hold a partial image' : 'no backup was stored';
    const earlier = active.error ? ` (last problem: ${active.error})` : '';
    return finish(active.id, { state: 'failed', error: `abandoned: ${why} before reporting a result; ${consequence}${earlier}` });
  }

  /** Hands the device its queued job, if any: the one moment a job moves queued → running. */
  function takeQueued(mac: string, features: ReadonlySet<string>, taker: Taker): PollOutcome | undefined {
    const job = store.activeFor(mac);
    if (job?.state !== 'queued' || deps.holdQueued?.(job)) return undefined;
    // The file may have changed or gone since the order: never hand out an image that is not
    // intact. While it is being re-hashed the job waits; a broken one fails without starting.
    const problem = job.kind === 'deploy' ? images.fileProblem(images.get(job.image_id!)!) : null;
    if (problem?.checking) return undefined;
    if (problem) {
      finish(job.id, { state: 'failed', error: `not started: image file: ${problem.reason}` });
      return undefined;
    }
    // A client that cannot write the job's per-device files must not start it: nothing is written.
    const filesProblem = job.kind === 'deploy' ? (deps.deviceFiles?.handOutProblem(job, features) ?? null) : null;
    if (filesProblem) {
      finish(job.id, { state: 'failed', error: filesProblem });
      return undefined;
    }
    if (!store.markStarted(job.id, clock.now(), taker)) return undefined;
    if (job.kind === 'backup') {
      store.saveTransfer(job.id, 'full', features.has('zstd') ? 'zstd' : 'identity', null);
      const started = store.get(job.id)!;
      changed(started);
      return { action: 'backup', job: started, finish: features.has('finish') ? started.finish : undefined };
    }
    const image = images.get(job.image_id!)!;
    const plan = images.transferPlan(image, features);
    store.saveTransfer(job.id, plan.mode, plan.encoding, plan.bytesTotal);
    const started = store.get(job.id)!;
    changed(started);
    return { action: 'deploy', job: started, image, plan, finish: features.has('finish') ? started.finish : undefined, files: deps.deviceFiles?.hasFiles(job.id) };
  }

  /**
   * A sparse deploy is ok when the device read back every mapped chunk and each hashed to the
   * map (bmap semantics), proven by the digest over the chunk hashes; with a full match also
   * when the whole target hashes to the image with unmapped ranges as zeros.
   */
  function finishSparseDeploy(job: JobRow, image: ImageRow, report: DeployReport): JobRow {
    const digest = report.ranges_sha256?.toLowerCase();
    if (!digest || !SHA256.test(digest)) throw badRequest('an ok sparse deploy needs ranges_sha256: the digest over the read-back chunk hashes');
    if (digest !== rangesDigest(images.chunksOf(image))) {
      return finish(job.id, { state: 'failed', error: 'the read-back of the mapped ranges does not match the image map' })!;
    }
    const map = images.blockMapOf(image)!;
    if (job.full_match) {
      const whole = report.sha256?.toLowerCase();
      if (whole !== map.sparse_sha256) {
        return finish(job.id, { state: 'failed', error: `full match asked: the target hashes to ${whole ?? 'nothing reported'}, the image (unmapped as zeros) to ${map.sparse_sha256}` })!;
      }
    }
    return finish(job.id, {
      state: 'ok',
      sha256: image.sha256,
      bytesDone: job.bytes_total,
      ...(job.full_match
        ? { verified: 'target', verifiedBytes: image.size, verifiedRanges: map.chunk_count }
        : { verified: 'mapped_ranges', verifiedBytes: map.mapped_bytes, verifiedRanges: map.chunk_count }),
    })!;
  }

  return {
    /** Polls parked right now, waiting for work. */
    waitingPolls: () => waiters.waiting(),
    /** Wakes the device's parked poll to look for its queued job again (e.g. the line resumed). */
    wake: (mac: string) => waiters.wake(mac),
    /** Wakes every parked poll, so each device asks the rules again (they changed, or the line resumed). */
    wakeAll: () => waiters.parked().forEach((mac) => waiters.wake(mac)),
    view(job: JobRow): JobView {
      const view = toJobView(job, job.image_id === null ? undefined : images.get(job.image_id), clock.now(), rates.rateOf(job.id));
      return deps.deviceFiles ? deps.deviceFiles.decorate(job, view) : view;
    },
    /** The job, or undefined (no error): for checks outside a request's own answer. */
    find: (id: number) => store.get(id),
    quietFor,
    get(id: number): JobRow {
      const job = store.get(id);
      if (!job) throw notFound(`there is no job ${id}`);
      return job;
    },
    list: (filter: JobFilter) => store.list({ ...filter, mac: filter.mac === undefined ? undefined : normalizeMac(filter.mac) }),
    activeFor: (mac: string) => store.activeFor(mac),
    /** Jobs queued, started or ended at or after `since` (ms), by the time of their last change. */
    changedSince: (since: number) => store.changedSince(since),
    latestFor: (mac: string) => store.latestFor(mac),

    orderDeploy(macInput: string, imageName?: string, options: OrderOptions = {}): JobRow {
      const device = requireDevice(macInput);
      const image = images.resolveForDeploy(imageName);
      if (device.storage_bytes !== null && image.size > device.storage_bytes) {
        throw conflict(
          `image '${image.name}' (${formatBytes(image.size)}) is larger than the eMMC of ${device.mac} (${formatBytes(device.storage_bytes)})`,
        );
      }
      // Per-device files are rendered first: a value the device lacks refuses the order (400).
      if (options.profile !== undefined && !deps.deviceFiles) throw badRequest('per-device files are not available on this server');
      if (options.confirmBoot && !(deps.firstBoot && deps.deviceFiles)) throw badRequest('first-boot confirmation is not available on this server');
      // The one-time token exists before the files are rendered: they carry it ({{first_boot_token}}).
      const firstBoot = options.confirmBoot ? { ...deps.firstBoot!.newToken(device), hook: options.firstBootHook ?? DEFAULT_FIRST_BOOT_HOOK } : undefined;
      const storeFiles = options.profile === undefined && !firstBoot
        ? undefined
        : deps.deviceFiles!.prepare(options.profile, device, { image, ruleSequence: options.rule?.sequence, firstBoot });
      const job = order(device.mac, 'deploy', image, image.size, options, firstBoot);
      storeFiles?.(job);
      return job;
    },

    orderBackup(macInput: string, options: OrderOptions = {}): JobRow {
      const device = requireDevice(macInput);
      return order(device.mac, 'backup', null, device.storage_bytes, { after: options.after, rule: options.rule, finish: options.finish });
    },

    cancel(jobId: number): JobRow {
      const job = store.get(jobId);
      if (!job) throw notFound(`there is no job ${jobId}`);
      const ended = finish(jobId, { state: 'cancelled', error: 'cancelled by the operator' });
      if (!ended) throw conflict(`${describe(job)} has already ended`);
      return ended;
    },

    cancelForDevice(macInput: string): JobRow {
      const mac = normalizeMac(macInput);
      const active = store.activeFor(mac);
      if (!active) throw notFound(`device ${mac} has no queued or running job to cancel`);
      return finish(active.id, { state: 'cancelled', error: 'cancelled by the operator' })!;
    },

    /** A device (re)registered: a job it was running cannot finish any more. */
    deviceRestarted(mac: string): JobRow | undefined {
      const abandoned = abandonRunning(mac, 'the device registered again (it restarted)');
      deviceAsks(mac, 'register');
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
      const abandoned = abandonRunning(mac, 'the device polled for new work (its client restarted)');
      const deadline = clock.now() + waitMs;
      for (;;) {
        // Also after a wake: a rule may have been added or the line resumed meanwhile.
        deviceAsks(mac, 'poll');
        const taken = takeQueued(mac, features, taker);
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
    authorizeDevice(access: DeviceJobRequest, kind?: JobKind): JobRow {
      const { job: jobId, token, mac: macInput } = access;
      const job = store.get(jobId);
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

    reportProgress(
      job: JobRow,
      bytesDone: number,
      phase: string | null,
      detail: { written?: number; verified?: number; rate?: number; discarded?: boolean } = {},
    ): JobRow {
      const now = clock.now();
      if (!store.saveProgress(job.id, bytesDone, phase, now)) throw gone(`job ${job.id} has ended`);
      store.saveDetail(job.id, detail);
      devices.touch(job.device_mac, now);
      rates.record(job.id, phase ?? job.phase, bytesDone, now);
      const updated = store.get(job.id)!;
      changed(updated);
      return updated;
    },

    /**
     * The device says an attempt failed and it tries again: a sign of life even though no byte
     * moved, and a reason shown on the job meanwhile (and in the stall message, should it come).
     */
    retrying(job: JobRow, bytesDone: number, phase: string | null, problem: string): JobRow {
      const now = clock.now();
      store.saveNote(job.id, problem, phase);
      if (!store.saveProgress(job.id, bytesDone, phase, now)) throw gone(`job ${job.id} has ended`);
      store.touch(job.id, now);
      devices.touch(job.device_mac, now);
      const updated = store.get(job.id)!;
      changed(updated);
      return updated;
    },

    /** Bytes are moving for this job (a stream chunk), so it is alive. */
    touch(jobId: number) {
      store.touch(jobId, clock.now());
    },

    note(jobId: number, error: string | null, phase: string | null = null) {
      store.saveNote(jobId, error, phase);
      const job = store.get(jobId);
      if (job) changed(job);
    },

    recordUpload: (jobId: number, bytes: number | null, sha256: string | null, mapId: number | null = null) =>
      store.saveUpload(jobId, bytes, sha256, mapId),

    /** The device's verdict on a deploy: ok only if what it read back hashes to the image. */
    finishDeploy(job: JobRow, report: DeployReport): JobRow {
      if (report.status === 'failed') {
        return finish(job.id, { state: 'failed', error: report.error || 'the device reported a failure without a reason', sha256: report.sha256 })!;
      }
      const filesProblem = deps.deviceFiles?.reportProblem(job, report.files) ?? null;
      if (filesProblem) return finish(job.id, { state: 'failed', error: filesProblem })!;
      const image = images.get(job.image_id!)!;
      if (job.transfer_mode === 'sparse') return finishSparseDeploy(job, image, report);
      const sha256 = report.sha256?.toLowerCase();
      if (!sha256 || !SHA256.test(sha256)) throw badRequest('an ok result needs sha256: the 64-hex-digit hash the device read back');
      if (report.bytes !== undefined && report.bytes !== image.size) {
        return finish(job.id, { state: 'failed', sha256, error: `the device verified ${report.bytes} bytes, the image has ${image.size}` })!;
      }
      if (sha256 !== image.sha256) {
        return finish(job.id, {
          state: 'failed',
          sha256,
          error: `read-back sha256 ${sha256} does not match the image's ${image.sha256}: the eMMC does not hold the image`,
        })!;
      }
      return finish(job.id, { state: 'ok', sha256, bytesDone: image.size, verified: 'image', verifiedBytes: image.size })!;
    },

    /**
     * The whole image has gone out to the device (full-image transfer). A client of the
     * original contract will say nothing more: its job now waits only for the grace time.
     */
    imageSent(jobId: number) {
      if (!store.markImageSent(jobId, clock.now())) return;
      store.saveNote(jobId, null, 'sent');
      const job = store.get(jobId);
      if (job) changed(job);
    },

    finish,

    /**
     * Ends running jobs whose device has gone quiet (powered off, cable pulled, client killed):
     * failed, or unconfirmed when the whole image had been sent and only the word about it is missing.
     */
    failStalled(): JobRow[] {
      const now = clock.now();
      const failed: JobRow[] = [];
      for (const job of store.running()) {
        if (transfers.isMoving(job.id, now, deps.stallTimeoutMs)) continue;
        const quietMs = quietFor(job);
        if (job.kind === 'deploy' && job.image_sent_at !== null && !transfers.isActive(job.id)) {
          const grace = job.client_reports ? deps.stallTimeoutMs : Math.min(SENT_UNREPORTED_GRACE_MS, deps.stallTimeoutMs);
          if (now - job.image_sent_at < grace || quietMs < grace) continue;
          const ended = endUnconfirmed(job, `the device reported no result within ${Math.round((now - job.image_sent_at) / 1000)} s`);
          if (ended) failed.push(ended);
          continue;
        }
        if (quietMs < deps.stallTimeoutMs) continue;
        const ended = finish(job.id, {
          state: 'failed',
          error: `no word from the device for ${Math.round(quietMs / 1000)} s${job.error ? ` (last problem: ${job.error})` : ''}`,
        });
        if (ended) failed.push(ended);
      }
      return failed;
    },
  };
}

export type JobService = ReturnType<typeof createJobService>;
