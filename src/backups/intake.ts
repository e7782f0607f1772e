import { randomUUID } from 'node:crypto';
import { readdir, rename, stat } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { DecompressStream } from 'zstd-napi';
import type { CacheBuilder } from '../blockmap/cache-builder.js';
import { writeBlockImage, type BlockImage } from '../blockmap/image-writer.js';
import type { BlockMapStore } from '../blockmap/store.js';
import type { Queries } from '../db/database.js';
import type { FinalOutcome } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import { socketBytes, type TransferRegistry } from '../jobs/transfers.js';
import type { Clock } from '../shared/clock.js';
import { badRequest, conflict, gone, insufficientStorage } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { ensureDir, removeIfPresent } from '../shared/files.js';
import { almostFull } from '../shared/free-space.js';
import { StreamWriteError } from '../shared/stream-errors.js';
import { createPerJobQueue } from './per-job.js';
import { createPublisher } from './publish.js';
import type { BackupCompleteness, BackupRow, BackupStore } from './store.js';

/** What backup intake needs of the job service (src/jobs/service.ts). */
export interface BackupJobs {
  get(id: number): Promise<JobRow>;
  /** Ends an active job; undefined when it had ended already. */
  finish(jobId: number, outcome: FinalOutcome): Promise<JobRow | undefined>;
  /**
   * Ends an active job inside the caller's transaction `tx`: undefined when it had ended already.
   * `announce` (job.changed, and the rest of what an end sets off) is for after `tx` commits.
   */
  finishWithin(tx: Queries, jobId: number, outcome: FinalOutcome): Promise<{ job: JobRow; announce(): Promise<void> } | undefined>;
  note(jobId: number, error: string | null, phase?: string | null): Promise<unknown>;
  touch(jobId: number): Promise<unknown>;
  recordUpload(jobId: number, bytes: number | null, sha256: string | null, mapId?: number | null): Promise<unknown>;
}

export interface IntakeDeps {
  /** Where a backup's row and its job's end are written together (one transaction). */
  db: Queries;
  store: BackupStore;
  blockMaps: BlockMapStore;
  caches: Pick<CacheBuilder, 'enqueue'>;
  jobs: BackupJobs;
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

export interface Received {
  bytes: number;
  sha256: string;
  /** The backup it became; null while the device's checksum is still to come. */
  stored: BackupRow | null;
}

const SHA256 = /^[0-9a-f]{64}$/;

/** A zstd-compressed body as its raw bytes; a cut or damaged stream surfaces as a cut upload. */
function zstdDecoded(body: Readable, signal: AbortSignal): Readable {
  const raw = new DecompressStream();
  pipeline(body, raw, { signal }).catch(() => undefined); // errors reach the reader through `raw`
  return raw;
}

const present = (path: string) => stat(path).then(() => true, () => false);

/**
 * Backup intake. A body streams to a temp file while it is hashed; only a complete body whose
 * length (and sha256, when the device sends one) checks out is renamed into backups/ and
 * recorded, together with its job's end. Anything else leaves neither a row nor a file, and the
 * job says why.
 */
export function createBackupIntake(deps: IntakeDeps) {
  const { store, blockMaps, jobs, transfers, dataDir, clock, log } = deps;
  const tempDir = ensureDir(join(dataDir, 'tmp'));
  const receivedPath = (jobId: number) => join(tempDir, `backup-job${jobId}.received`);
  const publish = createPublisher(deps);
  const oneAtATime = createPerJobQueue();
  /** The upload attempt each job's received body and upload fields belong to: an older one that ends late leaves them alone. */
  const attempts = new Map<number, object>();

  /** The job as it is now; 410 when it has ended (while this request waited its turn). */
  async function stillRunning(jobId: number): Promise<JobRow> {
    const job = await jobs.get(jobId);
    if (job.state !== 'running') throw gone(`job ${jobId} has ended (${job.state}); its URLs no longer work`);
    return job;
  }

  /** A body's length was checked against the eMMC size the device announced, when it announced one. */
  const completenessOf = (job: JobRow): BackupCompleteness => (job.bytes_total === null ? 'size_unknown' : 'whole');

  const fail = (job: JobRow, error: string) => jobs.finish(job.id, { state: 'failed', error });

  /** Streams the body to a temp file, stored sparse, mapped and hashed in one pass. */
  async function write(job: JobRow, body: Readable, options: UploadOptions, signal: AbortSignal, failHere: (error: string) => Promise<unknown>, attempt: object) {
    const declared = options.zstd ? undefined : options.declaredBytes;
    if (declared !== undefined && job.bytes_total !== null && declared !== job.bytes_total) {
      throw badRequest(`the upload is ${declared} bytes but the device's storage is ${job.bytes_total}: a backup must be the whole device`);
    }
    const full = await almostFull(tempDir);
    if (full) {
      await failHere(full);
      throw insufficientStorage(full);
    }
    const temp = join(tempDir, `backup-job${job.id}-${randomUUID()}.part`);
    await jobs.note(job.id, null, 'uploading');
    try {
      // Decoded on the fly when the device compressed it. While bytes flow the transfer
      // registry keeps the job alive: no per-chunk database write.
      const raw = options.zstd ? zstdDecoded(body, signal) : body;
      return { temp, result: await writeBlockImage(raw, temp, { expectedBytes: declared ?? job.bytes_total ?? undefined }) };
    } catch (error) {
      await jobs.touch(job.id);
      if (!(error instanceof StreamWriteError)) throw error;
      const message = `backup upload failed: ${error.message}`;
      log.warn({ job: job.id, bytes: error.bytes, failure: error.failure }, message);
      if (error.failure === 'disk_full') {
        await failHere(message);
        throw insufficientStorage(message);
      }
      // A cut or short body may be retried by the device; the job keeps the reason until then.
      // Not when a newer attempt cut this one: that one is under way, and nothing went wrong.
      if (attempts.get(job.id) === attempt) await jobs.note(job.id, message);
      throw badRequest(message);
    }
  }

  /** What a whole body becomes, one job at a time: a backup, or a body awaiting the device's checksum. */
  async function keep(reported: JobRow, temp: string, result: BlockImage, options: UploadOptions, failHere: (error: string) => Promise<unknown>, attempt: object): Promise<Received> {
    if (attempts.get(reported.id) !== attempt) {
      await removeIfPresent(temp);
      throw conflict(`a newer upload attempt for job ${reported.id} replaced this one`);
    }
    // An end that comes later (cancel, stall) queues its clean-up (discardUnpublished) behind this.
    const job = await stillRunning(reported.id).catch(async (error: unknown) => {
      await removeIfPresent(temp);
      throw error;
    });
    const summary = { bytes: result.size, sha256: result.sha256 };
    const declaredSha = options.declaredSha256?.toLowerCase();
    if (declaredSha !== undefined) {
      if (declaredSha !== result.sha256) {
        await removeIfPresent(temp);
        const message = `the upload's sha256 ${result.sha256} does not match the ${declaredSha} the device declared`;
        await failHere(message);
        throw badRequest(message);
      }
      return { ...summary, stored: await publish(job, temp, result, await blockMaps.add(result, clock.now()), { deviceChecked: true, completeness: completenessOf(job) }) };
    }
    if (options.checksumFollows) {
      await rename(temp, receivedPath(job.id));
      await jobs.recordUpload(job.id, result.size, result.sha256, await blockMaps.add(result, clock.now()));
      await jobs.note(job.id, null, 'awaiting-checksum');
      return { ...summary, stored: null };
    }
    // A client that never reports a checksum (the original `dd | curl` flow): the body is stored as
    // what it is. Whole when its length is the eMMC's the device announced; otherwise nobody knows.
    return { ...summary, stored: await publish(job, temp, result, await blockMaps.add(result, clock.now()), { deviceChecked: false, completeness: completenessOf(job) }) };
  }

  return {
    /** Streams a device's upload for a running backup job; a newer attempt replaces an older one. */
    async receiveUpload(job: JobRow, body: Readable, options: UploadOptions): Promise<Received> {
      if (options.declaredSha256 !== undefined && !SHA256.test(options.declaredSha256.toLowerCase())) {
        throw badRequest('the declared sha256 must be 64 hex digits');
      }
      const attempt = {};
      await oneAtATime(job.id, async () => {
        await stillRunning(job.id);
        attempts.set(job.id, attempt);
        transfers.abortAll(job.id, new Error('superseded by a newer upload attempt'));
        await removeIfPresent(receivedPath(job.id));
        await jobs.recordUpload(job.id, null, null);
      });
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
        return fail(job, error);
      };
      const untrack = transfers.track(job.id, cut, socketBytes((body as { socket?: Socket }).socket));
      try {
        const { temp, result } = await write(job, body, options, controller.signal, failHere, attempt);
        await jobs.touch(job.id);
        return await oneAtATime(job.id, () => keep(job, temp, result, options, failHere, attempt));
      } finally {
        untrack();
        if (attempts.get(job.id) === attempt) attempts.delete(job.id);
      }
    },

    /** The device's verdict on a backup it uploaded with a checksum to follow. */
    finishFromReport: (reported: JobRow, report: { status: 'ok' | 'failed'; sha256?: string; error?: string }): Promise<JobRow> =>
      oneAtATime(reported.id, async () => {
        // Read again in its turn: an upload attempt or another report may have changed it.
        const job = await stillRunning(reported.id);
        const received = receivedPath(job.id);
        if (report.status === 'failed') {
          await removeIfPresent(received);
          return (await fail(job, report.error || 'the device reported a failure without a reason')) ?? jobs.get(job.id);
        }
        if (job.upload_sha256 === null || job.upload_bytes === null) {
          await fail(job, 'the device reported success but no complete upload had arrived');
          throw conflict(`job ${job.id} has no complete upload: the backup failed`);
        }
        const sha256 = report.sha256?.toLowerCase();
        if (sha256 !== undefined && sha256 !== job.upload_sha256) {
          await removeIfPresent(received);
          await fail(job, `the device read sha256 ${sha256} but the server received ${job.upload_sha256}: the upload was corrupted`);
          return jobs.get(job.id);
        }
        if (!(await present(received))) {
          // Moved away by a publish that a stopped server never committed; its file was swept at start.
          const message = 'the received upload is no longer on the server (it stopped while storing it): the backup failed';
          await fail(job, message);
          throw conflict(message);
        }
        const proof = { deviceChecked: sha256 !== undefined, completeness: completenessOf(job) };
        await publish(job, received, { size: job.upload_bytes, sha256: job.upload_sha256 }, job.upload_map_id!, proof);
        return jobs.get(job.id);
      }),

    /**
     * A backup job that ended without publishing leaves no received body behind. Removed in the
     * job's turn, after the intake work under way, and not waited for: that work may be what
     * ended the job, and it waits for the end's follow-ups, this among them.
     */
    discardUnpublished(jobId: number): void {
      void oneAtATime(jobId, () => removeIfPresent(receivedPath(jobId))).catch((error: unknown) =>
        log.warn({ err: error, job: jobId }, 'could not remove the unpublished upload of an ended job'),
      );
    },

    /**
     * At start-up, before any request: removes temp files of transfers that died with the
     * previous process, and backup files whose row never got committed (a crash between the
     * rename and the transaction in `publish`).
     */
    async sweepLeftovers(keepReceivedFor: ReadonlySet<number>): Promise<void> {
      for (const name of await readdir(tempDir)) {
        const match = /^backup-job(\d+)\.received$/.exec(name);
        if (match && keepReceivedFor.has(Number(match[1]))) continue;
        await removeIfPresent(join(tempDir, name));
      }
      const known = new Set(await store.allFiles());
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
