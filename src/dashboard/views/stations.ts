import type { CopyView, ImageView } from '../../images/library.js';
import { STATION_DOWN_AFTER_MS, type StationsView } from '../../stations/index.js';
import { ago, bytes, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';

type Station = StationsView['stations'][number];

const DOWN_AFTER_SECONDS = STATION_DOWN_AFTER_MS / 1000;

/** The channel between stations (PostgreSQL LISTEN/NOTIFY, db/pg-channel.ts), in words. */
const CHANNEL_WORDS: Record<StationsView['channel'], string> = {
  connected: 'connected: live updates from other stations arrive as they happen',
  connecting: 'connecting: live updates from other stations start once it is connected',
  reconnecting: 'live updates from other stations paused, reconnecting',
  closed: 'closed: this station is stopping',
  single: 'none: no other station shares this database',
};

const heard = (station: Station, now: number) =>
  html`<time datetime="${station.last_seen_at}" data-relative>${ago(station.last_seen_at, now)}</time>`;

function thisStation(view: StationsView): SafeHtml {
  return html`<dl class="status-list" id="this-station">
  <dt>Name</dt><dd>${view.station}</dd>
  <dt>Database</dt><dd>${view.database === 'postgres' ? 'PostgreSQL, shared with the stations below' : 'SQLite in its data folder: this is the only station'}</dd>
  ${view.database === 'postgres'
    ? html`<dt>Channel</dt><dd data-channel="${view.channel}">${view.channel === 'connected' ? '' : html`<span class="badge badge-${view.channel === 'connecting' ? 'pending' : 'failed'}">${view.channel}</span> `}${CHANNEL_WORDS[view.channel]}</dd>`
    : ''}
  <dt>Parked polls</dt><dd>${view.parked_polls} (${view.parked_polls === 1 ? 'a device' : 'devices'} waiting here for work)</dd>
</dl>`;
}

function stationRows(view: StationsView, now: number): SafeHtml {
  return html`${view.stations.map(
    (station) => html`<tr id="station-${station.name}">
  <th scope="row" data-label="Station">${station.name}${station.name === view.station ? html` <span class="badge badge-default">this station</span>` : ''}</th>
  <td data-label="State"><span class="badge badge-${station.up ? 'ok' : 'failed'}">${station.up ? 'up' : 'down'}</span></td>
  <td data-label="Last heard">${heard(station, now)}</td>
  <td data-label="URL">${station.url ? html`<code>${station.url}</code>` : html`<span class="muted">no --station-url: others cannot fetch from it</span>`}</td>
  <td data-label="Started">${timestamp(station.started_at)}</td>
</tr>`,
  )}`;
}

/** One station's copy of an image, as a short phrase; a fetch on a station that is down says so. */
function copyNote(copy: CopyView | undefined, station: Station | undefined): SafeHtml {
  if (!copy) return html`<span class="muted">no copy yet</span>`;
  // A damaged copy is fetched again: what it is doing comes after why.
  const damaged = copy.broken ? html`<span class="result-failed">damaged:</span> ${copy.broken}; ` : html``;
  const from = copy.source_station === null ? '' : copy.source_station === copy.station ? ' from its own file of the same bytes' : ` from ${copy.source_station}`;
  if (copy.state === 'complete') return copy.broken ? damaged : html`<span class="result-ok">✓ complete</span>`;
  if (copy.state === 'failed') return html`${damaged}<span class="result-failed">fetch${from} failed:</span> ${copy.error ?? 'no reason recorded'}`;
  const percent = copy.bytes_total ? `${Math.floor((100 * copy.bytes_done) / copy.bytes_total)}% ` : '';
  const amount = `(${bytes(copy.bytes_done)}${copy.bytes_total ? ` of ${bytes(copy.bytes_total)}` : ''})`;
  return station && !station.up ? html`${damaged}was fetching${from}: ${percent}${amount} when last heard from` : html`${damaged}fetching${from} ${percent}${amount}`;
}

function copyRows(view: StationsView, images: ImageView[]): SafeHtml {
  const known = new Map(view.stations.map((station) => [station.name, station]));
  if (images.length === 0) return html`<tr><td colspan="2" class="muted">No images yet.</td></tr>`;
  return html`${images.map((image) => {
    const copies = new Map(image.copies.map((copy) => [copy.station, copy]));
    const names = [...new Set([...known.keys(), ...copies.keys()])].sort();
    return html`<tr id="copies-${image.id}">
  <th scope="row" data-label="Image">${image.name}<span class="sub">${bytes(image.size)}</span></th>
  <td data-label="Copies"><ul class="copy-list">${names.map((name) => html`<li data-station="${name}" data-state="${copies.get(name)?.state ?? 'none'}"><strong>${name}</strong>: ${copyNote(copies.get(name), known.get(name))}</li>`)}</ul></td>
</tr>`;
  })}`;
}

/**
 * What the live stream sends: every part of the page, each replacing its own element. The table
 * bodies come first: htmx parses a message in a <template>, whose first element sets the parsing
 * mode, and after a <div> a <tbody> would be dropped.
 */
export function stationsUpdate(view: StationsView, images: ImageView[], now: number): SafeHtml {
  const own = html`<div id="this-station-wrap" hx-swap-oob="innerHTML">${thisStation(view)}</div>`;
  if (view.database !== 'postgres') return own;
  return html`<tbody id="station-rows" hx-swap-oob="innerHTML">${stationRows(view, now)}</tbody>
<tbody id="copy-rows" hx-swap-oob="innerHTML">${copyRows(view, images)}</tbody>
${own}`;
}

export function stationsPage(view: StationsView, images: ImageView[], now: number): SafeHtml {
  const live = html`<div hx-ext="sse" sse-connect="/dashboard/events?view=stations" sse-swap="update" hx-swap="none" hidden></div>`;
  const own = html`<section aria-labelledby="this-heading">
  <h2 id="this-heading">This station</h2>
  <div id="this-station-wrap">${thisStation(view)}</div>
</section>`;
  if (view.database !== 'postgres') {
    return html`<h1>Stations</h1>
${live}
${own}
<p class="empty" id="only-station">This is the only station: its database is SQLite in its own data folder, which no other station shares.
  To run several stations (one per line or per bench), give them one PostgreSQL with <code>--database postgres://…</code>
  and a <code>--station</code> name each; this page then shows them all and where each image is copied.</p>`;
  }
  return html`<h1>Stations</h1>
${live}
${own}
<section aria-labelledby="stations-heading">
  <h2 id="stations-heading">Stations on this database</h2>
  <div class="table-wrap">
    <table class="stations">
      <thead><tr><th scope="col">Station</th><th scope="col">State</th><th scope="col">Last heard from</th><th scope="col">URL</th><th scope="col">Started</th></tr></thead>
      <tbody id="station-rows">${stationRows(view, now)}</tbody>
    </table>
  </div>
  <p class="hint">Up: heard from within the last ${DOWN_AFTER_SECONDS} s (a running station writes down that it is alive every few seconds).
    Other stations fetch image copies and backups from a station's URL.</p>
</section>
<section aria-labelledby="copies-heading">
  <h2 id="copies-heading">Image copies</h2>
  <div class="table-wrap">
    <table class="copies">
      <thead><tr><th scope="col">Image</th><th scope="col">Copy on each station</th></tr></thead>
      <tbody id="copy-rows">${copyRows(view, images)}</tbody>
    </table>
  </div>
  <p class="hint">Each station keeps its own copy of every image, fetched from an up station that has one; a deploy starts on a station
    only once its copy is complete.</p>
</section>`;
}
