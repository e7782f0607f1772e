import type { Dialect } from '../db/dialect.js';
import type { ChannelState } from '../db/pg-channel.js';
import type { Clock } from '../shared/clock.js';
import { AppError } from '../shared/errors.js';
import { PeerError, type StationClient } from './client.js';
import type { StationStore } from './store.js';

/** A station unheard of for this long is shown as down (it beats every few seconds while it runs). */
export const STATION_DOWN_AFTER_MS = 30_000;

export interface StationsView {
  /** This server's station name. */
  station: string;
  database: Dialect;
  /** Word from the other stations (PostgreSQL LISTEN/NOTIFY): 'single' when there are none to hear (SQLite). */
  channel: ChannelState | 'single';
  /** Devices whose long-poll is parked on this station right now, waiting for work. */
  parked_polls: number;
  stations: Array<{ name: string; url: string | null; started_at: string; last_seen_at: string; up: boolean }>;
}

/** The stations sharing this database, as this one sees them: who is up, and its own state. */
export function createStationService(deps: {
  store: StationStore;
  station: string;
  url: string | null;
  dialect: Dialect;
  channelState: () => ChannelState | 'single';
  parkedPolls: () => number;
  clock: Clock;
  client: StationClient;
}) {
  const { store, clock } = deps;
  const unavailable = (message: string) => new AppError(503, 'station_unavailable', message, { 'retry-after': '30' });
  return {
    /** At start: this station's row, created or refreshed. */
    announce: () => store.announce(deps.station, deps.url, clock.now()),
    heartbeat: () => store.heartbeat(deps.station, clock.now()),
    /**
     * Asks station `name` for `path` on its station routes (what: "backup 7", for the sentence).
     * Any answer of it comes back; a station that is down, gave no url or cannot be reached is a
     * 503 naming it.
     */
    async fromStation(name: string, path: string, what: string, options: { method?: 'GET' | 'HEAD'; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
      const peer = await store.get(name);
      if (!peer?.url) throw unavailable(`${what} is on station ${name}, which gave no --station-url: the other stations cannot reach it; download it there`);
      if (clock.now() - peer.last_seen_at >= STATION_DOWN_AFTER_MS) {
        throw unavailable(`${what} is on station ${name}, which is down (last heard from ${new Date(peer.last_seen_at).toISOString()}); try again once it is back`);
      }
      try {
        return await deps.client.request({ name, url: peer.url }, path, options);
      } catch (error) {
        if (error instanceof PeerError) throw unavailable(`${what} is on station ${name}, which cannot be reached: ${error.message}`);
        throw error;
      }
    },
    async view(): Promise<StationsView> {
      const now = clock.now();
      const rows = await store.list();
      return {
        station: deps.station,
        database: deps.dialect,
        channel: deps.channelState(),
        parked_polls: deps.parkedPolls(),
        stations: rows.map((row) => ({
          name: row.name,
          url: row.url,
          started_at: new Date(row.started_at).toISOString(),
          last_seen_at: new Date(row.last_seen_at).toISOString(),
          up: now - row.last_seen_at < STATION_DOWN_AFTER_MS,
        })),
      };
    },
  };
}

export type StationService = ReturnType<typeof createStationService>;
