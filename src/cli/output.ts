import { formatBytes, formatDuration, formatRate } from '../shared/format.js';

/**
 * Text from the server, much of it first written by devices (model, serial, error sentences, DHCP
 * host names), made safe to print: control characters (C0, DEL, C1), which a terminal would run
 * as escape sequences, and bidirectional overrides, which reorder what is shown, become visible
 * `\xNN` / `\u{NNNN}` escapes.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.codePointAt(0)!;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}

/** console.log for lines that hold server data. */
export const say = (line: string) => console.log(printable(line));

/** Prints rows as aligned columns; an empty list prints `empty` instead. */
export function printTable(headers: string[], rows: Array<Array<string | number | null | undefined>>, empty: string) {
  if (rows.length === 0) {
    console.log(empty);
    return;
  }
  const cells = rows.map((row) => row.map((cell) => (cell === null || cell === undefined || cell === '' ? '-' : printable(String(cell)))));
  const widths = headers.map((header, i) => Math.max(header.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ');
  console.log(line(headers));
  for (const row of cells) console.log(line(row));
}

/** JSON.stringify escapes C0 controls itself; DEL, C1 and bidi overrides get \u escapes too (still the same JSON value). */
export function printJson(value: unknown) {
  console.log(JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

export const size = (bytes: number | null | undefined) => (bytes === null || bytes === undefined ? '-' : formatBytes(bytes));

export const shortHash = (sha256: string | null | undefined) => (sha256 ? sha256.slice(0, 12) : '-');

/** `2026-11-25T10:04:05.123Z` → `2026-11-25 10:04:05` (UTC, as stored). */
export const when = (iso: string | null | undefined) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');

export const duration = (seconds: number | null | undefined) =>
  seconds === null || seconds === undefined ? '-' : formatDuration(seconds);

export const rate = (bytesPerSecond: number | null | undefined) => (bytesPerSecond ? formatRate(bytesPerSecond) : '-');
