import { orderedByText, type JobView } from './view.js';

const COLUMNS: Array<[string, (job: JobView) => string | number | null | undefined]> = [
  ['job', (j) => j.id],
  ['device_mac', (j) => j.device_mac],
  ['action', (j) => j.kind],
  ['image', (j) => j.image?.name],
  ['backup_id', (j) => j.backup_id],
  ['state', (j) => j.state],
  ['ordered_by', (j) => orderedByText(j)],
  ['created_at', (j) => j.created_at],
  ['started_at', (j) => j.started_at],
  ['ended_at', (j) => j.ended_at],
  ['duration_seconds', (j) => j.duration_seconds],
  ['bytes', (j) => j.bytes_done],
  ['throughput_mb_per_s', (j) => ((j.state === 'ok' || j.state === 'unconfirmed') && j.rate_bytes_per_second ? (j.rate_bytes_per_second / 1e6).toFixed(2) : null)],
  ['sha256', (j) => j.sha256],
  // What was proven, as a word for filters and as the sentence every other surface shows.
  ['verified', (j) => j.verification?.scope],
  ['verification', (j) => j.verification?.summary],
  // First-boot confirmation (src/first-boot/): empty when the deploy did not ask for it.
  ['first_boot', (j) => j.first_boot?.state],
  ['first_boot_at', (j) => j.first_boot?.confirmed_at],
  ['error', (j) => j.error],
];

/**
 * RFC 4180: quote a field holding a comma, quote or line break; double inner quotes. A text
 * cell that a spreadsheet would run as a formula (=, +, -, @, tab or CR first: OWASP's "CSV
 * injection") gets a leading apostrophe; device-supplied text ends up in these cells.
 */
export function field(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function jobsToCsv(jobs: JobView[]): string {
  const lines = [COLUMNS.map(([name]) => name).join(',')];
  for (const job of jobs) lines.push(COLUMNS.map(([, pick]) => field(pick(job))).join(','));
  return `${lines.join('\r\n')}\r\n`;
}
