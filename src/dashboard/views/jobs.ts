import type { JobView } from '../../jobs/view.js';
import { bytes, duration, rate, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';

const ACTION: Record<JobView['kind'], string> = { deploy: 'Deploy', backup: 'Backup' };
const PHASE: Record<string, string> = {
  writing: 'Writing',
  verifying: 'Verifying',
  uploading: 'Uploading',
  'awaiting-checksum': 'Checking',
  sending: 'Sending',
  sent: 'Sent; waiting for the device to report',
};

/** " mapped (zstd)": a sparse deploy counts only the image's mapped bytes. */
function sparse(job: JobView): string {
  if (job.kind !== 'deploy' || job.transfer.mode !== 'sparse') return '';
  return ` mapped${job.transfer.encoding === 'zstd' ? ' (zstd)' : ''}`;
}

export function percent(job: JobView): number {
  if (!job.bytes_total) return 0;
  return Math.min(100, Math.floor((job.bytes_done / job.bytes_total) * 100));
}

/** What a device row shows of its job: live progress while it runs, then the result in words. */
export function jobStatus(job: JobView): SafeHtml {
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
      <span class="job-line" data-job-progress>${phase} ${bytes(job.bytes_done)} / ${bytes(job.bytes_total)}${sparse(job)} · ${rate(job.rate_bytes_per_second)}${eta}</span>`;
  }
  if (job.state === 'ok') {
    return html`<span class="job-line result-ok"><span aria-hidden="true">✓</span> ${action} ok · <span data-verification="${job.verification?.scope ?? ''}"
      title="${job.sha256 ?? ''}">${job.verification?.summary ?? 'nothing was verified'}</span>${job.first_boot?.state === 'awaiting' || job.first_boot?.state === 'confirmed' || job.first_boot?.state === 'not_confirmed' ? html` · <span data-first-boot="${job.first_boot.state}">${job.first_boot.summary}</span>` : ''} · ${timestamp(job.ended_at)}</span>`;
  }
  if (job.state === 'unconfirmed') {
    const what = job.kind === 'deploy' ? 'sent, not confirmed' : 'received, not confirmed whole';
    return html`<span class="job-line result-unconfirmed"><span aria-hidden="true">?</span> ${action} ${what} ·
      <span data-verification="${job.verification?.scope ?? ''}">${job.verification?.summary ?? job.error ?? ''}</span> · ${timestamp(job.ended_at)}</span>`;
  }
  const verb = job.state === 'cancelled' ? 'cancelled' : 'failed';
  return html`<span class="job-line result-${job.state}"><span aria-hidden="true">✗</span> ${action} ${verb}: ${job.error ?? 'no reason given'}</span>`;
}

export function resultBadge(job: JobView): SafeHtml {
  return html`<span class="badge badge-${job.state}">${job.state}</span>`;
}

export function throughput(job: JobView): string {
  return job.state === 'ok' || job.state === 'unconfirmed' ? rate(job.rate_bytes_per_second) : '–';
}
