import { orderedByText, type JobView } from '../../jobs/view.js';
import { duration, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';
import { firstBootNote, resultBadge, throughput } from './jobs.js';

export interface HistoryFilter {
  device?: string;
  state?: string;
  cursor?: string;
  /** Why the filter could not be applied (a malformed MAC). */
  error?: string;
}

/** The History page shows at most this many jobs; older ones are a "next page" away. */
export const HISTORY_PAGE_SIZE = 100;

const STATES = ['ok', 'unconfirmed', 'failed', 'cancelled', 'running', 'queued'];

export function historyPage(jobs: JobView[], filter: HistoryFilter, page: { total: number; next: string | null }, extra: { labels?: boolean } = {}): SafeHtml {
  const { device, state, cursor } = filter;
  const query = new URLSearchParams(Object.entries({ device, state }).filter((entry): entry is [string, string] => Boolean(entry[1])));
  const href = (next?: string) => {
    const params = new URLSearchParams(query);
    if (next) params.set('cursor', next);
    return `/history?${params}`;
  };
  return html`<h1>History</h1>
<form class="filters" method="get" action="/history" role="search">
  <span class="filter"><label for="history-device">Device MAC</label>
    <input id="history-device" type="search" name="device" value="${device ?? ''}" maxlength="64" autocomplete="off" placeholder="dc:a6:32:01:02:03"></span>
  <span class="filter"><label for="history-state">Result</label>
    <select id="history-state" name="state">
      <option value="">Any result</option>
      ${STATES.map((value) => html`<option value="${value}" ${value === state ? 'selected' : ''}>${value}</option>`)}
    </select></span>
  <button type="submit">Filter</button>
  <a class="button" href="/api/jobs.csv${query.size ? `?${query}` : ''}" download>Export CSV</a>
  <a class="button" href="/notify">Webhooks &amp; labels</a>
</form>
${filter.error ? html`<p class="form-error" role="alert">${filter.error}</p>` : ''}
${page.total > jobs.length
  ? html`<p class="list-summary" role="status">Showing ${jobs.length} of ${page.total.toLocaleString('en-US')} jobs${cursor ? ' (older ones)' : ', newest first'} — filter by device or result to narrow them down.</p>`
  : ''}
<div class="table-wrap">
  <table class="history">
    <thead><tr><th scope="col">Job</th><th scope="col">Device</th><th scope="col">Action</th><th scope="col">Ordered by</th><th scope="col">Image / backup</th>
      <th scope="col">Started</th><th scope="col">Duration</th><th scope="col">Throughput</th><th scope="col">Result</th></tr></thead>
    <tbody id="history-rows">
      ${jobs.map(
        (job) => html`<tr id="job-${job.id}">
        <th scope="row" data-label="Job">${job.id}</th>
        <td data-label="Device"><code>${job.device_mac}</code></td>
        <td data-label="Action">${job.kind}</td>
        <td data-label="Ordered by">${orderedByText(job)}</td>
        <td data-label="Image / backup">${job.kind === 'deploy' ? job.image?.name : job.backup_id ? html`backup #${job.backup_id}` : '–'}</td>
        <td data-label="Started">${timestamp(job.started_at ?? job.created_at)}</td>
        <td data-label="Duration">${duration(job.duration_seconds)}</td>
        <td data-label="Throughput">${throughput(job)}</td>
        <td data-label="Result">${resultBadge(job)}
          ${job.verification
            ? html`<span class="sub" data-verification="${job.verification.scope}" title="${job.sha256 ?? ''}">${job.verification.summary}</span>`
            : job.error ? html`<span class="error-text">${job.error}</span>` : ''}${firstBootNote(job)}
          ${extra.labels && job.state === 'ok' ? html`<button type="button" id="reprint-${job.id}" class="button-quiet" hx-post="/api/jobs/${job.id}/label" hx-swap="none"
            data-toast="Label of job ${job.id} queued">Reprint label</button>` : ''}</td>
      </tr>`,
      )}
    </tbody>
  </table>
</div>
${jobs.length ? '' : html`<p class="empty">No jobs match.</p>`}
<nav class="pager" aria-label="History pages">${cursor ? html`<a href="${href()}">Newest jobs</a>` : ''}
  ${page.next ? html`<a href="${href(page.next)}" rel="next">Older ${HISTORY_PAGE_SIZE} →</a>` : ''}</nav>`;
}
