import { field } from '../jobs/csv.js';
import type { DeviceRecord, RecordJob } from './view.js';

type Cell = string | number | null | undefined;

// The device's identity, repeated on each of its rows, so that an MES can read any row alone.
const IDENTITY: Array<[string, (record: DeviceRecord, job: RecordJob | undefined) => Cell]> = [
  ['record', (r) => r.key],
  ['serial', (r) => r.serial],
  ['device_mac', (r, j) => j?.device_mac ?? r.macs.at(-1)?.mac],
  ['model', (r) => r.model],
  ['emmc_cid', (r) => r.emmc?.cid],
  ['emmc_manufacturer', (r) => r.emmc?.manufacturer],
  ['emmc_name', (r) => r.emmc?.name],
  ['emmc_serial', (r) => r.emmc?.serial],
  ['emmc_manufactured', (r) => r.emmc?.manufactured.text],
];

const JOB: Array<[string, (job: RecordJob) => Cell]> = [
  ['job', (j) => j.id],
  ['action', (j) => j.kind],
  ['state', (j) => j.state],
  ['image', (j) => j.image?.name],
  ['image_sha256', (j) => j.image?.sha256],
  ['backup_id', (j) => j.backup_id],
  ['ordered_by', (j) => (j.ordered_by.kind === 'rule' ? `rule ${j.ordered_by.name} (#${j.ordered_by.id})` : 'operator')],
  ['queued_at', (j) => j.queued_at],
  ['started_at', (j) => j.started_at],
  ['ended_at', (j) => j.ended_at],
  ['duration_seconds', (j) => j.duration_seconds],
  ['bytes', (j) => j.bytes],
  ['throughput_mb_per_s', (j) => ((j.state === 'ok' || j.state === 'unconfirmed') && j.rate_bytes_per_second ? (j.rate_bytes_per_second / 1e6).toFixed(2) : null)],
  ['sha256', (j) => j.sha256],
  ['verified', (j) => j.verification?.scope],
  ['verification', (j) => j.verification?.summary],
  ['first_boot', (j) => j.first_boot?.state],
  ['first_boot_at', (j) => j.first_boot?.confirmed_at],
  ['first_boot_os', (j) => j.first_boot?.os_release],
  ['first_boot_kernel', (j) => j.first_boot?.kernel],
  ['error', (j) => j.error],
];

/**
 * One row per job, each with its device's identity; a device with no job yet gets one row with
 * the job columns empty, so every device is in the export. Quoting and formula neutralising are
 * the History export's (jobs/csv.ts): device-supplied text (model, serial) lands in these cells.
 */
export function recordsToCsv(records: DeviceRecord[]): string {
  const lines = [[...IDENTITY, ...JOB].map(([name]) => name).join(',')];
  for (const record of records) {
    const jobs: Array<RecordJob | undefined> = record.jobs.length ? record.jobs : [undefined];
    for (const job of jobs) {
      const identity = IDENTITY.map(([, pick]) => field(pick(record, job)));
      lines.push([...identity, ...JOB.map(([, pick]) => (job ? field(pick(job)) : ''))].join(','));
    }
  }
  return `${lines.join('\r\n')}\r\n`;
}
