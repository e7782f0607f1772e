import type { DeviceQuery, DeviceState } from '../../devices/list-query.js';
import { html, type SafeHtml } from '../html.js';

/** What the Devices page was asked for: its URL query, which the live stream repeats. */
export type DevicePageQuery = Omit<DeviceQuery, 'limit'>;

/** How many rows the Devices page shows at most; the live stream never pushes more. */
export const DEVICE_PAGE_SIZE = 100;

const STATE_LABELS: Record<DeviceState, string> = {
  active: 'Job queued or running',
  running: 'Job running',
  queued: 'Job queued',
  stale: 'Stale (not heard from for 90 s)',
  netbooting: 'Netbooting, no client yet',
  ready: 'Waiting for work',
};

const count = (n: number) => n.toLocaleString('en-US');
const plural = (n: number, one: string, many: string) => `${count(n)} ${n === 1 ? one : many}`;
const filtered = (query: DevicePageQuery) => Boolean(query.search?.trim() || query.state);

/** The page's own URL with some parameters changed; empty ones are left out. */
export function devicesHref(query: DevicePageQuery, change: Partial<Record<keyof DevicePageQuery, string | undefined>> = {}): string {
  const merged: Record<string, string | undefined> = { ...query, ...change };
  const params = new URLSearchParams(Object.entries(merged).filter((entry): entry is [string, string] => Boolean(entry[1])));
  const text = params.toString();
  return text ? `/?${text}` : '/';
}

/** Search and filter. A plain GET form without JS; with htmx it swaps only the list as you type. */
export function deviceSearchForm(query: DevicePageQuery): SafeHtml {
  return html`<form class="filters" method="get" action="/" role="search" hx-get="/" hx-trigger="input delay:400ms, submit"
  hx-target="#device-list" hx-select="#device-list" hx-swap="outerHTML" hx-push-url="true" hx-sync="this:replace">
  <span class="filter"><label for="device-search">Search</label>
    <input id="device-search" type="search" name="search" value="${query.search ?? ''}" maxlength="200" autocomplete="off"
      placeholder="MAC, IP, serial or model"></span>
  <span class="filter"><label for="device-state">State</label>
    <select id="device-state" name="state">
      <option value="">Any state</option>
      ${Object.entries(STATE_LABELS).map(([value, label]) => html`<option value="${value}" ${value === query.state ? 'selected' : ''}>${label}</option>`)}
    </select></span>
  <span class="filter"><label for="device-order">Order</label>
    <select id="device-order" name="order">
      <option value="">First seen first</option>
      <option value="newest" ${query.order === 'newest' ? 'selected' : ''}>Newest first</option>
    </select></span>
  <button type="submit">Search</button>
</form>`;
}

export interface ListCounts {
  shown: number;
  /** Matching rows before this page. */
  skipped: number;
  total: number;
}

/** "Showing 1–100 of 100,000 devices": how much of the list the page holds. */
export function deviceSummary(query: DevicePageQuery, counts: ListCounts, oob = false): SafeHtml {
  const { shown, skipped, total } = counts;
  const what = filtered(query) ? 'matching devices' : 'devices';
  let text = '';
  if (shown > 0 && shown === total) text = `${plural(total, 'device', 'devices')}${filtered(query) ? ' match' : ''}.`;
  else if (shown > 0) {
    text = `Showing ${count(skipped + 1)}–${count(skipped + shown)} of ${count(total)} ${what}`;
    if (total > shown) text += filtered(query) ? ' — refine the search to narrow them down.' : ' — search to find one.';
  }
  return html`<p id="device-summary" class="list-summary" role="status"${oob ? html` hx-swap-oob="outerHTML"` : ''} ${text ? '' : 'hidden'}>${text}</p>`;
}

/** Devices with work in progress are always one click away, whatever page or search is shown. */
export function activeNote(query: DevicePageQuery, active: number, oob = false): SafeHtml {
  const show = active > 0 && query.state !== 'active' && query.state !== 'running' && query.state !== 'queued';
  return html`<p id="active-devices" class="list-note"${oob ? html` hx-swap-oob="outerHTML"` : ''} ${show ? '' : 'hidden'}>
    ${plural(active, 'device has', 'devices have')} a job queued or running: <a href="${devicesHref({}, { state: 'active' })}">show them</a>.</p>`;
}

/** New devices that did not fit on this page are counted here, never pushed as rows. */
export function newDevicesNote(query: DevicePageQuery, fresh: number, oob = false): SafeHtml {
  return html`<p id="new-devices" class="list-note"${oob ? html` hx-swap-oob="outerHTML"` : ''} ${fresh > 0 ? '' : 'hidden'}>
    ${plural(fresh, 'new device', 'new devices')} since this page loaded — <a href="${devicesHref(query, { order: 'newest', cursor: undefined })}">show</a>.</p>`;
}

/** Next page (by cursor) and back to the first. */
export function devicePager(query: DevicePageQuery, next: string | null, oob = false): SafeHtml {
  const first = query.cursor ? html`<a href="${devicesHref(query, { cursor: undefined })}">First page</a>` : '';
  const more = next ? html`<a href="${devicesHref(query, { cursor: next })}" rel="next">Next ${DEVICE_PAGE_SIZE} →</a>` : '';
  return html`<nav id="device-pager" class="pager" aria-label="Device list pages"${oob ? html` hx-swap-oob="outerHTML"` : ''}>${first} ${more}</nav>`;
}

/** Shown while the list is empty; live updates hide it when a first row appears. */
export function noDevicesNote(query: DevicePageQuery, count: number, oob = false): SafeHtml {
  const text = filtered(query)
    ? html`No device matches this search. <a href="/">Show all devices</a>.`
    : query.cursor
      ? html`No more devices. <a href="${devicesHref(query, { cursor: undefined })}">First page</a>.`
      : html`No device has registered yet. Power on a CM4 set to boot from the network, or run <code>device/provisioning-client.sh</code>.`;
  return html`<p id="no-devices" class="empty"${oob ? html` hx-swap-oob="outerHTML"` : ''} ${count ? 'hidden' : ''}>${text}</p>`;
}
