import { BACKUP_PAGE_SIZE, type BackupPage, type BackupView } from '../../backups/service.js';
import { bytes, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';

export function backupRows(backups: BackupView[]): SafeHtml {
  return html`${backups.map(
    (backup) => html`<tr id="backup-${backup.id}">
  <th scope="row" data-label="Backup">#${backup.id}</th>
  <td data-label="Device"><code>${backup.device_mac}</code></td>
  <td data-label="Taken">${timestamp(backup.created_at)}</td>
  <td data-label="Size">${bytes(backup.size)}</td>
  <td data-label="sha256"><code class="hash" title="${backup.sha256}">${backup.sha256}</code>
    <span class="sub${backup.verification.completeness === 'whole' ? '' : ' result-unconfirmed'}" data-verification>${backup.verification.summary}</span></td>
  <td class="actions">
    <a class="button" href="/api/backups/${backup.id}/download" download>Download</a>
    <button type="button" hx-get="/dashboard/promote-dialog/${backup.id}" hx-target="#dialog-body" aria-haspopup="dialog">Make image…</button>
    <button type="button" id="delete-backup-${backup.id}" class="button-quiet" hx-delete="/api/backups/${backup.id}" hx-swap="none"
      hx-confirm="Delete backup #${backup.id} of ${backup.device_mac} (${bytes(backup.size)})? This cannot be undone."
      data-toast="Backup #${backup.id} deleted">Delete</button>
  </td>
</tr>`,
  )}`;
}

export function backupsPage(page: BackupPage, filter: { device?: string; cursor?: string; error?: string }): SafeHtml {
  const { device, cursor } = filter;
  const href = (next?: string) => `/backups?${new URLSearchParams({ ...(device ? { device } : {}), ...(next ? { cursor: next } : {}) })}`;
  const stream = new URLSearchParams({ view: 'backups', ...(device ? { device } : {}), ...(cursor ? { cursor } : {}) });
  return html`<h1>Backups</h1>
${filter.error ? '' : html`<div hx-ext="sse" sse-connect="/dashboard/events?${stream.toString()}" sse-swap="update" hx-swap="none" hidden></div>`}
<form class="filters" method="get" action="/backups" role="search">
  <span class="filter"><label for="backup-device">Device MAC</label>
    <input id="backup-device" type="search" name="device" value="${device ?? ''}" maxlength="64" autocomplete="off" placeholder="dc:a6:32:01:02:03"></span>
  <button type="submit">Show</button>
  ${device ? html`<a class="button" href="/backups">All devices</a>` : ''}
</form>
${filter.error ? html`<p class="form-error" role="alert">${filter.error}</p>` : ''}
${page.total > page.backups.length
  ? html`<p class="list-summary" role="status">Showing ${page.skipped + 1}–${page.skipped + page.backups.length} of ${page.total.toLocaleString('en-US')} backups${device ? '' : ' — pick a device to narrow them down'}.</p>`
  : ''}
<div class="table-wrap">
  <table class="backups">
    <thead><tr><th scope="col">Backup</th><th scope="col">Device</th><th scope="col">Taken</th><th scope="col">Size</th>
      <th scope="col">sha256</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody id="backup-rows">${backupRows(page.backups)}</tbody>
  </table>
</div>
<nav class="pager" aria-label="Backup list pages">${cursor ? html`<a href="${href()}">First page</a>` : ''}
  ${page.next ? html`<a href="${href(page.next)}" rel="next">Next ${BACKUP_PAGE_SIZE} →</a>` : ''}</nav>
<p class="hint">Under each sha256: what is known of the backup. "Verified" only where the device's own sha256 of
  what it read matched what arrived; a backup whose eMMC size the device never gave may not be the whole eMMC.</p>`;
}

export function promoteDialog(backup: BackupView): SafeHtml {
  const suggested = `backup-${backup.device_mac.replaceAll(':', '')}-${backup.id}`;
  return html`<h2 id="dialog-title">Make an image from backup #${backup.id}</h2>
<form hx-post="/api/backups/${backup.id}/promote" hx-swap="none" data-close-dialog-on-success data-toast="Image created from backup #${backup.id}">
  <p>The image can then be deployed to other devices. Backup of <code>${backup.device_mac}</code>, ${bytes(backup.size)}.</p>
  <label for="promote-name">Image name</label>
  <input id="promote-name" name="name" value="${suggested}" required pattern="[A-Za-z0-9][A-Za-z0-9._+\\-]{0,127}" autocomplete="off">
  <p class="form-error" data-dialog-error role="alert" hidden></p>
  <div class="dialog-actions">
    <button type="button" data-close-dialog>Cancel</button>
    <button type="submit" class="button-primary">Create image</button>
  </div>
</form>`;
}
