import type { Logger } from 'pino';
import type { BackupService } from '../backups/service.js';
import { guarded } from '../shared/background.js';
import type { DeviceService } from '../devices/service.js';
import type { ImageLibrary } from '../images/library.js';
import type { StationService } from '../stations/index.js';
import type { Clock } from '../shared/clock.js';
import type { DomainEvents, EventBus } from '../shared/events.js';
import { html, type SafeHtml } from './html.js';
import { streamDevices } from './live-devices.js';
import { backupRows } from './views/backups.js';
import type { DevicePageQuery } from './views/device-list.js';
import { imageRows } from './views/images.js';
import { stationsUpdate } from './views/stations.js';

export type LiveView = 'devices' | 'images' | 'backups' | 'stations';

/** Updates are coalesced: many changes in a burst cost one render. */
const FLUSH_MS = 300;
const IMPORT_REFRESH_MS = 1_000;
/**
 * The Stations page is drawn again this often: a station going quiet raises no event, and up
 * means heard from within STATION_DOWN_AFTER_MS (30 s), so up/down is at most this late.
 */
export const STATIONS_REFRESH_MS = 5_000;

export interface LiveDeps {
  log: Logger;
  bus: EventBus;
  devices: DeviceService;
  images: ImageLibrary;
  backups: BackupService;
  stations: Pick<StationService, 'view'>;
  clock: Clock;
}

type Send = (update: SafeHtml) => void;

/**
 * Live page updates over SSE. Each message is HTML whose elements carry `hx-swap-oob`, so htmx
 * replaces exactly the rows that changed (or appends new ones) and nothing else on the page:
 * an open dialog or a half-filled form is left alone.
 */
export function createLiveViews(deps: LiveDeps) {
  const { bus, devices, images, backups, stations, clock, log } = deps;

  /**
   * A short list, re-rendered whole whenever something in it may have changed, and every
   * `refresh.everyMs` while `refresh.while()` holds.
   */
  async function listStream(
    render: () => Promise<SafeHtml>,
    triggers: Array<keyof DomainEvents>,
    send: Send,
    refresh?: { everyMs: number; while: () => boolean },
  ): Promise<() => void> {
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    const schedule = () => {
      timer ??= setTimeout(guarded(log, 'live list', async () => {
        timer = undefined;
        const update = await render();
        if (!closed) send(update);
      }), FLUSH_MS);
    };
    send(await render());
    const offs = triggers.map((name) => bus.on(name, schedule));
    const refresher = refresh && setInterval(() => refresh.while() && schedule(), refresh.everyMs);
    return () => {
      closed = true;
      offs.forEach((off) => off());
      clearInterval(refresher);
      clearTimeout(timer);
    };
  }

  return {
    /** `filter` is the page's own query: the stream sends only what that page shows. */
    open(view: LiveView, filter: DevicePageQuery & { device?: string }, send: Send): Promise<() => void> {
      if (view === 'devices') return streamDevices({ bus, devices, clock, log }, filter, send);
      if (view === 'images') {
        return listStream(
          async () => html`<tbody id="image-rows" hx-swap-oob="innerHTML">${imageRows(await images.list(), images.imports())}</tbody>`,
          ['image.changed', 'job.changed'],
          send,
          { everyMs: IMPORT_REFRESH_MS, while: () => images.imports().length > 0 },
        );
      }
      if (view === 'stations') {
        // A copy's progress or state changes with image.changed, on this station or another.
        const render = async () => {
          const shared = await stations.view();
          return stationsUpdate(shared, shared.database === 'postgres' ? await images.list() : [], clock.now()); // alone, it shows no copies
        };
        return listStream(render, ['image.changed'], send, {
          everyMs: STATIONS_REFRESH_MS,
          while: () => true,
        });
      }
      return listStream(
        async () => {
          const page = await backups.page({ mac: filter.device, cursor: filter.cursor ? Number(filter.cursor) : undefined });
          return html`<tbody id="backup-rows" hx-swap-oob="innerHTML">${backupRows(page.backups)}</tbody>`;
        },
        ['backup.changed'],
        send,
      );
    },
  };
}

export type LiveViews = ReturnType<typeof createLiveViews>;
