import type { BackupService } from '../backups/service.js';
import type { DeviceService } from '../devices/service.js';
import type { ImageLibrary } from '../images/library.js';
import type { Clock } from '../shared/clock.js';
import type { DomainEvents, EventBus } from '../shared/events.js';
import { html, type SafeHtml } from './html.js';
import { backupRows } from './views/backups.js';
import { deviceRow, deviceRows, noDevicesNote } from './views/devices.js';
import { imageRows } from './views/images.js';

export type LiveView = 'devices' | 'images' | 'backups';

/** Updates are coalesced: a device reporting progress every second costs one render per flush. */
const FLUSH_MS = 300;
const STALE_CHECK_MS = 5_000;
const IMPORT_REFRESH_MS = 1_000;

export interface LiveDeps {
  bus: EventBus;
  devices: DeviceService;
  images: ImageLibrary;
  backups: BackupService;
  clock: Clock;
}

type Send = (update: SafeHtml) => void;

/**
 * Live page updates over SSE. Each message is HTML whose elements carry `hx-swap-oob`, so htmx
 * replaces exactly the rows that changed (or appends new ones) and nothing else on the page:
 * an open dialog or a half-filled form is left alone.
 */
export function createLiveViews(deps: LiveDeps) {
  const { bus, devices, images, backups, clock } = deps;

  function devicesStream(send: Send): () => void {
    const shown = new Map<string, boolean>(); // MAC → the stale flag its row was last sent with
    const dirty = new Set<string>();
    let timer: NodeJS.Timeout | undefined;

    const flush = () => {
      timer = undefined;
      const parts: SafeHtml[] = [];
      const hadNone = shown.size === 0;
      for (const mac of dirty) {
        const device = devices.view(devices.get(mac));
        const row = deviceRow(device, clock.now(), shown.has(mac));
        parts.push(shown.has(mac) ? row : html`<tbody hx-swap-oob="beforeend:#device-rows">${row}</tbody>`);
        shown.set(mac, device.stale);
      }
      dirty.clear();
      if (hadNone && shown.size > 0) parts.push(noDevicesNote(shown.size, true));
      if (parts.length) send(html`${parts}`);
    };
    const touched = (mac: string) => {
      dirty.add(mac);
      timer ??= setTimeout(flush, FLUSH_MS);
    };

    // First message: the whole table as of now, so the page cannot miss what happened between
    // rendering it and opening this stream.
    const all = devices.list();
    for (const device of all) shown.set(device.mac, device.stale);
    send(html`<tbody id="device-rows" hx-swap-oob="innerHTML">${deviceRows(all, clock.now())}</tbody>${noDevicesNote(all.length, true)}`);

    const offs = [bus.on('device.changed', ({ mac }) => touched(mac)), bus.on('job.changed', ({ mac }) => touched(mac))];
    // Going stale is the absence of events: look for devices whose flag flipped.
    const staleCheck = setInterval(() => {
      for (const device of devices.list()) if (shown.get(device.mac) !== device.stale) touched(device.mac);
    }, STALE_CHECK_MS);
    return () => {
      offs.forEach((off) => off());
      clearInterval(staleCheck);
      clearTimeout(timer);
    };
  }

  /** A short list, re-rendered whole whenever something in it may have changed. */
  function listStream(render: () => SafeHtml, triggers: Array<keyof DomainEvents>, send: Send, refreshWhile?: () => boolean): () => void {
    let timer: NodeJS.Timeout | undefined;
    const schedule = () => {
      timer ??= setTimeout(() => {
        timer = undefined;
        send(render());
      }, FLUSH_MS);
    };
    const offs = triggers.map((name) => bus.on(name, schedule));
    const refresher = refreshWhile && setInterval(() => refreshWhile() && schedule(), IMPORT_REFRESH_MS);
    send(render());
    return () => {
      offs.forEach((off) => off());
      clearInterval(refresher);
      clearTimeout(timer);
    };
  }

  return {
    open(view: LiveView, filter: { device?: string }, send: Send): () => void {
      if (view === 'devices') return devicesStream(send);
      if (view === 'images') {
        return listStream(
          () => html`<tbody id="image-rows" hx-swap-oob="innerHTML">${imageRows(images.list(), images.imports())}</tbody>`,
          ['image.changed', 'job.changed'],
          send,
          () => images.imports().length > 0,
        );
      }
      return listStream(
        () => html`<tbody id="backup-rows" hx-swap-oob="innerHTML">${backupRows(backups.list(filter.device))}</tbody>`,
        ['backup.changed'],
        send,
      );
    },
  };
}

export type LiveViews = ReturnType<typeof createLiveViews>;
