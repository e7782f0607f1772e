import type { ImageRow } from '../images/store.js';
import type { JobRow } from './store.js';
import { firstBootView, type FirstBootView } from '../first-boot/view.js';
import { describeVerification, type VerificationView } from './verification.js';

export interface JobView {
  id: number;
  device_mac: string;
  kind: JobRow['kind'];
  state: JobRow['state'];
  phase: string | null;
  image: { id: number; name: string; size: number; sha256: string } | null;
  backup_id: number | null;
  bytes_total: number | null;
  bytes_done: number;
  sha256: string | null;
  error: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  duration_seconds: number | null;
  /**
   * Seconds in each phase the device reported, in the order they began (writing, verifying, …),
   * the current one counted up to now; empty before the first report. What is not in a phase
   * (the poll, the hand-out, the device's own start) is the rest of duration_seconds.
   */
  phase_seconds: Record<string, number>;
  /** While running: the current rate of the current phase; once ended: the average over the job. */
  rate_bytes_per_second: number | null;
  eta_seconds: number | null;
  after_success: JobRow['after_success'];
  /** What the device does after an ok end: reboot, poweroff or wait (clients with the `finish` feature). */
  finish: JobRow['finish'];
  /** How the bytes travel: the whole image, or its mapped chunks (zstd or plain). */
  transfer: { mode: JobRow['transfer_mode']; encoding: JobRow['encoding']; full_match: boolean };
  /** What the device reports: bytes written, bytes read back and checked, its current rate. */
  bytes_written: number | null;
  bytes_verified: number | null;
  device_rate_bytes_per_second: number | null;
  discarded: boolean | null;
  /** What the finished job proved, in words every surface shows; null while active or when nothing was proven. */
  verification: VerificationView | null;
  /** The address the device took the job from; its job URLs answer only there. */
  /** The station that handed it out and serves its bytes (several stations share one database); null while queued. */
  station: string | null;
  device_ip: string | null;
  /** Who ordered it: a person, or a rule (by the name it had then; the id may be of a deleted rule). */
  ordered_by: { kind: 'operator' } | { kind: 'rule'; id: number; name: string };
  /** Per-device files the deploy writes (src/device-files/), by hash: present only for a deploy with a profile. */
  files?: JobFileSummary[];
  /** First-boot confirmation (src/first-boot/): null when the deploy did not ask for it. */
  first_boot: FirstBootView | null;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** One per-device file of a deploy: where it goes and the sha256 of what was rendered (and read back). */
export interface JobFileSummary {
  partition: number;
  fs: string;
  path: string;
  /** null: written whole; 'end' / 'first_line': appended to the image's file (sha256 and length are of the text appended). */
  append: 'end' | 'first_line' | null;
  sha256: string;
  length: number;
  /** For an appended file: of the whole file the device read back, and its length. */
  read_back_sha256: string | null;
  read_back_length: number | null;
}

/** The job's state with its first boot when it asked for one: "ok · awaiting first boot". */
export const stateText = (job: Pick<JobView, 'state' | 'first_boot'>) =>
  job.first_boot && job.first_boot.state !== 'not_yet' && job.first_boot.state !== 'not_awaited' ? `${job.state} · ${job.first_boot.summary}` : job.state;

/** Who ordered the job, in words: `operator`, or `rule NAME`. */
export const orderedByText = (job: Pick<JobView, 'ordered_by'>) => (job.ordered_by.kind === 'rule' ? `rule ${job.ordered_by.name}` : 'operator');

/** phase_ms as seconds (one decimal), the running phase counted up to `now`. */
function phaseSeconds(job: Pick<JobRow, 'phase_ms' | 'phase' | 'phase_started_at'>, now: number): Record<string, number> {
  let spent: Record<string, number> = {};
  try {
    spent = job.phase_ms === null ? {} : (JSON.parse(job.phase_ms) as Record<string, number>);
  } catch {
    spent = {};
  }
  const current = job.phase !== null && job.phase_started_at !== null ? { [job.phase]: (spent[job.phase] ?? 0) + Math.max(0, now - job.phase_started_at) } : {};
  return Object.fromEntries(Object.entries({ ...spent, ...current }).map(([phase, ms]) => [phase, Math.round(ms / 100) / 10]));
}

export function toJobView(job: JobRow, image: ImageRow | undefined, now: number, liveRate: number | null): JobView {
  const end = job.ended_at ?? now;
  const seconds = job.started_at === null ? null : Math.max(0, (end - job.started_at) / 1000);
  const average = seconds && seconds > 0 && job.bytes_done > 0 ? job.bytes_done / seconds : null;
  const rate = job.state === 'running' ? liveRate : job.state === 'ok' || job.state === 'unconfirmed' ? average : null;
  const remaining = job.bytes_total === null ? null : Math.max(0, job.bytes_total - job.bytes_done);
  return {
    id: job.id,
    device_mac: job.device_mac,
    kind: job.kind,
    state: job.state,
    phase: job.phase,
    image: image ? { id: image.id, name: image.name, size: image.size, sha256: image.sha256 } : null,
    backup_id: job.backup_id,
    bytes_total: job.bytes_total,
    bytes_done: job.bytes_done,
    sha256: job.sha256,
    error: job.error,
    created_at: iso(job.created_at)!,
    started_at: iso(job.started_at),
    ended_at: iso(job.ended_at),
    duration_seconds: seconds === null ? null : Math.round(seconds * 10) / 10,
    phase_seconds: phaseSeconds(job, now),
    rate_bytes_per_second: rate === null ? null : Math.round(rate),
    eta_seconds: job.state === 'running' && rate && remaining !== null ? Math.round(remaining / rate) : null,
    after_success: job.after_success,
    finish: job.finish,
    transfer: { mode: job.transfer_mode, encoding: job.encoding, full_match: job.full_match === 1 },
    bytes_written: job.bytes_written,
    bytes_verified: job.bytes_verified,
    device_rate_bytes_per_second: job.device_rate,
    discarded: job.discarded === null ? null : job.discarded === 1,
    verification: describeVerification(job),
    device_ip: job.device_ip,
    station: job.station,
    ordered_by: job.ordered_by === 'rule' ? { kind: 'rule', id: job.rule_id!, name: job.rule_name! } : { kind: 'operator' },
    first_boot: firstBootView(job),
  };
}
