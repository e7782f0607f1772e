import type { Readable } from 'node:stream';
import type { BackupService, UploadOptions } from '../backups/service.js';
import type { FileToSend } from '../http/send-file.js';
import type { ImageLibrary } from '../images/library.js';
import type { JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import type { TransferRegistry } from '../jobs/transfers.js';
import { conflict } from '../shared/errors.js';
import type { ProgressBody, ResultBody } from './schemas.js';

export interface DeviceJobAccess {
  job: number;
  token: string | undefined;
  mac?: string;
}

/** What a device may do with a job it was handed: fetch, upload, report progress and result. */
export function createTransferService(deps: { jobs: JobService; images: ImageLibrary; backups: BackupService; transfers: TransferRegistry }) {
  const { jobs, images, backups, transfers } = deps;

  return {
    /** The image file of a running deploy; the caller streams it and tracks the transfer. */
    imageFor(access: DeviceJobAccess): { job: JobRow; file: FileToSend } {
      const job = jobs.authorizeDevice(access.job, access.token, access.mac, 'deploy');
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
      const job = jobs.authorizeDevice(access.job, access.token, access.mac, 'deploy');
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
      const job = jobs.authorizeDevice(access.job, access.token, access.mac, 'deploy');
      const image = images.get(job.image_id!)!;
      const map = images.blockMapOf(image);
      if (job.encoding !== 'zstd' || !map?.cache_file) throw conflict(`job ${job.id} has no compressed chunks: fetch the image's ranges instead`);
      return { job, file: { path: images.dataPath(map.cache_file), size: map.cache_bytes!, etag: `zstd-chunks:${image.sha256}` } };
    },

    /** Keeps the job alive while bytes flow, and aborts the stream if the job ends meanwhile. */
    trackStream(job: JobRow, stream: { destroy(error?: Error): void; once(event: 'close', listener: () => void): unknown }) {
      const untrack = transfers.track(job.id, (reason) => stream.destroy(reason));
      stream.once('close', () => {
        untrack();
        jobs.touch(job.id);
      });
    },

    upload(access: DeviceJobAccess, body: Readable, options: UploadOptions) {
      const job = jobs.authorizeDevice(access.job, access.token, access.mac, 'backup');
      return backups.receiveUpload(job, body, options);
    },

    progress(access: DeviceJobAccess, report: ProgressBody): JobRow {
      const job = jobs.authorizeDevice(access.job, access.token, report.mac ?? access.mac);
      return jobs.reportProgress(job, report.bytes_done, report.phase ?? null, {
        written: report.bytes_written,
        verified: report.bytes_verified,
        rate: report.rate,
        discarded: report.discarded === undefined ? undefined : report.discarded === 1,
      });
    },

    async result(access: DeviceJobAccess, report: ResultBody): Promise<JobRow> {
      const job = jobs.authorizeDevice(access.job, access.token, report.mac ?? access.mac);
      if (job.kind === 'deploy') return jobs.finishDeploy(job, report);
      return backups.finishFromReport(job, report);
    },
  };
}

export type TransferService = ReturnType<typeof createTransferService>;
