import { randomUUID } from 'node:crypto';
import { readdir, rename } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Db } from '../db/open.js';
import type { ImageLibrary } from '../images/library.js';
import type { JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import { socketBytes, type TransferRegistry } from '../jobs/transfers.js';
import type { Socket } from 'node:net';
import type { Clock } from '../shared/clock.js';
import { badRequest, conflict, insufficientStorage, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { ensureDir, removeIfPresent } from '../shared/files.js';
import { StreamWriteError } from '../shared/stream-errors.js';
import { pipeline } from 'node:stream/promises';
import { DecompressStream } from 'zstd-napi';
import type { CacheBuilder } from '../blockmap/cache-builder.js';
import { writeBlockImage, type BlockImage } from '../blockmap/image-writer.js';
import type { BlockMapStore } from '../blockmap/store.js';
import { almostFull } from '../shared/free-space.js';
import { normalizeMac } from '../shared/mac.js';
import type { BackupCompleteness, BackupRow, BackupStore } from './store.js';
import { formatBytes } from '../shared/format.js';

export interface BackupServiceDeps {
  db: Db;
  blockMaps: BlockMapStore;
  caches: CacheBuilder;
  /** Where a backup goes when the operator turns it into an image. */
  images: Pick<ImageLibrary, 'adoptVerifiedFile' | 'view'>;
  store: BackupStore;
  jobs: JobService;
  transfers: TransferRegistry;
  dataDir: string;
  clock: Clock;
  bus: EventBus;
  log: Logger;
}

export interface UploadOptions {
  /** Content-Length of the request, when the device sent one (chunked uploads have none). */
  declaredBytes?: number;
  /** The body is zstd-compressed (Content-Encoding: zstd); its raw size is the device's storage. */
  zstd?: boolean;
  /** The device already knows the body's sha256 and sent it with the upload. */
  declaredSha256?: string;
  /** The device will send the sha256 of what it read in its result report. */
  checksumFollows: boolean;
}

export interface BackupView {
  id: number;
  device_mac: string;
  job_id: number | null;
  size: number;
  sha256: string;
  created_at: string;
  /** What is known of it: whether it is the whole eMMC, and who checked its sha256. */
  verification: { completeness: BackupCompleteness; device_checked: boolean; summary: string };
}

/** A page of the backup list: `skipped` newer ones come before it, `next` is the cursor of the one after. */
export interface BackupPage {
  backups: BackupView[];
  total: number;
  skipped: number;
  next: string | null;
}

/** Lists show this many backups unless asked for another number (at most MAX_BACKUP_PAGE). */
export const BACKUP_PAGE_SIZE = 100;
export const MAX_BACKUP_PAGE = 500;

/** How a stored backup was proven, which decides how its job ends. */
interface Proof {
  /** The device sent the sha256 of what it read, and it matched. */
  deviceChecked: boolean;
  completeness: BackupCompleteness;
}

function proofSummary(backup: Pick<BackupRow, 'size' | 'completeness' | 'device_checked'>): string {
  if (backup.completeness === 'size_unknown') {
    return `${formatBytes(backup.size)} received; the device never gave its eMMC size, so whether this is the whole eMMC is not known`;
  }
  return backup.device_checked
    ? 'whole eMMC; sha256 verified: the device read what arrived'
    : 'whole eMMC received; sha256 computed by the server (the device sent no checksum)';
}

const SHA256 = /^[0-9a-f]{64}$/;

/** A zstd-compressed body as its raw bytes; a cut or damaged stream surfaces as a cut upload. */
function zstdDecoded(body: Readable, signal: AbortSignal): Readable {
  const raw = new DecompressStream();
  pipeline(body, raw, { signal }).catch(() => undefined); // errors reach the reader through `raw`
  return raw;
}

/**
 * Backup intake. A body streams to a temp file while it is hashed; only a complete body whose
 * length (and sha256, when the device sends one) checks out is renamed into backups/ and
 * recorded. Anything else leaves neither a row nor a file, and the job says why.
 */
export function createBackupService(deps: BackupServiceDeps) {
  const { db, store, blockMaps, caches, jobs, images, transfers, dataDir, clock, bus, log } = deps;
  const tempDir = ensureDir(join(dataDir, 'tmp'));
  const receivedPath = (jobId: number) => join(tempDir, `backup-job${jobId}.received`);

  function view(backup: BackupRow): BackupView {
    return {
      id: backup.id,
      device_mac: backup.device_mac,
      job_id: backup.job_id,
      size: backup.size,
      sha256: backup.sha256,
      created_at: new Date(backup.created_at).toISOString(),
      verification: { completeness: backup.completeness, device_checked: backup.device_checked === 1, summary: proofSummary(backup) },
    };
  }

  /**
   * Publishes a received body: atomic rename, then the backup row and the job's end together.
   * The job ends ok when the body is known to be the whole eMMC, else unconfirmed; what was
   * checked, and by whom, goes with it.
   */
  async function publish(job: JobRow, temp: string, image: Pick<BlockImage, 'size' | 'sha256'>, mapId: number, proof: Proof): Promise<BackupRow> {
    const { size: bytes, sha256 } = image;
    const stamp = new Date(clock.now()).toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
    const file = join('backups', job.device_mac.replaceAll(':', ''), `${stamp}-job${job.id}.img`);
    ensureDir(join(dataDir, 'backups', job.device_mac.replaceAll(':', '')));
    await rename(temp, join(dataDir, file));
    let backup: BackupRow;
    try {
      backup = db.transaction(() => {
        const added = store.add({ mac: job.device_mac, jobId: job.id, file, size: bytes, sha256, blockMapId: mapId, ...proof }, clock.now());
        const whole = proof.completeness === 'whole';
        const ended = jobs.finish(job.id, {
          state: whole ? 'ok' : 'unconfirmed',
          error: whole ? null : "the device never gave its eMMC size: the server cannot tell whether the body it received is the whole eMMC",
          sha256,
          bytesDone: bytes,
          backupId: added.id,
          verified: proof.deviceChecked && whole ? 'device_sha256' : whole ? 'server_sha256' : 'size_unknown',
          verifiedBytes: bytes,
        });
        if (!ended) throw conflict(`job ${job.id} ended before its backup could be stored`);
        return added;
      })();
    } catch (error) {
      await removeIfPresent(join(dataDir, file));
      throw error;
    }
    log.info({ backup: backup.id, job: job.id, mac: job.device_mac, size: bytes, sha256 }, 'backup stored');
    // Compressed in the background, so it can be deployed back as fast as any image.
    caches.enqueue({ mapId, rawPath: join(dataDir, file) });
    bus.emit('backup.changed', { backupId: backup.id });
    return backup;
  }

  /** A body's length was checked against the eMMC size the device announced, when it announced one. */
  const completenessOf = (job: JobRow): BackupCompleteness => (job.bytes_total === null ? 'size_unknown' : 'whole');

  function fail(job: JobRow, error: string) {
    jobs.finish(job.id, { state: 'failed', error });
  }

  /** `failHere` ends the job from inside this upload's own handling: its answer must still go out. */
  async function receive(job: JobRow, body: Readable, options: UploadOptions, signal: AbortSignal, failHere: (error: string) => void): Promise<{ bytes: number; sha256: string; stored: BackupRow | null }> {
    const declared = options.zstd ? undefined : options.declaredBytes;
    if (declared !== undefined && job.bytes_total !== null && declared !== job.bytes_total) {
      throw badRequest(`the upload is ${declared} bytes but the device's storage is ${job.bytes_total}: a backup must be the whole device`);
    }
    const full = await almostFull(tempDir);
    if (full) {
      failHere(full);
      throw insufficientStorage(full);
    }

    const temp = join(tempDir, `backup-job${job.id}-${randomUUID()}.part`);
    jobs.note(job.id, null, 'uploading');
    let result: BlockImage;
    try {
      // Decoded on the fly when the device compressed it; stored sparse, mapped and hashed in one
      // pass. While bytes flow the transfer registry keeps the job alive: no per-chunk database write.
      const raw = options.zstd ? zstdDecoded(body, signal) : body;
      result = await writeBlockImage(raw, temp, { expectedBytes: declared ?? job.bytes_total ?? undefined });
    } catch (error) {
      jobs.touch(job.id);
      if (!(error instanceof StreamWriteError)) throw error;
      const message = `backup upload failed: ${error.message}`;
      log.warn({ job: job.id, bytes: error.bytes, failure: error.failure }, message);
      if (error.failure === 'disk_full') {
        failHere(message);
        throw insufficientStorage(message);
      }
      // A cut or short body may be retried by the device; the job keeps the reason until then.
      jobs.note(job.id, message);
      throw badRequest(message);
    }

    jobs.touch(job.id);
    const summary = { bytes: result.size, sha256: result.sha256 };
    const declaredSha = options.declaredSha256?.toLowerCase();
    if (declaredSha !== undefined) {
      if (declaredSha !== result.sha256) {
        await removeIfPresent(temp);
        const message = `the upload's sha256 ${result.sha256} does not match the ${declaredSha} the device declared`;
        failHere(message);
        throw badRequest(message);
      }
      return { ...summary, stored: await publish(job, temp, result, blockMaps.add(result, clock.now()), { deviceChecked: true, completeness: completenessOf(job) }) };
    }
    if (options.checksumFollows) {
      await rename(temp, receivedPath(job.id));
      jobs.recordUpload(job.id, result.size, result.sha256, blockMaps.add(result, clock.now()));
      jobs.note(job.id, null, 'awaiting-checksum');
      return { ...summary, stored: null };
    }
    // A client that never reports a checksum (the original `dd | curl` flow): the body is stored as
    // what it is. Whole when its length is the eMMC's the device announced; otherwise nobody knows.
    return { ...summary, stored: await publish(job, temp, result, blockMaps.add(result, clock.now()), { deviceChecked: false, completeness: completenessOf(job) }) };
  }

  return {
    view,
    /** One page of stored backups, newest first (of one device, when given); `next` is the cursor of the page after. */
    page(filter: { mac?: string; cursor?: number; limit?: number }): BackupPage {
      const { rows, total, skipped, next } = store.page({
        mac: filter.mac === undefined ? undefined : normalizeMac(filter.mac),
        cursor: filter.cursor,
        limit: filter.limit ?? BACKUP_PAGE_SIZE,
      });
      return { backups: rows.map(view), total, skipped, next: next === null ? null : String(next) };
    },
    get(id: number): BackupRow {
      const backup = store.get(id);
      if (!backup) throw notFound(`there is no backup ${id}`);
      return backup;
    },
    pathOf: (backup: BackupRow) => join(dataDir, backup.file),

    /** Streams a device's upload for a running backup job; a newer attempt replaces an older one. */
    async receiveUpload(job: JobRow, body: Readable, options: UploadOptions) {
      if (options.declaredSha256 !== undefined && !SHA256.test(options.declaredSha256.toLowerCase())) {
        throw badRequest('the declared sha256 must be 64 hex digits');
      }
      transfers.abortAll(job.id, new Error('superseded by a newer upload attempt'));
      await removeIfPresent(receivedPath(job.id));
      jobs.recordUpload(job.id, null, null);
      const controller = new AbortController();
      let answering = false;
      // Ending the job elsewhere (cancel, stall) cuts the upload itself, not only the decoder
      // behind it; ending it here (a refusal) leaves the connection for the answer.
      const cut = (reason: Error) => {
        controller.abort(reason);
        if (!answering) body.destroy(reason);
      };
      const failHere = (error: string) => {
        answering = true;
        fail(job, error);
      };
      const untrack = transfers.track(job.id, cut, socketBytes((body as { socket?: Socket }).socket));
      try {
        return await receive(job, body, options, controller.signal, failHere);
      } finally {
        untrack();
      }
    },

    /** The device's verdict on a backup it uploaded with a checksum to follow. */
    async finishFromReport(job: JobRow, report: { status: 'ok' | 'failed'; sha256?: string; error?: string }) {
      const received = receivedPath(job.id);
      if (report.status === 'failed') {
        await removeIfPresent(received);
        return jobs.finish(job.id, { state: 'failed', error: report.error || 'the device reported a failure without a reason' })!;
      }
      if (job.upload_sha256 === null || job.upload_bytes === null) {
        fail(job, 'the device reported success but no complete upload had arrived');
        throw conflict(`job ${job.id} has no complete upload: the backup failed`);
      }
      const sha256 = report.sha256?.toLowerCase();
      if (sha256 !== undefined && sha256 !== job.upload_sha256) {
        await removeIfPresent(received);
        const message = `the device read sha256 ${sha256} but the server received ${job.upload_sha256}: the upload was corrupted`;
        fail(job, message);
        return jobs.get(job.id);
      }
      const proof = { deviceChecked: sha256 !== undefined, completeness: completenessOf(job) };
      await publish(job, received, { size: job.upload_bytes, sha256: job.upload_sha256 }, job.upload_map_id!, proof);
      return jobs.get(job.id);
    },

    /** Makes a backup deployable to other devices, as an image named `name`. */
    async promoteToImage(id: number, name: string) {
      const backup = store.get(id);
      if (!backup) throw notFound(`there is no backup ${id}`);
      const image = await images.adoptVerifiedFile(join(dataDir, backup.file), {
        name,
        size: backup.size,
        sha256: backup.sha256,
        origin: `backup ${backup.id} of ${backup.device_mac}`,
        blockMapId: backup.block_map_id,
      });
      return images.view(image);
    },

    async remove(id: number) {
      const backup = store.get(id);
      if (!backup) throw notFound(`there is no backup ${id}`);
      store.markDeleted(id, clock.now());
      await removeIfPresent(join(dataDir, backup.file));
      bus.emit('backup.changed', { backupId: id });
      log.info({ backup: id }, 'backup removed');
    },

    /** A backup job that ended without publishing leaves no received body behind. */
    async discardUnpublished(jobId: number) {
      await removeIfPresent(receivedPath(jobId));
    },

    /**
     * At start-up: removes temp files of transfers that died with the previous process, and
     * backup files whose row never got committed (a crash between rename and insert).
     */
    async sweepLeftovers(keepReceivedFor: Set<number>) {
      for (const name of await readdir(tempDir)) {
        const match = /^backup-job(\d+)\.received$/.exec(name);
        if (match && keepReceivedFor.has(Number(match[1]))) continue;
        await removeIfPresent(join(tempDir, name));
      }
      const known = new Set(store.allFiles());
      const root = join(dataDir, 'backups');
      for (const entry of await readdir(root, { recursive: true, withFileTypes: true }).catch(() => [])) {
        if (!entry.isFile()) continue;
        const file = relative(dataDir, join(entry.parentPath, entry.name));
        if (!known.has(file)) {
          log.warn({ file }, 'removing a backup file that has no record (left by a crash)');
          await removeIfPresent(join(dataDir, file));
        }
      }
    },
  };
}

export type BackupService = ReturnType<typeof createBackupService>;
