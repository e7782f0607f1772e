import { setTimeout as sleep } from 'node:timers/promises';
import type { JobView } from '../jobs/view.js';
import type { ApiClient } from './api-client.js';
import { CliError, EXIT } from './errors.js';
import { duration, rate } from './output.js';
import { createStatusLine, jobProgressLine } from './progress.js';

const POLL_MS = 500;

/** Follows a job to its end, drawing progress; returns it, or throws (exit 1) if it did not end ok. */
export async function followJob(api: ApiClient, jobId: number, options: { quiet?: boolean } = {}): Promise<JobView> {
  const status = createStatusLine();
  let job = await api.get<JobView>(`/api/jobs/${jobId}`);
  while (job.state === 'queued' || job.state === 'running') {
    if (!options.quiet) {
      const line = job.state === 'queued' ? `job ${job.id}: waiting for ${job.device_mac} to poll…` : jobProgressLine(job);
      status.update(line, `${job.state}/${job.phase}/${Math.floor((job.bytes_done / (job.bytes_total || 1)) * 10)}`);
    }
    await sleep(POLL_MS);
    job = await api.get<JobView>(`/api/jobs/${jobId}`);
  }
  status.done();
  if (job.state !== 'ok') {
    // Unconfirmed is not ok: a script waiting for a verified deploy must not go on.
    const reason = job.state === 'unconfirmed' ? job.verification?.summary ?? job.error : job.error;
    throw new CliError(`job ${job.id} (${job.kind} on ${job.device_mac}) ${job.state}: ${reason ?? 'no reason given'}`, EXIT.failed);
  }
  return job;
}

export function describeFinished(job: JobView): string {
  const what = job.kind === 'deploy' ? `deployed ${job.image?.name ?? 'image'} to ${job.device_mac}` : `backed up ${job.device_mac} as backup ${job.backup_id}`;
  return `job ${job.id} ok: ${what} in ${duration(job.duration_seconds)} (${rate(job.rate_bytes_per_second)}); ${job.verification?.summary ?? 'nothing was verified'}`;
}
