import type { BackupView } from '../../backups/service.js';
import { bytes, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';

export function backupRows(backups: BackupView[]): SafeHtml {
  return html`${backups.map(
    (backup) => html`<tr id="backup-${backup.id}">
  <th scope="row" data-label="Backup">#${backup.id}</th>
  <td data-label="Device"><code>${backup.device_mac}</code></td>
  <td data-label="Taken">${timestamp(backup.created_at)}</td>
  <td data-label="Size">${bytes(backup.size)}</td>
  <td data-label="sha256"><code class="hash" title="${backup.sha256}">${backup.sha256}</code></td>
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

export function backupsPage(backups: BackupView[], device: string | undefined, devices: string[]): SafeHtml {
  return html`<h1>Backups</h1>
<div hx-ext="sse" sse-connect="/dashboard/events?view=backups${device ? `&device=${encodeURIComponent(device)}` : ''}" sse-swap="update" hx-swap="none" hidden></div>
<form class="filters" method="get" action="/backups">
  <label for="backup-device">Device</label>
  <select id="backup-device" name="device">
    <option value="">All devices</option>
    ${devices.map((mac) => html`<option value="${mac}" ${mac === device ? 'selected' : ''}>${mac}</option>`)}
  </select>
  <button type="submit">Show</button>
</form>
<div class="table-wrap">
  <table class="backups">
    <thead><tr><th scope="col">Backup</th><th scope="col">Device</th><th scope="col">Taken</th><th scope="col">Size</th>
      <th scope="col">sha256</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody id="backup-rows">${backupRows(backups)}</tbody>
  </table>
</div>
<p class="hint">Every backup here is complete and verified: its sha256 is what the device read from its eMMC.</p>`;
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
