import type { Readable } from 'node:stream';
import type { BackupService, UploadOptions } from '../backups/service.js';
import type { FileToSend } from '../http/send-file.js';
import type { ImageLibrary } from '../images/library.js';
import type { JobService } from '../jobs/service.js';
import type { JobRow } from '../jobs/store.js';
import type { TransferRegistry } from '../jobs/transfers.js';
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
      return jobs.reportProgress(job, report.bytes_done, report.phase ?? null);
    },

    async result(access: DeviceJobAccess, report: ResultBody): Promise<JobRow> {
      const job = jobs.authorizeDevice(access.job, access.token, report.mac ?? access.mac);
      if (job.kind === 'deploy') return jobs.finishDeploy(job, report);
      return backups.finishFromReport(job, report);
    },
  };
}

export type TransferService = ReturnType<typeof createTransferService>;
