import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { BackupService, UploadOptions } from '../backups/service.js';
import type { FileToSend } from '../http/send-file.js';
import type { ImageLibrary } from '../images/library.js';
import type { DeviceJobRequest, JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import { socketBytes, type TransferRegistry } from '../jobs/transfers.js';
import { AppError, conflict } from '../shared/errors.js';
import { tokensEqual } from '../shared/tokens.js';
import type { ProgressBody, ResultBody } from './schemas.js';

/** A device's request to a job URL; its source address must be the one that took the job. */
export type DeviceJobAccess = DeviceJobRequest;

/** A file body going out on a socket, and which bytes of the file it carries. */
export interface OutgoingBody {
  stream: { destroy(error?: Error): void; once(event: 'close', listener: (reason?: Error) => void): unknown };
  socket: (Socket & { bytesWritten: number }) | null;
  /** Inclusive byte range of the file, and the file's size; undefined when nothing is sent. */
  range: { start: number; end: number; size: number };
}

export interface TransferServiceDeps {
  jobs: JobService;
  images: ImageLibrary;
  backups: BackupService;
  transfers: TransferRegistry;
  log: Logger;
}

/** How often the server counts the bytes it sends to a client that reports no progress of its own. */
const SENT_PROGRESS_MS = 2_000;

const jobEnded = (error: unknown) => error instanceof AppError && error.statusCode === 410;

/** What a device may do with a job it was handed: fetch, upload, report progress and result. */
export function createTransferService(deps: TransferServiceDeps) {
  const { jobs, images, backups, transfers, log } = deps;
  /** Per deploy job: how many bytes from the image's start have been sent whole (Range resumes included). */
  const sentFromStart = new Map<number, number>();
  /** Jobs whose sign of life is being written now. */
  const touching = new Set<number>();

  /**
   * A sign of life for the job, written without holding up the stream that gives it. A sparse
   * deploy fetches thousands of ranges: while one touch of a job is on its way, others are
   * dropped (they would write the same instant, give or take a round trip).
   */
  function touchSoon(jobId: number) {
    if (touching.has(jobId)) return;
    touching.add(jobId);
    void jobs.touch(jobId).then(
      () => touching.delete(jobId),
      (error: unknown) => {
        touching.delete(jobId);
        log.warn({ err: error, job: jobId }, 'could not note that bytes moved for the job');
      },
    );
  }

  /** Counts a finished full-image body; when the whole image has gone out, the job hears of it. */
  async function bodySent(job: JobRow, range: OutgoingBody['range']) {
    const reached = sentFromStart.get(job.id) ?? 0;
    if (range.start > reached) return; // a gap: some bytes before this range never went out whole
    const now = Math.max(reached, range.end + 1);
    if (now < range.size) {
      sentFromStart.set(job.id, now);
      return;
    }
    sentFromStart.delete(job.id);
    await jobs.imageSent(job.id);
  }

  /**
   * A client that reports no progress (the original `curl url | dd`) still deserves a progress
   * bar: the bytes this server has handed to the socket, labelled as sent, not written. One
   * report at a time; stopping waits for the one under way, so that it cannot land after what
   * follows the body (the 'sent' phase).
   */
  function countSending(job: JobRow, body: OutgoingBody): () => Promise<void> {
    const socket = body.socket;
    if (job.client_reports || !socket) return async () => undefined;
    const before = socket.bytesWritten;
    let reporting: Promise<void> | undefined;
    const report = async (sent: number) => {
      try {
        await jobs.reportProgress(await jobs.get(job.id), sent, 'sending');
      } catch (error) {
        clearInterval(timer); // the job ended meanwhile, or its row cannot be written: the bar stops, the bytes go on
        if (!jobEnded(error)) log.warn({ err: error, job: job.id }, 'could not report the bytes sent');
      } finally {
        reporting = undefined;
      }
    };
    const timer = setInterval(() => {
      if (reporting) return;
      reporting = report(Math.min(body.range.end + 1, body.range.start + Math.max(0, socket.bytesWritten - before)));
    }, SENT_PROGRESS_MS);
    timer.unref();
    return async () => {
      clearInterval(timer);
      await reporting;
    };
  }

  /** The job and image of a running deploy. */
  async function deployOf(access: DeviceJobAccess) {
    const job = await jobs.authorizeDevice(access, 'deploy');
    return { job, image: (await images.get(job.image_id!))! };
  }

  return {
    /** The image file of a running deploy; the caller streams it and tracks the transfer. */
    async imageFor(access: DeviceJobAccess): Promise<{ job: JobRow; file: FileToSend }> {
      const { job, image } = await deployOf(access);
      return {
        job,
        file: { path: images.pathOf(image), size: image.size, etag: `sha256:${image.sha256}`, downloadName: `${image.name}.img` },
      };
    },

    /**
     * The chunk list of a sparse deploy, as plain text for a sh client: KEY=value header lines,
     * then `chunk IDX OFFSET LENGTH SHA256 ZOFFSET ZLENGTH` (z fields `-` without the zstd cache).
     */
    async manifestFor(access: DeviceJobAccess): Promise<string> {
      const { job, image } = await deployOf(access);
      const map = await images.blockMapOf(image);
      if (job.transfer_mode !== 'sparse' || !map) throw conflict(`job ${job.id} sends the whole image: fetch its url instead`);
      const zstd = job.encoding === 'zstd';
      const lines = [
        `IMAGE_SIZE=${image.size}`,
        `IMAGE_SHA256=${image.sha256}`,
        `SPARSE_SHA256=${map.sparse_sha256}`,
        `MAPPED_BYTES=${map.mapped_bytes}`,
        `CHUNKS=${map.chunk_count}`,
        `ENCODING=${job.encoding}`,
        `FULL_MATCH=${job.full_match}`,
        ...(await images.chunksOf(image)).map((c) => `chunk ${c.idx} ${c.offset} ${c.length} ${c.sha256} ${zstd ? c.zoffset : '-'} ${zstd ? c.zlength : '-'}`),
      ];
      return `${lines.join('\n')}\n`;
    },

    /** The zstd frames of a sparse deploy's chunks (one cache file; devices ask for byte ranges). */
    async chunksFor(access: DeviceJobAccess): Promise<{ job: JobRow; file: FileToSend }> {
      const { job, image } = await deployOf(access);
      const map = await images.blockMapOf(image);
      if (job.encoding !== 'zstd' || !map?.cache_file) throw conflict(`job ${job.id} has no compressed chunks: fetch the image's ranges instead`);
      return { job, file: { path: images.dataPath(map.cache_file), size: map.cache_bytes!, etag: `zstd-chunks:${image.sha256}` } };
    },

    /**
     * Keeps the job alive while bytes flow, and aborts the stream if the job ends meanwhile.
     * For the image itself it also notes when the whole image has been sent.
     */
    trackStream(job: JobRow, body: OutgoingBody, what: 'image' | 'chunks') {
      const untrack = transfers.track(job.id, (reason) => body.stream.destroy(reason), socketBytes(body.socket));
      const stopCounting = what === 'image' ? countSending(job, body) : async () => undefined;
      body.stream.once('close', (reason?: Error) => {
        untrack();
        touchSoon(job.id);
        const closed = async () => {
          await stopCounting();
          if (what === 'image' && !reason) await bodySent(job, body.range);
        };
        void closed().catch((error: unknown) => log.warn({ err: error, job: job.id }, 'could not note the end of an image transfer'));
      });
    },

    /**
     * Whether a silent upload body belongs to a backup job whose device has shown it is alive
     * within `windowMs` (its progress moved): a compressed backup of empty eMMC regions sends
     * next to nothing for minutes while the device reads on. Its token must be the job's own.
     */
    async uploadIsAlive(url: string, windowMs: number): Promise<boolean> {
      const match = /^\/api\/device-jobs\/(\d+)\/upload\?(.*)$/.exec(url);
      if (!match) return false;
      const job = await jobs.find(Number(match[1]));
      const token = new URLSearchParams(match[2]).get('token') ?? undefined;
      if (!job || job.state !== 'running' || job.kind !== 'backup' || !tokensEqual(job.token, token)) return false;
      return jobs.quietFor(job) < windowMs;
    },

    async upload(access: DeviceJobAccess, body: Readable, options: UploadOptions) {
      const job = await jobs.authorizeDevice(access, 'backup');
      return backups.receiveUpload(job, body, options);
    },

    async progress(access: DeviceJobAccess, report: ProgressBody): Promise<JobRow> {
      const job = await jobs.authorizeDevice({ ...access, mac: report.mac ?? access.mac });
      if (report.problem) return jobs.retrying(job, report.bytes_done, report.phase ?? null, report.problem);
      return jobs.reportProgress(job, report.bytes_done, report.phase ?? null, {
        written: report.bytes_written,
        verified: report.bytes_verified,
        rate: report.rate,
        discarded: report.discarded === undefined ? undefined : report.discarded === 1,
      });
    },

    async result(access: DeviceJobAccess, report: ResultBody): Promise<JobRow> {
      const job = await jobs.authorizeDevice({ ...access, mac: report.mac ?? access.mac });
      if (job.kind === 'deploy') return jobs.finishDeploy(job, report);
      return backups.finishFromReport(job, report);
    },
  };
}

export type TransferService = ReturnType<typeof createTransferService>;
