import { setTimeout as sleep } from 'node:timers/promises';
import type { DeviceView } from '../devices/service.js';
import type { JobView } from '../jobs/view.js';
import type { ApiClient } from './api-client.js';
import { queuedLine, silenceWarning } from './device-silence.js';
import { CliError, EXIT } from './errors.js';
import { duration, printable, rate } from './output.js';
import { createStatusLine, jobProgressLine } from './progress.js';

const POLL_MS = 500;

/** The device as the server sees it now; undefined if that cannot be told (the job goes on regardless). */
export async function deviceOf(api: ApiClient, mac: string): Promise<DeviceView | undefined> {
  try {
    return await api.get<DeviceView>(`/api/devices/${encodeURIComponent(mac)}`);
  } catch {
    return undefined;
  }
}

/**
 * Follows a job to its end, drawing progress; returns it, or throws (exit 1) if it did not end ok.
 * While it is queued, says how long its device has been silent, and warns once (on stderr) when
 * the device goes stale, unless `warned` says that was already said.
 */
export async function followJob(api: ApiClient, jobId: number, options: { quiet?: boolean; warned?: boolean } = {}): Promise<JobView> {
  const status = createStatusLine();
  let warned = options.warned ?? false;
  let job = await api.get<JobView>(`/api/jobs/${jobId}`);
  while (job.state === 'queued' || job.state === 'running') {
    if (job.state === 'queued') {
      const device = await deviceOf(api, job.device_mac);
      const warning = device && silenceWarning(device, api.serverNow());
      if (warning && !warned) {
        status.note(printable(warning));
        warned = true;
      }
      // Only the state keys a plain (non-terminal) line: the warning above already says the device went silent.
      if (!options.quiet) status.update(printable(queuedLine(job, device, api.serverNow())), 'queued');
    } else if (!options.quiet) {
      status.update(jobProgressLine(job), `${job.state}/${job.phase}/${Math.floor((job.bytes_done / (job.bytes_total || 1)) * 10)}`);
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
