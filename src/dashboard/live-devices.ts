import type { DeviceService, DeviceView } from '../devices/service.js';
import { encodeCursor } from '../devices/list-query.js';
import type { Logger } from 'pino';
import { guarded } from '../shared/background.js';
import type { Clock } from '../shared/clock.js';
import type { EventBus } from '../shared/events.js';
import { macId } from './format.js';
import { html, type SafeHtml } from './html.js';
import { activeNote, DEVICE_PAGE_SIZE, devicePager, deviceSummary, newDevicesNote, noDevicesNote, type DevicePageQuery } from './views/device-list.js';
import { deviceRow, deviceRows } from './views/devices.js';
import { timeLeft } from './views/jobs.js';

/** Updates are coalesced: a device reporting progress every second costs one render per flush. */
const FLUSH_MS = 300;
/** Changes off the page (a flood of registrations, say) cost a few counts at most this often. */
const OFF_PAGE_CHECK_MS = 2_000;
const STALE_CHECK_MS = 5_000;

type Send = (update: SafeHtml) => void;

interface Shown {
  stale: boolean;
  firstSeen: number;
  /** While its latest deploy awaits its first boot: the deadline, and the time left as the row says it. */
  awaiting: { deadline: string; left: string } | null;
}

/**
 * The Devices page's stream. It only ever holds the rows of the viewer's page (its search,
 * filter and cursor): those are re-rendered when they change; a new device is appended while
 * the page has room, and otherwise only counted in a "N new devices" note. Nothing here
 * scales with the whole device table.
 */
export async function streamDevices(
  deps: { bus: EventBus; devices: DeviceService; clock: Clock; log: Logger },
  query: DevicePageQuery,
  sendNow: Send,
): Promise<() => void> {
  const { bus, devices, clock, log } = deps;
  const openedAt = clock.now();
  let closed = false;
  const send: Send = (update) => {
    if (!closed) sendNow(update);
  };
  const first = await devices.page({ ...query, limit: DEVICE_PAGE_SIZE });
  const shown = new Map<string, Shown>(); // MAC → what its row was last sent with, in page order
  const awaiting = (device: DeviceView) => {
    const boot = device.latest_job?.first_boot;
    return boot?.state === 'awaiting' && boot.deadline_at ? { deadline: boot.deadline_at, left: timeLeft(boot.deadline_at, clock.now()) } : null;
  };
  const remember = (device: DeviceView) => shown.set(device.mac, { stale: device.stale, firstSeen: Date.parse(device.first_seen_at), awaiting: awaiting(device) });
  first.devices.forEach(remember);
  const counts = { skipped: first.skipped, total: first.total, fresh: 0, active: await devices.count({ state: 'active' }) };
  const dirty = new Set<string>();
  let jobsMoved = false;
  let sentState = '';
  let flushTimer: NodeJS.Timeout | undefined;
  let checkTimer: NodeJS.Timeout | undefined;

  const keyOf = (mac: string) => encodeCursor(shown.get(mac)!.firstSeen, mac);
  const lastCursor = () => {
    const last = [...shown.keys()].at(-1);
    return last === undefined ? undefined : keyOf(last);
  };
  const isAbove = (device: DeviceView, mac: string) => {
    const [seen, top] = [Date.parse(device.first_seen_at), shown.get(mac)!.firstSeen];
    return seen > top || (seen === top && device.mac > mac);
  };
  const nextCursor = () => (counts.total > counts.skipped + shown.size ? (lastCursor() ?? null) : null);
  /** Rows (if any) plus the summary, notes and pager when they read differently than last sent. */
  function sendWith(parts: SafeHtml[]) {
    const state = html`${deviceSummary(query, { shown: shown.size, skipped: counts.skipped, total: counts.total }, true)}
${activeNote(query, counts.active, true)}${newDevicesNote(query, counts.fresh, true)}
${noDevicesNote(query, shown.size, true)}${devicePager(query, nextCursor(), true)}`;
    if (state.text === sentState && parts.length === 0) return;
    sentState = state.text;
    send(html`${parts}${state}`);
  }

  async function renderDirty(): Promise<SafeHtml[]> {
    const macs = [...dirty];
    dirty.clear(); // changes that come in while these render are the next flush's
    const views = new Map((await devices.viewAll(await devices.rowsOf(macs))).map((device) => [device.mac, device]));
    return macs.map((mac) => {
      const device = views.get(mac);
      if (!device) {
        shown.delete(mac); // forgotten by the age-out sweep
        return html`<tr id="device-${macId(mac)}" hx-swap-oob="delete"></tr>`;
      }
      remember(device);
      return deviceRow(device, clock.now(), true);
    });
  }

  /**
   * Devices that belong on this page while it has room (never more than fill it): after its
   * last row, or, newest first, above its top row on the first page.
   */
  async function arrivals(): Promise<SafeHtml[]> {
    const room = DEVICE_PAGE_SIZE - shown.size;
    if (room <= 0) return [];
    if (query.order !== 'newest') {
      const added = (await devices.rows({ ...query, cursor: lastCursor() ?? query.cursor, limit: room })).filter((d) => !shown.has(d.mac));
      added.forEach(remember);
      return added.map((device) => html`<tbody hx-swap-oob="beforeend:#device-rows">${deviceRow(device, clock.now())}</tbody>`);
    }
    const top = [...shown.keys()][0];
    if (query.cursor) return [];
    const added = (await devices.rows({ ...query, limit: room })).filter((d) => !shown.has(d.mac) && (top === undefined || isAbove(d, top)));
    const old = [...shown];
    shown.clear();
    added.forEach(remember);
    old.forEach(([mac, row]) => shown.set(mac, row));
    // Each goes on top in turn, oldest first, so that the newest ends up first.
    return added.reverse().map((device) => html`<tbody hx-swap-oob="afterbegin:#device-rows">${deviceRow(device, clock.now())}</tbody>`);
  }

  // Flushes and checks take turns (each reads and updates `shown` and `counts` across awaits).
  let turn: Promise<unknown> = Promise.resolve();
  const inTurn = (work: () => Promise<void>) => () => {
    turn = turn.then(work);
    return turn;
  };
  // Timers run outside any request: a database error there is logged, never fatal (background.ts).
  const flush = guarded(log, 'live device rows', inTurn(async () => {
    flushTimer = undefined;
    if (!dirty.size || closed) return;
    // A row that shows a job starting or ending goes out with the "N devices have a job" count
    // that matches it, never a count from before.
    const moved = jobsMoved;
    jobsMoved = false;
    const parts = await renderDirty();
    if (moved) counts.active = await devices.count({ state: 'active' });
    sendWith(parts);
  }));
  const check = guarded(log, 'live device counts', inTurn(async () => {
    checkTimer = undefined;
    if (closed) return;
    const moved = jobsMoved;
    jobsMoved = false;
    const parts = await arrivals();
    counts.total = await devices.count(query);
    const freshShown = [...shown.values()].filter((row) => row.firstSeen >= openedAt).length;
    counts.fresh = Math.max(0, (await devices.countSince(query, openedAt)) - freshShown);
    if (moved) counts.active = await devices.count({ state: 'active' });
    sendWith(parts);
  }));
  const touched = (mac: string) => {
    if (shown.has(mac)) {
      dirty.add(mac);
      flushTimer ??= setTimeout(flush, FLUSH_MS);
    } else {
      checkTimer ??= setTimeout(check, OFF_PAGE_CHECK_MS);
    }
  };

  // First message: this page as of now, so the page cannot miss what happened between
  // rendering it and opening this stream.
  sendWith([html`<tbody id="device-rows" hx-swap-oob="innerHTML">${deviceRows(first.devices, clock.now())}</tbody>`]);

  const offs = [
    bus.on('device.changed', ({ mac }) => touched(mac)),
    bus.on('job.changed', ({ mac }) => {
      jobsMoved = true; // the "N devices have a job" count may change, wherever the device is
      checkTimer ??= setTimeout(check, OFF_PAGE_CHECK_MS);
      touched(mac);
    }),
  ];
  // Going stale is the absence of events: look at the rows on this page, and only those. So is
  // time running out for a first boot: a row whose "N min left" would read differently is redrawn.
  const staleCheck = setInterval(guarded(log, 'live stale check', async () => {
    if (shown.size === 0) return;
    const rows = new Map((await devices.rowsOf([...shown.keys()])).map((row) => [row.mac, row]));
    for (const [mac, was] of shown) {
      const row = rows.get(mac);
      if (!row || devices.isStale(row) !== was.stale) touched(mac);
      else if (was.awaiting && timeLeft(was.awaiting.deadline, clock.now()) !== was.awaiting.left) touched(mac);
    }
  }), STALE_CHECK_MS);
  return () => {
    closed = true;
    offs.forEach((off) => off());
    clearInterval(staleCheck);
    clearTimeout(flushTimer);
    clearTimeout(checkTimer);
  };
}
