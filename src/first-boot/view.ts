import type { JobRow } from '../jobs/store.js';
import type { BootReport } from './store.js';

/** A deploy's first-boot confirmation as every surface shows it; null: it did not ask for one. */
export interface FirstBootView {
  /** not_yet: the job is still queued or running; not_awaited: it ended without success, so no boot is awaited. */
  state: 'not_yet' | 'awaiting' | 'confirmed' | 'not_confirmed' | 'superseded' | 'not_awaited';
  /** Seconds the first boot is awaited after the job ends ok. */
  timeout_seconds: number;
  /** The hook the deploy wrote into the image: cmdline, cmdline-boot, or none (its profile carried one). */
  hook: 'cmdline' | 'cmdline-boot' | 'none';
  deadline_at: string | null;
  confirmed_at: string | null;
  os_release: string | null;
  kernel: string | null;
  /** The one sentence every surface shows after the job's state: "awaiting first boot", "confirmed: booted …". */
  summary: string;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function parseReport(job: Pick<JobRow, 'boot_report'>): BootReport | null {
  if (job.boot_report === null) return null;
  try {
    return JSON.parse(job.boot_report) as BootReport;
  } catch {
    return null;
  }
}

/** "10 min", or seconds when not whole minutes. */
export const timeoutWords = (seconds: number) => (seconds % 60 === 0 ? `${seconds / 60} min` : `${seconds} s`);

export function firstBootView(job: JobRow): FirstBootView | null {
  if (!job.boot_confirm) return null;
  const timeout = job.boot_confirm_timeout_s ?? 600;
  const report = parseReport(job);
  const active = job.state === 'queued' || job.state === 'running';
  const state = job.boot_state ?? (active ? 'not_yet' : 'not_awaited');
  const summary = {
    not_yet: `first boot to be confirmed within ${timeoutWords(timeout)} of an ok end`,
    not_awaited: `no first boot awaited: the job ended ${job.state}`,
    awaiting: 'awaiting first boot',
    confirmed: `confirmed: booted ${report?.os_release ?? 'an unnamed OS'} (${report?.kernel ?? 'kernel not given'})`,
    not_confirmed: `not confirmed: no first-boot call within ${timeoutWords(timeout)}`,
    superseded: 'first boot no longer awaited: a newer job was ordered for the device before it called',
  }[state];
  return {
    state,
    timeout_seconds: timeout,
    hook: job.boot_hook ?? 'none',
    deadline_at: iso(job.boot_deadline_at),
    confirmed_at: iso(job.boot_confirmed_at),
    os_release: report?.os_release ?? null,
    kernel: report?.kernel ?? null,
    summary,
  };
}
