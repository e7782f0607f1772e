import { formatBytes, formatDuration, formatRate } from '../shared/format.js';
import { html, type SafeHtml } from './html.js';

export const bytes = (value: number | null | undefined) => (value === null || value === undefined ? '–' : formatBytes(value));

export const rate = (bytesPerSecond: number | null | undefined) => (bytesPerSecond ? formatRate(bytesPerSecond) : '–');

export const duration = (seconds: number | null | undefined) =>
  seconds === null || seconds === undefined ? '–' : formatDuration(seconds);

/** `2026-11-25 10:04:05 UTC` as text; app.js shows it in the browser's time zone. */
export function timestamp(iso: string | null | undefined): SafeHtml | string {
  return iso ? html`<time datetime="${iso}" data-local>${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC</time>` : '–';
}

/** "12 s ago": server-rendered, then kept current in the browser by app.js. */
export function ago(iso: string, now: number): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** DOM ids from MACs: `dc:a6:32:00:00:01` → `dca632000001`. */
export const macId = (mac: string) => mac.replaceAll(':', '');
