import type { BackupRow } from '../backups/store.js';
import type { DeviceRow } from '../devices/store.js';
import type { JobFileSummary, JobView } from '../jobs/view.js';
import { decodeEmmcCid, type EmmcIdentity } from './emmc-cid.js';
import type { RecordKey } from './store.js';

/** One job as a device record lists it: what was written or read, what it proved, who asked, how long. */
export interface RecordJob {
  id: number;
  device_mac: string;
  kind: JobView['kind'];
  state: JobView['state'];
  image: { name: string; sha256: string } | null;
  backup_id: number | null;
  /** What the device reported it wrote or read. */
  sha256: string | null;
  verification: { scope: string; checked: boolean; summary: string } | null;
  ordered_by: JobView['ordered_by'];
  /** The deploy's first-boot confirmation: what the installed OS said, and when (null: not asked for). */
  first_boot: JobView['first_boot'];
  /** Per-device files the deploy wrote, by hash (none for other jobs). */
  files: Array<Pick<JobFileSummary, 'partition' | 'path' | 'append' | 'sha256' | 'length' | 'read_back_sha256'>>;
  queued_at: string;
  started_at: string | null;
  ended_at: string | null;
  duration_seconds: number | null;
  rate_bytes_per_second: number | null;
  bytes: number;
  error: string | null;
}

export interface RecordBackup {
  id: number;
  job_id: number | null;
  device_mac: string;
  size: number;
  sha256: string;
  completeness: BackupRow['completeness'];
  device_checked: boolean;
  created_at: string;
  /** Deleted backups stay in the record, marked. */
  deleted_at: string | null;
}

/** Everything known of one device: keyed by its serial (all its MACs), else by its one MAC. */
export interface DeviceRecord {
  key: string;
  keyed_by: RecordKey['keyedBy'];
  serial: string | null;
  /** The model as its most recently seen MAC reported it. */
  model: string | null;
  storage_bytes: number | null;
  /** The eMMC as its most recently seen MAC reported it (each MAC below keeps its own CID). */
  emmc: EmmcIdentity | null;
  macs: Array<{ mac: string; ip: string | null; emmc_cid: string | null; first_seen_at: string; last_seen_at: string }>;
  first_seen_at: string;
  last_seen_at: string;
  jobs: RecordJob[];
  backups: RecordBackup[];
}

const iso = (ms: number) => new Date(ms).toISOString();

export function recordJob(job: JobView): RecordJob {
  const { verification: proof } = job;
  return {
    id: job.id,
    device_mac: job.device_mac,
    kind: job.kind,
    state: job.state,
    image: job.image ? { name: job.image.name, sha256: job.image.sha256 } : null,
    backup_id: job.backup_id,
    sha256: job.sha256,
    verification: proof ? { scope: proof.scope, checked: proof.checked, summary: proof.summary } : null,
    ordered_by: job.ordered_by,
    first_boot: job.first_boot,
    files: (job.files ?? []).map(({ partition, path, append, sha256, length, read_back_sha256 }) => ({ partition, path, append, sha256, length, read_back_sha256 })),
    queued_at: job.created_at,
    started_at: job.started_at,
    ended_at: job.ended_at,
    duration_seconds: job.duration_seconds,
    rate_bytes_per_second: job.rate_bytes_per_second,
    bytes: job.bytes_done,
    error: job.error,
  };
}

export function recordBackup(backup: BackupRow): RecordBackup {
  return {
    id: backup.id,
    job_id: backup.job_id,
    device_mac: backup.device_mac,
    size: backup.size,
    sha256: backup.sha256,
    completeness: backup.completeness,
    device_checked: backup.device_checked === 1,
    created_at: iso(backup.created_at),
    deleted_at: backup.deleted_at === null ? null : iso(backup.deleted_at),
  };
}

/** `devices` are the record's MACs (at least one); jobs and backups of all of them, oldest first. */
export function toDeviceRecord(key: RecordKey, devices: DeviceRow[], jobs: JobView[], backups: BackupRow[]): DeviceRecord {
  const latest = [...devices].sort((a, b) => b.last_seen_at - a.last_seen_at);
  const withCid = latest.find((device) => device.emmc_cid !== null);
  const first = (pick: (device: DeviceRow) => string | number | null) => latest.map(pick).find((value) => value !== null) ?? null;
  return {
    key: key.key,
    keyed_by: key.keyedBy,
    serial: key.keyedBy === 'serial' ? key.key : null,
    model: first((device) => device.model) as string | null,
    storage_bytes: first((device) => device.storage_bytes) as number | null,
    emmc: withCid ? decodeEmmcCid(withCid.emmc_cid!) : null,
    macs: devices.map((device) => ({
      mac: device.mac,
      ip: device.ip,
      emmc_cid: device.emmc_cid,
      first_seen_at: iso(device.first_seen_at),
      last_seen_at: iso(device.last_seen_at),
    })),
    first_seen_at: iso(Math.min(...devices.map((device) => device.first_seen_at))),
    last_seen_at: iso(Math.max(...devices.map((device) => device.last_seen_at))),
    jobs: jobs.map(recordJob),
    backups: backups.map(recordBackup),
  };
}
