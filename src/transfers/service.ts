import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { BackupService, UploadOptions } from '../backups/service.js';
import type { FileToSend } from '../http/send-file.js';
import type { ImageLibrary } from '../images/library.js';
import type { DeviceJobRequest, JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import { socketBytes, type TransferRegistry } from '../jobs/transfers.js';
import { conflict } from '../shared/errors.js';
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

/** How often the server counts the bytes it sends to a client that reports no progress of its own. */
const SENT_PROGRESS_MS = 2_000;

/** What a device may do with a job it was handed: fetch, upload, report progress and result. */
export function createTransferService(deps: { jobs: JobService; images: ImageLibrary; backups: BackupService; transfers: TransferRegistry }) {
  const { jobs, images, backups, transfers } = deps;
  /** Per deploy job: how many bytes from the image's start have been sent whole (Range resumes included). */
  const sentFromStart = new Map<number, number>();

  /** Counts a finished full-image body; when the whole image has gone out, the job hears of it. */
  function bodySent(job: JobRow, range: OutgoingBody['range']) {
    const reached = sentFromStart.get(job.id) ?? 0;
    if (range.start > reached) return; // a gap: some bytes before this range never went out whole
    const now = Math.max(reached, range.end + 1);
    if (now < range.size) {
      sentFromStart.set(job.id, now);
      return;
    }
    sentFromStart.delete(job.id);
    jobs.imageSent(job.id);
  }

  /**
   * A client that reports no progress (the original `curl url | dd`) still deserves a progress
   * bar: the bytes this server has handed to the socket, labelled as sent, not written.
   */
  function countSending(job: JobRow, body: OutgoingBody): () => void {
    const socket = body.socket;
    if (job.client_reports || !socket) return () => undefined;
    const before = socket.bytesWritten;
    const timer = setInterval(() => {
      const sent = Math.min(body.range.end + 1, body.range.start + Math.max(0, socket.bytesWritten - before));
      try {
        jobs.reportProgress(jobs.get(job.id), sent, 'sending');
      } catch {
        clearInterval(timer); // the job ended meanwhile
      }
    }, SENT_PROGRESS_MS);
    timer.unref();
    return () => clearInterval(timer);
  }

  return {
    /** The image file of a running deploy; the caller streams it and tracks the transfer. */
    imageFor(access: DeviceJobAccess): { job: JobRow; file: FileToSend } {
      const job = jobs.authorizeDevice(access, 'deploy');
      const image = images.get(job.image_id!)!;
      return {
        job,
        file: { path: images.pathOf(image), size: image.size, etag: `sha256:${image.sha256}`, downloadName: `${image.name}.img` },
      };
    },

    /**
     * The chunk list of a sparse deploy, as plain text for a sh client: KEY=value header lines,
     * then `chunk IDX OFFSET LENGTH SHA256 ZOFFSET ZLENGTH` (z fields `-` without the zstd cache).
     */
    manifestFor(access: DeviceJobAccess): string {
      const job = jobs.authorizeDevice(access, 'deploy');
      const image = images.get(job.image_id!)!;
      const map = images.blockMapOf(image);
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
        ...images.chunksOf(image).map((c) => `chunk ${c.idx} ${c.offset} ${c.length} ${c.sha256} ${zstd ? c.zoffset : '-'} ${zstd ? c.zlength : '-'}`),
      ];
      return `${lines.join('\n')}\n`;
    },

    /** The zstd frames of a sparse deploy's chunks (one cache file; devices ask for byte ranges). */
    chunksFor(access: DeviceJobAccess): { job: JobRow; file: FileToSend } {
      const job = jobs.authorizeDevice(access, 'deploy');
      const image = images.get(job.image_id!)!;
      const map = images.blockMapOf(image);
      if (job.encoding !== 'zstd' || !map?.cache_file) throw conflict(`job ${job.id} has no compressed chunks: fetch the image's ranges instead`);
      return { job, file: { path: images.dataPath(map.cache_file), size: map.cache_bytes!, etag: `zstd-chunks:${image.sha256}` } };
    },

    /**
     * Keeps the job alive while bytes flow, and aborts the stream if the job ends meanwhile.
     * For the image itself it also notes when the whole image has been sent.
     */
    trackStream(job: JobRow, body: OutgoingBody, what: 'image' | 'chunks') {
      const untrack = transfers.track(job.id, (reason) => body.stream.destroy(reason), socketBytes(body.socket));
      const stopCounting = what === 'image' ? countSending(job, body) : () => undefined;
      body.stream.once('close', (reason?: Error) => {
        untrack();
        stopCounting();
        jobs.touch(job.id);
        if (what === 'image' && !reason) bodySent(job, body.range);
      });
    },

    /**
     * Whether a silent upload body belongs to a backup job whose device has shown it is alive
     * within `windowMs` (its progress moved): a compressed backup of empty eMMC regions sends
     * next to nothing for minutes while the device reads on. Its token must be the job's own.
     */
    uploadIsAlive(url: string, windowMs: number): boolean {
      const match = /^\/api\/device-jobs\/(\d+)\/upload\?(.*)$/.exec(url);
      if (!match) return false;
      const job = jobs.find(Number(match[1]));
      const token = new URLSearchParams(match[2]).get('token') ?? undefined;
      if (!job || job.state !== 'running' || job.kind !== 'backup' || !tokensEqual(job.token, token)) return false;
      return jobs.quietFor(job) < windowMs;
    },

    upload(access: DeviceJobAccess, body: Readable, options: UploadOptions) {
      const job = jobs.authorizeDevice(access, 'backup');
      return backups.receiveUpload(job, body, options);
    },

    progress(access: DeviceJobAccess, report: ProgressBody): JobRow {
      const job = jobs.authorizeDevice({ ...access, mac: report.mac ?? access.mac });
      if (report.problem) return jobs.retrying(job, report.bytes_done, report.phase ?? null, report.problem);
      return jobs.reportProgress(job, report.bytes_done, report.phase ?? null, {
        written: report.bytes_written,
        verified: report.bytes_verified,
        rate: report.rate,
        discarded: report.discarded === undefined ? undefined : report.discarded === 1,
      });
    },

    async result(access: DeviceJobAccess, report: ResultBody): Promise<JobRow> {
      const job = jobs.authorizeDevice({ ...access, mac: report.mac ?? access.mac });
      if (job.kind === 'deploy') return jobs.finishDeploy(job, report);
      return backups.finishFromReport(job, report);
    },
  };
}

export type TransferService = ReturnType<typeof createTransferService>;
