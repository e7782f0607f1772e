import type { DeviceView } from '../../devices/service.js';
import { ago, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';

/**
 * Work ordered for a device starts only when its client polls. A stale device (silent for
 * STALE_AFTER_MS) or one no client has registered for (seen only netbooting) may never poll:
 * the order is taken, and these say so before and after it is placed.
 */
export const waitsForClient = (device: DeviceView) => device.stale || !device.registered || device.client_hung_up_at !== null;

const START_CLIENT = html`netboot the device, or start <code>device/provisioning-client.sh</code> on it`;

const since = (device: DeviceView, now: number) => html`<time datetime="${device.last_seen_at}" data-relative>${ago(device.last_seen_at, now)}</time>`;

/** Under a row's state badge, for a stale device: what is known of its silence. */
export function silenceNote(device: DeviceView, now: number): SafeHtml | '' {
  if (!device.stale && device.client_hung_up_at) {
    const at = device.client_hung_up_at;
    return html`<span class="sub" data-silence>Client hung up its poll <time datetime="${at}" data-relative>${ago(at, now)}</time>; not heard since</span>`;
  }
  if (!device.stale) return '';
  const what = device.registered ? 'Client not polling; last heard' : 'No client yet; last seen';
  return html`<span class="sub" data-silence>${what} ${since(device, now)}</span>`;
}

/** The Deploy dialog's warning: when the device was last heard from, and that the job waits for its client. */
export function pollWarning(device: DeviceView, now: number): SafeHtml | '' {
  if (!waitsForClient(device)) return '';
  const heard = html`${since(device, now)} (${timestamp(device.last_seen_at)})`;
  const known = device.registered
    ? html`<strong>${device.mac}</strong> was last heard from ${heard}: its client is not polling.
      The deploy can be ordered, but starts only when its client polls again: ${START_CLIENT}.`
    : html`<strong>${device.mac}</strong> has not run its provisioning client yet; it was last seen ${heard}${device.netboot.stage ? `; its last boot step: ${device.netboot.stage}` : ''}.
      The deploy can be ordered, but starts only when its client polls: ${START_CLIENT}.`;
  return html`<p class="warning" id="poll-warning" data-poll-warning>${known}</p>`;
}

/**
 * The Backup button's question for such a device, as plain text. The row is redrawn when the
 * device goes stale or comes back, so the text holds nothing that ages ("for more than 90 s").
 */
export function backupQuestion(device: DeviceView): string | undefined {
  if (!waitsForClient(device)) return undefined;
  const silence = device.stale ? 'has not been heard from for more than 90 s' : 'hung up its poll and has not been heard from since';
  const known = device.registered
    ? `${device.mac} ${silence}: its client is not polling. The backup starts only when it polls again`
    : `${device.mac} has not run its provisioning client yet. The backup starts only when its client polls`;
  return `${known}: netboot the device, or start device/provisioning-client.sh on it. Queue it anyway?`;
}
