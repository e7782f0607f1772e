import type { JobView } from '../../jobs/view.js';
import { duration, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';
import { resultBadge, throughput } from './jobs.js';

export interface HistoryFilter {
  device?: string;
  state?: string;
}

const STATES = ['ok', 'failed', 'cancelled', 'running', 'queued'];

export function historyPage(jobs: JobView[], filter: HistoryFilter, devices: string[]): SafeHtml {
  const query = new URLSearchParams(Object.entries(filter).filter(([, value]) => value) as Array<[string, string]>).toString();
  return html`<h1>History</h1>
<form class="filters" method="get" action="/history">
  <label for="history-device">Device</label>
  <select id="history-device" name="device">
    <option value="">All devices</option>
    ${devices.map((mac) => html`<option value="${mac}" ${mac === filter.device ? 'selected' : ''}>${mac}</option>`)}
  </select>
  <label for="history-state">Result</label>
  <select id="history-state" name="state">
    <option value="">Any result</option>
    ${STATES.map((state) => html`<option value="${state}" ${state === filter.state ? 'selected' : ''}>${state}</option>`)}
  </select>
  <button type="submit">Filter</button>
  <a class="button" href="/api/jobs.csv${query ? `?${query}` : ''}" download>Export CSV</a>
</form>
<div class="table-wrap">
  <table class="history">
    <thead><tr><th scope="col">Job</th><th scope="col">Device</th><th scope="col">Action</th><th scope="col">Image / backup</th>
      <th scope="col">Started</th><th scope="col">Duration</th><th scope="col">Throughput</th><th scope="col">Result</th></tr></thead>
    <tbody id="history-rows">
      ${jobs.map(
        (job) => html`<tr id="job-${job.id}">
        <th scope="row" data-label="Job">${job.id}</th>
        <td data-label="Device"><code>${job.device_mac}</code></td>
        <td data-label="Action">${job.kind}</td>
        <td data-label="Image / backup">${job.kind === 'deploy' ? job.image?.name : job.backup_id ? html`backup #${job.backup_id}` : '–'}</td>
        <td data-label="Started">${timestamp(job.started_at ?? job.created_at)}</td>
        <td data-label="Duration">${duration(job.duration_seconds)}</td>
        <td data-label="Throughput">${throughput(job)}</td>
        <td data-label="Result">${resultBadge(job)}
          ${job.state === 'ok' ? html`<code class="hash" title="${job.sha256}">${job.sha256?.slice(0, 12)}…</code>` : job.error ? html`<span class="error-text">${job.error}</span>` : ''}</td>
      </tr>`,
      )}
    </tbody>
  </table>
</div>
${jobs.length ? '' : html`<p class="empty">No jobs match.</p>`}`;
}
