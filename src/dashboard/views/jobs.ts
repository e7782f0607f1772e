import { stateText, type JobView } from '../../jobs/view.js';
import { bytes, duration, rate, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';

const ACTION: Record<JobView['kind'], string> = { deploy: 'Deploy', backup: 'Backup' };
const PHASE: Record<string, string> = {
  writing: 'Writing',
  verifying: 'Verifying',
  'verifying-full': 'Verifying the whole eMMC',
  syncing: 'Syncing',
  uploading: 'Uploading',
  'awaiting-checksum': 'Checking',
  sending: 'Sending',
  sent: 'Sent; waiting for the device to report',
};

/** ", 96 MB of it verified": a client that reads chunks back while it writes says how far it got. */
function verifiedSoFar(job: JobView): string {
  if (job.phase !== 'writing' || !job.bytes_verified) return '';
  return `, ${bytes(job.bytes_verified)} of it verified`;
}

/** " mapped (zstd)": a sparse deploy counts only the image's mapped bytes. */
function sparse(job: JobView): string {
  if (job.kind !== 'deploy' || job.transfer.mode !== 'sparse') return '';
  return ` mapped${job.transfer.encoding === 'zstd' ? ' (zstd)' : ''}`;
}

export function percent(job: JobView): number {
  if (!job.bytes_total) return 0;
  return Math.min(100, Math.floor((job.bytes_done / job.bytes_total) * 100));
}

/** "9 min left": the time to `deadline`, rounded up, in the words the Devices list uses. */
export function timeLeft(deadline: string, now: number): string {
  const seconds = Math.ceil((Date.parse(deadline) - now) / 1000);
  if (seconds <= 0) return 'its deadline has passed';
  if (seconds < 60) return `${seconds} s left`;
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 60) return `${minutes} min left`;
  return `${Math.floor(minutes / 60)} h${minutes % 60 ? ` ${minutes % 60} min` : ''} left`;
}

/** What the row is drawn with besides the job: the server's time, and whether the device netboots next. */
export interface JobStatusContext {
  now: number;
  netbootEnabled: boolean;
}

/** An ok deploy's first boot on its result line: awaited (with the time left) or confirmed. */
function firstBootPart(job: JobView, now: number): SafeHtml | '' {
  const boot = job.first_boot;
  if (boot?.state === 'awaiting') {
    const left = boot.deadline_at ? `, ${timeLeft(boot.deadline_at, now)}` : '';
    return html` · <span data-first-boot="awaiting" title="${boot.deadline_at ? `deadline ${boot.deadline_at}` : ''}">${boot.summary}${left}</span>`;
  }
  if (boot?.state === 'confirmed') return html` · <span data-first-boot="confirmed" title="${boot.confirmed_at ? `at ${boot.confirmed_at}` : ''}">${boot.summary}</span>`;
  return '';
}

/**
 * A deploy whose first boot did not call back in time: flagged like a job sent but never
 * confirmed, with the server's sentence and what happens next.
 */
function firstBootFlag(job: JobView, context: JobStatusContext): SafeHtml | '' {
  const boot = job.first_boot;
  if (boot?.state !== 'not_confirmed') return '';
  const next = context.netbootEnabled ? '; netboot is on again, so its next boot brings it back into provisioning' : '';
  return html`<span class="job-line result-unconfirmed" data-first-boot="not_confirmed"><span aria-hidden="true">!</span> First boot ${boot.summary}${next}</span>`;
}

/**
 * What a device row shows of its job: live progress while it runs, then the result in words.
 * Without `context` (a test's look at one job) the time left is counted from now, and nothing is said of netboot.
 */
export function jobStatus(job: JobView, context: JobStatusContext = { now: Date.now(), netbootEnabled: false }): SafeHtml {
  const action = ACTION[job.kind];
  if (job.state === 'queued') {
    return html`<span class="job-line">${action} queued; waiting for the device to poll</span>`;
  }
  if (job.state === 'running') {
    const phase = PHASE[job.phase ?? ''] ?? 'Starting';
    const value = percent(job);
    const eta = job.eta_seconds === null ? '' : ` · ETA ${duration(job.eta_seconds)}`;
    return html`<div class="progress" role="progressbar" aria-label="${action} progress" aria-valuemin="0" aria-valuemax="100"
        aria-valuenow="${value}" aria-valuetext="${phase} ${value}%"><div class="progress-bar" style="width: ${value}%"></div></div>
      <span class="job-line" data-job-progress>${phase} ${bytes(job.bytes_done)} / ${bytes(job.bytes_total)}${sparse(job)}${verifiedSoFar(job)} · ${rate(job.rate_bytes_per_second)}${eta}</span>`;
  }
  if (job.state === 'ok') {
    return html`<span class="job-line result-ok"><span aria-hidden="true">✓</span> ${action} ok · <span data-verification="${job.verification?.scope ?? ''}"
      title="${job.sha256 ?? ''}">${job.verification?.summary ?? 'nothing was verified'}</span>${firstBootPart(job, context.now)} · ${timestamp(job.ended_at)}</span>${firstBootFlag(job, context)}`;
  }
  if (job.state === 'unconfirmed') {
    const what = job.kind === 'deploy' ? 'sent, not confirmed' : 'received, not confirmed whole';
    return html`<span class="job-line result-unconfirmed"><span aria-hidden="true">?</span> ${action} ${what} ·
      <span data-verification="${job.verification?.scope ?? ''}">${job.verification?.summary ?? job.error ?? ''}</span> · ${timestamp(job.ended_at)}</span>`;
  }
  const verb = job.state === 'cancelled' ? 'cancelled' : 'failed';
  return html`<span class="job-line result-${job.state}"><span aria-hidden="true">✗</span> ${action} ${verb}: ${job.error ?? 'no reason given'}</span>`;
}

/**
 * Under a job's result badge (History, Records): its first boot, as stateText words it after
 * the state ("ok · confirmed: booted …"); flagged when not confirmed. Nothing when none is awaited.
 */
export function firstBootNote(job: Pick<JobView, 'state' | 'first_boot'>): SafeHtml | '' {
  const boot = job.first_boot;
  if (!boot || stateText(job) === job.state) return '';
  return html`<span class="sub${boot.state === 'not_confirmed' ? ' result-unconfirmed' : ''}" data-first-boot="${boot.state}"
    title="${stateText(job)}">${boot.summary}</span>`;
}

export function resultBadge(job: JobView): SafeHtml {
  return html`<span class="badge badge-${job.state}">${job.state}</span>`;
}

export function throughput(job: JobView): string {
  return job.state === 'ok' || job.state === 'unconfirmed' ? rate(job.rate_bytes_per_second) : '–';
}
