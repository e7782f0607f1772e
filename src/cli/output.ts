import { formatBytes, formatDuration, formatRate } from '../shared/format.js';

/** Prints rows as aligned columns; an empty list prints `empty` instead. */
export function printTable(headers: string[], rows: Array<Array<string | number | null | undefined>>, empty: string) {
  if (rows.length === 0) {
    console.log(empty);
    return;
  }
  const cells = rows.map((row) => row.map((cell) => (cell === null || cell === undefined || cell === '' ? '-' : String(cell))));
  const widths = headers.map((header, i) => Math.max(header.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ');
  console.log(line(headers));
  for (const row of cells) console.log(line(row));
}

export function printJson(value: unknown) {
  console.log(JSON.stringify(value, null, 2));
}

export const size = (bytes: number | null | undefined) => (bytes === null || bytes === undefined ? '-' : formatBytes(bytes));

export const shortHash = (sha256: string | null | undefined) => (sha256 ? sha256.slice(0, 12) : '-');

/** `2026-11-25T10:04:05.123Z` → `2026-11-25 10:04:05` (UTC, as stored). */
export const when = (iso: string | null | undefined) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');

export const duration = (seconds: number | null | undefined) =>
  seconds === null || seconds === undefined ? '-' : formatDuration(seconds);

export const rate = (bytesPerSecond: number | null | undefined) => (bytesPerSecond ? formatRate(bytesPerSecond) : '-');
