import type { PollOutcome } from './service.js';
import type { JobRow } from './store.js';

export type PollAnswer = Record<string, string | number | null | undefined> & { action: 'none' | 'deploy' | 'backup' };

/** The URLs of one job, for the device holding its token. They stop working when the job ends. */
export function jobUrls(job: Pick<JobRow, 'id' | 'token'>, baseUrl: string) {
  const at = (leaf: string) => `${baseUrl}/api/device-jobs/${job.id}/${leaf}?token=${encodeURIComponent(job.token)}`;
  return {
    image: at('image'),
    manifest: at('manifest'),
    chunks: at('chunks'),
    upload: at('upload'),
    progress: at('progress'),
    result: at('result'),
    files: at('files'),
  };
}

/** What `GET /api/device-action-poll` answers: the public contract existing clients parse. */
export function pollAnswer(outcome: PollOutcome, baseUrl: string): PollAnswer {
  if (outcome.action === 'none') {
    const abandoned = outcome.abandoned;
    return abandoned
      ? { action: 'none', abandoned_job: abandoned.id, message: `job ${abandoned.id} (${abandoned.kind}) failed: ${abandoned.error}` }
      : { action: 'none' };
  }
  const urls = jobUrls(outcome.job, baseUrl);
  // finish (reboot, poweroff, wait) only for a client that asked for it (features=…finish…).
  const common = { job: outcome.job.id, progress_url: urls.progress, result_url: urls.result, ...(outcome.finish ? { finish: outcome.finish } : {}) };
  if (outcome.action === 'deploy') {
    const { plan } = outcome;
    // url/size/sha256 are always there: what a client that writes the whole image needs.
    return {
      action: 'deploy',
      ...common,
      url: urls.image,
      size: outcome.image.size,
      sha256: outcome.image.sha256,
      image: outcome.image.name,
      // Per-device files to write after the image (only a client with the `files` feature gets such a job).
      ...(outcome.files ? { files_url: urls.files } : {}),
      ...(plan.mode === 'sparse'
        ? {
            mode: 'sparse',
            encoding: plan.encoding,
            manifest_url: urls.manifest,
            chunks_url: plan.encoding === 'zstd' ? urls.chunks : undefined,
            full_match: outcome.job.full_match,
          }
        : // A client that sent no features gets exactly the fields of the original contract.
          outcome.job.client_reports
          ? { mode: 'full' }
          : {}),
    };
  }
  const backup = { action: 'backup' as const, ...common, upload_url: urls.upload, size: outcome.job.bytes_total };
  // encoding zstd: the device may send the body compressed (Content-Encoding: zstd).
  return outcome.job.client_reports ? { ...backup, encoding: outcome.job.encoding } : backup;
}
