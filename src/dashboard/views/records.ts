import type { DeviceRecord, RecordJob } from '../../records/index.js';
import { orderedByText } from '../../jobs/view.js';
import { bytes, duration, rate, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';
import { firstBootNote } from './jobs.js';

/** The Records page shows this many devices; the rest are a "next page" away. */
export const RECORDS_PAGE_SIZE = 100;

export interface RecordsListing {
  search?: string;
  cursor?: string;
  records: DeviceRecord[];
  total: number;
  next: string | null;
}

const plural = (n: number, word: string) => `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;

function jobRow(job: RecordJob): SafeHtml {
  const source = job.kind === 'deploy' ? job.image?.name : job.backup_id ? `backup #${job.backup_id}` : undefined;
  return html`<tr id="record-job-${job.id}">
    <th scope="row" data-label="Job">${job.id}</th>
    <td data-label="Action">${job.kind}<span class="sub"><code>${job.device_mac}</code></span></td>
    <td data-label="Image / backup">${source ?? '–'}${job.image ? html`<span class="sub hash">sha256 ${job.image.sha256}</span>` : ''}${job.files.map(
      (file) =>
        html`<span class="sub" data-job-file>${file.append ? 'appended to' : 'file'} ${file.path} (partition ${file.partition}) ${file.append ? 'text ' : ''}sha256 <span class="hash">${file.sha256.slice(0, 12)}…</span></span>`,
    )}</td>
    <td data-label="Ordered by">${orderedByText(job)}</td>
    <td data-label="Queued">${timestamp(job.queued_at)}</td>
    <td data-label="Duration">${duration(job.duration_seconds)}<span class="sub">${job.state === 'ok' || job.state === 'unconfirmed' ? rate(job.rate_bytes_per_second) : ''}</span></td>
    <td data-label="Result"><span class="badge badge-${job.state}">${job.state}</span>
      ${job.verification
        ? html`<span class="sub" data-verification="${job.verification.scope}">${job.verification.summary}</span>`
        : job.error ? html`<span class="error-text">${job.error}</span>` : ''}${firstBootNote(job)}</td>
  </tr>`;
}

function recordDetails(record: DeviceRecord): SafeHtml {
  const { emmc } = record;
  const backups = record.backups.filter((backup) => backup.deleted_at === null);
  return html`<details class="record" id="record-${record.keyed_by}-${record.key}">
  <summary><strong>${record.serial ?? record.key}</strong> · ${record.model ?? 'model unknown'} ·
    ${plural(record.jobs.length, 'job')}, ${plural(backups.length, 'backup')} · last seen ${timestamp(record.last_seen_at)}</summary>
  <dl class="facts">
    <dt>Serial</dt><dd>${record.serial ?? html`<span class="muted">not reported (keyed by MAC)</span>`}</dd>
    <dt>MAC${record.macs.length === 1 ? '' : 's'}</dt><dd>${record.macs.map((m, i) => html`${i ? ', ' : ''}<code>${m.mac}</code>`)}</dd>
    <dt>eMMC</dt><dd>${emmc
      ? html`${emmc.manufacturer} ${emmc.name} rev ${emmc.revision}, serial ${emmc.serial}, made ${emmc.manufactured.text}
        <span class="sub hash">CID ${emmc.cid}</span>`
      : html`<span class="muted">no CID reported</span>`}${record.storage_bytes ? html` <span class="sub">${bytes(record.storage_bytes)}</span>` : ''}</dd>
    <dt>First seen</dt><dd>${timestamp(record.first_seen_at)}</dd>
  </dl>
  ${record.jobs.length
    ? html`<div class="table-wrap"><table class="history">
      <thead><tr><th scope="col">Job</th><th scope="col">Action</th><th scope="col">Image / backup</th><th scope="col">Ordered by</th>
        <th scope="col">Queued</th><th scope="col">Duration</th><th scope="col">Result</th></tr></thead>
      <tbody>${record.jobs.map(jobRow)}</tbody></table></div>`
    : html`<p class="empty">No jobs yet.</p>`}
  ${backups.length
    ? html`<ul class="record-backups">${backups.map((b) => html`<li>backup #${b.id} (job ${b.job_id ?? '–'}): ${bytes(b.size)}, sha256 <code class="hash">${b.sha256}</code></li>`)}</ul>`
    : ''}
</details>`;
}

export function recordsPage(listing: RecordsListing): SafeHtml {
  const { search, cursor, records, total, next } = listing;
  const query = new URLSearchParams(search ? { search } : {});
  const href = (at?: string) => `/records?${new URLSearchParams({ ...(search ? { search } : {}), ...(at ? { cursor: at } : {}) })}`;
  return html`<h1>Records</h1>
<form class="filters" method="get" action="/records" role="search">
  <span class="filter"><label for="records-search">Search</label>
    <input id="records-search" type="search" name="search" value="${search ?? ''}" maxlength="200" autocomplete="off" placeholder="serial, MAC, model or eMMC CID"></span>
  <button type="submit">Search</button>
  <a class="button" href="/api/records.csv${query.size ? `?${query}` : ''}" download>Export CSV</a>
</form>
<p class="list-summary" role="status">${search
  ? `${plural(total, 'device')} match${total === 1 ? 'es' : ''}.`
  : total > records.length ? `Showing ${records.length} of ${plural(total, 'device')}, first seen first — search to find one.` : `${plural(total, 'device')}.`}</p>
<div id="records">${records.map(recordDetails)}</div>
${records.length ? '' : html`<p class="empty">${search ? 'No device matches this search.' : 'No device has registered yet.'}</p>`}
<nav class="pager" aria-label="Record pages">${cursor ? html`<a href="${href()}">First page</a>` : ''}
  ${next ? html`<a href="${href(next)}" rel="next">Next ${RECORDS_PAGE_SIZE} →</a>` : ''}</nav>`;
}
