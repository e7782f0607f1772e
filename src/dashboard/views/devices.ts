import type { DeviceView } from '../../devices/service.js';
import { DEFAULT_CONFIRM_TIMEOUT_S } from '../../first-boot/service.js';
import type { OrderOptions } from '../../jobs/service.js';
import { FIRST_BOOT_HOOKS, type FirstBootHook } from '../../first-boot/hook-files.js';
import type { ImageView } from '../../images/library.js';
import { ago, bytes, macId, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';
import { activeNote, devicePager, deviceSearchForm, deviceSummary, devicesHref, newDevicesNote, noDevicesNote, type DevicePageQuery } from './device-list.js';
import { jobStatus } from './jobs.js';
import { backupQuestion, pollWarning, silenceNote, waitsForClient } from './polling.js';

function state(device: DeviceView): { key: string; label: string } {
  const job = device.active_job;
  if (job?.state === 'running') return { key: 'busy', label: job.kind === 'deploy' ? 'Deploying' : 'Backing up' };
  if (job?.state === 'queued') return { key: 'queued', label: job.kind === 'deploy' ? 'Deploy queued' : 'Backup queued' };
  if (device.stale) return { key: 'stale', label: 'Stale' };
  if (device.client_hung_up_at) return { key: 'stale', label: 'Not polling' };
  if (!device.registered) return { key: 'booting', label: 'Netbooting' };
  return { key: 'ready', label: 'Waiting for work' };
}

/** Boot stage and next-boot policy, with the switch between "netboot again" and "eMMC next". */
function bootCell(device: DeviceView, id: string): SafeHtml {
  const { netboot } = device;
  const stage = netboot.stage
    ? html`<span class="sub" data-boot-stage>Boot: ${netboot.stage}${device.registered ? '' : ', no client yet'}</span>`
    : '';
  const next = netboot.enabled ? 'netboot' : 'eMMC';
  return html`${stage}<span class="sub">Next boot: <strong>${next}</strong>
    <button type="button" id="netboot-${id}" class="button-link" hx-post="/api/devices/${device.mac}/netboot" hx-vals='{"enabled": ${netboot.enabled ? 'false' : 'true'}}'
      hx-swap="none" data-toast="${device.mac} ${netboot.enabled ? 'boots from eMMC next' : 'netboots again'}">${netboot.enabled ? 'Boot eMMC next' : 'Netboot again'}</button></span>`;
}

/** Backup queues at once; for a device whose client may never poll, only after saying so. */
function backupButton(device: DeviceView, id: string): SafeHtml {
  const question = backupQuestion(device);
  const confirm = question ? html` hx-confirm="${question}" data-confirm-yes="Queue the backup" data-confirm-no="Do not queue it"` : '';
  return html`<button type="button" id="backup-${id}" hx-post="/api/devices/${device.mac}/backup" hx-swap="none"${confirm}
          data-toast="Backup of ${device.mac} queued${question ? '; it starts when its client polls' : ''}">Backup</button>`;
}

/** A rule holds the device for a person: say which and why, with the way to the Rules page. */
function ruleHold(device: DeviceView): SafeHtml | '' {
  const hold = device.rule_hold;
  if (!hold) return '';
  return html`<span class="sub" data-rule-hold>Held by rule <a href="/rules">${hold.rule}</a>${hold.reason ? `: ${hold.reason}` : ''}</span>`;
}

/**
 * One device's row; its id lets a live update replace exactly this row (`oob`: marked for an
 * htmx out-of-band swap of the row already on the page).
 */
export function deviceRow(device: DeviceView, now: number, oob = false): SafeHtml {
  const id = macId(device.mac);
  const current = state(device);
  const active = device.active_job;
  return html`<tr id="device-${id}" data-mac="${device.mac}" data-state="${current.key}"${oob ? html` hx-swap-oob="outerHTML"` : ''}>
  <th scope="row" data-label="Device"><code>${device.mac}</code><span class="sub">IP ${device.ip ?? '–'}</span></th>
  <td data-label="Hardware">${device.model ?? html`<span class="muted">Model unknown</span>`}<span class="sub">Serial ${device.serial ?? '–'}</span></td>
  <td data-label="eMMC" class="nowrap">${bytes(device.storage_bytes)}</td>
  <td data-label="State"><span class="badge badge-${current.key}">${current.label}</span>${silenceNote(device, now)}${ruleHold(device)}${bootCell(device, id)}</td>
  <td data-label="Last seen" class="nowrap"><time datetime="${device.last_seen_at}" data-relative>${ago(device.last_seen_at, now)}</time></td>
  <td data-label="Job" class="job-cell">${device.latest_job ? jobStatus(device.latest_job, { now, netbootEnabled: device.netboot.enabled }) : html`<span class="muted">No job yet</span>`}</td>
  <td class="actions">
    ${active
      ? html`<button type="button" id="cancel-${id}" class="button-quiet" hx-post="/api/jobs/${active.id}/cancel" hx-swap="none"
          hx-confirm="Cancel job ${active.id} (${active.kind} on ${device.mac})?${active.kind === 'deploy' && active.state === 'running' ? ' The eMMC will hold a partial image.' : ''}"
          data-toast="Job ${active.id} cancelled">Cancel</button>`
      : html`<button type="button" id="deploy-${id}" class="button-primary" hx-get="/dashboard/deploy-dialog/${device.mac}"
          hx-target="#dialog-body" hx-swap="innerHTML" aria-haspopup="dialog">Deploy…</button>
        ${backupButton(device, id)}`}
  </td>
</tr>`;
}

export function deviceRows(devices: DeviceView[], now: number): SafeHtml {
  return html`${devices.map((device) => deviceRow(device, now))}`;
}

export interface DeviceListing {
  query: DevicePageQuery;
  devices: DeviceView[];
  total: number;
  skipped: number;
  next: string | null;
  /** Devices with a job queued or running, anywhere in the list. */
  active: number;
}

/** The Devices page: one page of the list (at most DEVICE_PAGE_SIZE rows), searchable, live. */
export function devicesPage(listing: DeviceListing, now: number, linePausedAt: string | null = null): SafeHtml {
  const { query, devices } = listing;
  const stream = devicesHref(query).replace(/^\/\??/, '');
  return html`<h1>Devices</h1>
${linePausedAt ? html`<p class="warning" data-line-paused>The line is paused (since ${timestamp(linePausedAt)}): rules order nothing and their queued jobs wait. <a href="/rules">Resume it on the Rules page.</a></p>` : ''}
<section aria-labelledby="detected-heading">
  <h2 id="detected-heading">Device detected (Network)</h2>
  <p class="hint">A CM4 appears here when its provisioning client registers, and updates live.
    Devices not heard from for 90 s are marked stale.</p>
  ${deviceSearchForm(query)}
  <div id="device-list">
    <div hx-ext="sse" sse-connect="/dashboard/events?view=devices${stream ? `&${stream}` : ''}" sse-swap="update" hx-swap="none" hidden></div>
    ${deviceSummary(query, { shown: devices.length, skipped: listing.skipped, total: listing.total })}
    ${activeNote(query, listing.active)}
    ${newDevicesNote(query, 0)}
    <div class="table-wrap">
      <table class="devices">
        <thead><tr>
          <th scope="col">Device (MAC, IP)</th><th scope="col">Hardware</th><th scope="col">eMMC</th>
          <th scope="col">State</th><th scope="col">Last seen</th><th scope="col">Job</th>
          <th scope="col"><span class="visually-hidden">Actions</span></th>
        </tr></thead>
        <tbody id="device-rows">${deviceRows(devices, now)}</tbody>
      </table>
    </div>
    ${noDevicesNote(query, devices.length)}
    ${devicePager(query, listing.next)}
  </div>
</section>`;
}

/** A profile of per-device files as the pages offer it (src/device-files/). */
export interface ProfileChoice {
  name: string;
  files: number;
}

/** What a device does once its job is ok: `finish` in an order or a rule, in the pages' words; reboot is the default. */
export const FINISH_CHOICES = [
  { value: 'reboot', label: 'reboots' },
  { value: 'poweroff', label: 'powers off' },
  { value: 'wait', label: 'waits with its activity LED steady on' },
] as const;

/** `<option>`s for a profile select: "none" first (nothing posted), then each profile. */
export function profileOptions(profiles: readonly ProfileChoice[]): SafeHtml {
  return html`<option value="" selected>none</option>
    ${profiles.map((profile) => html`<option value="${profile.name}">${profile.name} (${profile.files} file${profile.files === 1 ? '' : 's'})</option>`)}`;
}

/** The profile select of the Deploy dialog; nothing when there is no profile to choose. */
function profileField(profiles: readonly ProfileChoice[]): SafeHtml | '' {
  if (profiles.length === 0) return '';
  return html`<label for="deploy-profile">Per-device files</label>
  <select id="deploy-profile" name="profile" aria-describedby="deploy-profile-hint">${profileOptions(profiles)}</select>
  <p class="hint" id="deploy-profile-hint">Written into the image's partitions after it is verified. A value this device lacks refuses the order.</p>`;
}

/** The first-boot hooks as the Deploy dialog and the "Add a rule" form offer them (src/first-boot/hook-files.ts). */
export const HOOK_CHOICES: ReadonlyArray<{ value: FirstBootHook; label: string }> = FIRST_BOOT_HOOKS.map((value) => ({
  value,
  label: {
    cmdline: 'boot partition at /boot/firmware (Bookworm and later)',
    'cmdline-boot': 'boot partition at /boot (Bullseye and earlier)',
    none: 'none: the profile carries the hook',
  }[value],
}));

/** Minutes the first boot is awaited unless the form says otherwise (the server's default, 600 s). */
export const DEFAULT_CONFIRM_MINUTES = DEFAULT_CONFIRM_TIMEOUT_S / 60;

/** `<option>`s for a hook select, the default (cmdline) chosen. */
export function hookOptions(): SafeHtml {
  return html`${HOOK_CHOICES.map((hook) => html`<option value="${hook.value}" ${hook.value === 'cmdline' ? 'selected' : ''}>${hook.label}</option>`)}`;
}

/** The Deploy dialog as posted: the API's deploy body, but the first boot's timeout in minutes. */
export interface DeployForm {
  image?: string;
  after?: 'emmc' | 'netboot';
  full_match?: boolean;
  finish?: 'reboot' | 'poweroff' | 'wait';
  profile?: string;
  confirm_boot?: boolean;
  confirm_timeout_minutes?: number;
  first_boot_hook?: FirstBootHook;
}

/**
 * The order the dialog places, as POST /api/devices/:mac/deploy would: minutes become the API's
 * seconds, and the timeout and hook count only with "Wait for first boot".
 */
export function deployFromForm(form: DeployForm): { image?: string; options: OrderOptions } {
  const confirm = form.confirm_boot === true;
  return {
    image: form.image,
    options: {
      after: form.after,
      fullMatch: form.full_match,
      finish: form.finish,
      profile: form.profile,
      confirmBoot: confirm || undefined,
      confirmTimeout: confirm && form.confirm_timeout_minutes !== undefined ? form.confirm_timeout_minutes * 60 : undefined,
      firstBootHook: confirm ? form.first_boot_hook : undefined,
    },
  };
}

/**
 * "Wait for first boot" (off for a person's order): the timeout and the hook are sent only when
 * it is ticked (app.js enables them with it).
 */
function firstBootFields(): SafeHtml {
  return html`<fieldset class="choice first-boot-fields">
    <legend>First boot</legend>
    <label class="checkbox-line"><input type="checkbox" id="deploy-confirm-boot" name="confirm_boot" value="true"
      data-enables="deploy-confirm-timeout deploy-first-boot-hook" aria-describedby="deploy-confirm-hint"> Wait for first boot</label>
    <p class="hint" id="deploy-confirm-hint">The job ends "ok · awaiting first boot" until the installed OS calls back. No call in time: not confirmed, and the device netboots again.</p>
    <div class="field-line"><label for="deploy-confirm-timeout">Timeout (minutes)</label>
      <input id="deploy-confirm-timeout" name="confirm_timeout_minutes" type="number" min="1" max="1440" step="1" value="${DEFAULT_CONFIRM_MINUTES}" disabled></div>
    <div class="field-line"><label for="deploy-first-boot-hook">Hook</label>
      <select id="deploy-first-boot-hook" name="first_boot_hook" disabled>${hookOptions()}</select></div>
  </fieldset>`;
}

/**
 * The Deploy dialog: pick the image, see exactly what it is, and confirm naming the device.
 * `profiles` are the profiles of per-device files to offer (none: no select).
 */
export function deployDialog(device: DeviceView, images: ImageView[], defaultAfter: 'emmc' | 'netboot', now: number, profiles: readonly ProfileChoice[] = []): SafeHtml {
  // Why an image cannot go onto this device now; such images are listed, disabled, with the reason.
  const unusable = (image: ImageView) =>
    image.broken
      ? `broken: ${image.broken}`
      : device.storage_bytes !== null && image.size > device.storage_bytes
        ? `${bytes(image.size)}, larger than this eMMC`
        : undefined;
  const usable = images.filter((image) => !unusable(image));
  const chosen = usable.find((image) => image.default) ?? usable[0];
  if (!chosen) {
    return html`<h2 id="dialog-title">Deploy to ${device.mac}</h2>
      <p>${images.length ? `No image can be deployed here: ${images.map((image) => `${image.name} (${unusable(image)})`).join('; ')}.` : 'There is no image yet.'}
        Add one on the <a href="/images">Images</a> page.</p>
      <div class="dialog-actions"><button type="button" data-close-dialog autofocus>Close</button></div>`;
  }
  return html`<h2 id="dialog-title">Deploy to ${device.mac}</h2>
${pollWarning(device, now)}
<form hx-post="/dashboard/devices/${device.mac}/deploy" hx-swap="none" data-close-dialog-on-success
  data-toast="Deploy to ${device.mac} queued${waitsForClient(device) ? '; it starts when its client polls' : ''}">
  <label for="deploy-image">Image</label>
  <select id="deploy-image" name="image" data-image-facts>
    ${usable.map((image) => html`<option value="${image.name}" data-size="${image.size}" data-size-text="${bytes(image.size)}"
      data-sha256="${image.sha256}" ${image === chosen ? 'selected' : ''}>${image.name}${image.default ? ' (default)' : ''}</option>`)}
    ${images.filter(unusable).map((image) => html`<option value="${image.name}" disabled>${image.name}: ${unusable(image)}</option>`)}
  </select>
  <dl class="facts">
    <dt>Size</dt><dd data-fact="size">${bytes(chosen.size)}</dd>
    <dt>sha256</dt><dd><code data-fact="sha256" class="hash">${chosen.sha256}</code></dd>
  </dl>
  ${profileField(profiles)}
  <label class="checkbox-line"><input type="checkbox" name="full_match" value="true">
    Full byte match: also zero what the image leaves empty, and check the whole eMMC</label>
  <fieldset class="choice">
    <legend>When it has succeeded, the device boots</legend>
    <label><input type="radio" name="after" value="emmc" ${defaultAfter === 'emmc' ? 'checked' : ''}> from its eMMC (no more netboot)</label>
    <label><input type="radio" name="after" value="netboot" ${defaultAfter === 'netboot' ? 'checked' : ''}> from the network again</label>
  </fieldset>
  <fieldset class="choice">
    <legend>After success the device</legend>
    ${FINISH_CHOICES.map((choice) => html`<label><input type="radio" name="finish" value="${choice.value}" ${choice.value === 'reboot' ? 'checked' : ''}> ${choice.label}${choice.value === 'reboot' ? ' (default)' : ''}</label>`)}
  </fieldset>
  ${firstBootFields()}
  <p class="warning" id="deploy-warning">Overwrite the eMMC of <strong>${device.mac}</strong>${device.serial ? html` (serial ${device.serial})` : ''}?
    Everything on it is replaced.</p>
  <p class="form-error" data-dialog-error role="alert" hidden></p>
  <div class="dialog-actions">
    <button type="button" data-close-dialog>Keep the eMMC</button>
    <button type="submit" class="button-danger" aria-describedby="${waitsForClient(device) ? 'poll-warning ' : ''}deploy-warning">Overwrite eMMC</button>
  </div>
</form>`;
}
