import type { Command } from 'commander';
import type { CopyView, ImageView } from '../images/library.js';
import type { StationsView } from '../stations/index.js';
import type { CommandContext } from './context.js';
import { roughly } from './device-silence.js';
import { printJson, printTable, say, size, when } from './output.js';

/** The channel between stations (PostgreSQL LISTEN/NOTIFY), as the summary line says it. */
const CHANNEL_WORDS: Record<StationsView['channel'], string> = {
  connected: 'connected',
  connecting: 'connecting (live updates from other stations start once connected)',
  reconnecting: 'reconnecting (live updates from other stations paused)',
  closed: 'closed (this station is stopping)',
  single: 'none',
};

/** This station's own state, in one line. */
export function summaryLine(view: StationsView): string {
  const polls = `${view.parked_polls} parked ${view.parked_polls === 1 ? 'poll' : 'polls'}`;
  if (view.database !== 'postgres') return `This station: ${view.station}, on SQLite: the only station; ${polls}.`;
  return `This station: ${view.station}, on PostgreSQL; channel to the other stations: ${CHANNEL_WORDS[view.channel]}; ${polls}.`;
}

/** The stations an image's copies are shown for: those known, and any a copy names. */
function stationNames(image: ImageView, stations: StationsView): string[] {
  return [...new Set([...stations.stations.map((station) => station.name), ...image.copies.map((copy) => copy.station)])].sort();
}

const percent = (copy: CopyView) => (copy.bytes_total ? `${Math.floor((100 * copy.bytes_done) / copy.bytes_total)}%` : 'fetching');

/** A fetch on a station not heard from lately is where it was then, not going on. */
const isDown = (name: string, stations: StationsView) => stations.stations.find((station) => station.name === name)?.up === false;

/** `line-a ✓, line-b 45%, line-c failed`: each station's copy of the image, for a table cell. */
export function copiesCell(image: ImageView, stations: StationsView): string {
  const copies = new Map(image.copies.map((copy) => [copy.station, copy]));
  return stationNames(image, stations)
    .map((name) => {
      const copy = copies.get(name);
      if (!copy) return `${name} none yet`;
      const damaged = copy.broken ? ' damaged,' : '';
      if (copy.state === 'complete') return `${name}${copy.broken ? ' damaged' : ' ✓'}`;
      if (copy.state === 'failed') return `${name}${damaged} failed`;
      return `${name}${damaged} ${percent(copy)}${isDown(name, stations) ? ' (down)' : ''}`;
    })
    .join(', ');
}

/** One line per station for `image show`: `line-b  fetching 45% (28.8 MiB of 64.0 MiB)`. */
export function copyLines(image: ImageView, stations: StationsView): string[] {
  const copies = new Map(image.copies.map((copy) => [copy.station, copy]));
  const names = stationNames(image, stations);
  const width = Math.max(...names.map((name) => name.length));
  return names.map((name) => {
    const copy = copies.get(name);
    if (!copy) return `${name.padEnd(width)}  no copy yet`;
    const from = copy.source_station === null ? '' : copy.source_station === copy.station ? ' from its own file of the same bytes' : ` from ${copy.source_station}`;
    const state =
      copy.state === 'complete'
        ? copy.broken ? '' : '✓ complete'
        : copy.state === 'failed'
          ? `fetch${from} failed: ${copy.error ?? 'no reason recorded'}`
          : `fetching${from} ${copy.bytes_total ? `${percent(copy)} ` : ''}(${size(copy.bytes_done)}${copy.bytes_total ? ` of ${size(copy.bytes_total)}` : ''})${isDown(name, stations) ? ` when last heard from; ${name} is down` : ''}`;
    return `${name.padEnd(width)}  ${[copy.broken ? `damaged: ${copy.broken}` : '', state].filter(Boolean).join('; ')}`;
  });
}

/** Several stations share the database: image commands show each one's copy. */
export const severalStations = (stations: StationsView) => stations.stations.length > 1;

export function registerStationCommands(program: Command, context: CommandContext) {
  context
    .command(program, 'stations', 'the stations sharing this database, which are up, and this station\'s own state')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const api = context.api(options);
      const view = await api.get<StationsView>('/api/stations');
      if (options.json) return printJson(view);
      const now = api.serverNow();
      printTable(
        ['STATION', 'STATE', 'LAST HEARD', 'URL', 'STARTED'],
        view.stations.map((station) => [
          station.name === view.station ? `${station.name} (this one)` : station.name,
          station.up ? 'up' : 'down',
          `${roughly(now - Date.parse(station.last_seen_at))} ago`,
          station.url ?? 'none: others cannot fetch from it',
          when(station.started_at),
        ]),
        'No station has announced itself yet.',
      );
      say(summaryLine(view));
    });
}
