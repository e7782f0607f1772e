import type { JobRow } from '../jobs/store.js';
import type { JobView } from '../jobs/view.js';
import type { AppendTo, DeviceFilesStore, JobFileRow } from './store.js';

/** What job_files.profile says of the files the first-boot hook adds (src/first-boot/hook-files.ts). */
export const FIRST_BOOT_HOOK_SOURCE = '(first-boot hook)';
/** "profile 'line'", or "the first-boot hook". */
export const sourceWords = (profile: string) => (profile === FIRST_BOOT_HOOK_SOURCE ? 'the first-boot hook' : `profile '${profile}'`);

/** What a job records of a file it wrote: never its content. */
export interface JobFileView {
  idx: number;
  partition: number;
  fs: JobFileRow['fs'];
  path: string;
  mode: string;
  /** null: written whole; 'end' or 'first_line': the text was appended to the image's file there. */
  append: AppendTo;
  /** Of the rendered text: the whole file, or what was appended. */
  sha256: string;
  length: number;
  /** What the device read back after writing (for an appended file: the whole file); null until it reported. */
  read_back_sha256: string | null;
  read_back_length: number | null;
}

const SHA256 = /^[0-9a-f]{64}$/;

/**
 * What the server says about a job's per-device files: whether a device may take the job, whether
 * what it reported matches what was rendered, and how the job's view and sentence show them.
 */
export function createJobFileReports(store: DeviceFilesStore) {
  const fileView = (row: JobFileRow): JobFileView => ({
    idx: row.idx,
    partition: row.partition,
    fs: row.fs,
    path: row.path,
    mode: row.mode,
    append: row.append,
    sha256: row.sha256,
    length: row.length,
    read_back_sha256: row.read_back_sha256,
    read_back_length: row.read_back_length,
  });

  return {
    hasFiles: (jobId: number) => store.hasJobFiles(jobId),

    /** Why a device that cannot write files must not take this job, or null. */
    async handOutProblem(job: JobRow, features: ReadonlySet<string>): Promise<string | null> {
      const files = await store.jobFiles(job.id);
      if (files.length === 0) return null;
      if (!features.has('files')) {
        return `not started: this deploy writes ${files.length} per-device files (${sourceWords(files[0]!.profile)}), and the device's client did not say it can write them (no 'files' in its poll features; it needs mtools); nothing was written`;
      }
      const appended = files.filter((file) => file.append !== null);
      if (appended.length > 0 && !features.has('files_append')) {
        return `not started: this deploy appends to ${appended[0]!.path} (${sourceWords(appended[0]!.profile)}), and the device's client did not say it can append (no 'files_append' in its poll features); nothing was written`;
      }
      return null;
    },

    /**
     * Checks the device's `files=IDX:SHA256[:LENGTH],…` against what was rendered and records
     * what it read back. An appended file is reported as the whole file the device read back
     * (LENGTH its bytes): the server has not read the image's own file, so it records that hash
     * and checks only that the file is at least as long as the text appended; the device compared
     * it with the file it meant to write. Null when every file passes (or the job has none); else
     * the one sentence the job fails with.
     */
    async reportProblem(job: JobRow, reported: string | undefined): Promise<string | null> {
      const files = await store.jobFiles(job.id);
      if (files.length === 0) return null;
      const got = new Map<number, { hash: string; length: number | null }>();
      for (const item of (reported ?? '').split(',').filter(Boolean)) {
        const [idx, hash, length] = item.split(':');
        if (idx === undefined || !/^\d+$/.test(idx) || !hash || !SHA256.test(hash.toLowerCase())) continue;
        got.set(Number(idx), { hash: hash.toLowerCase(), length: length !== undefined && /^\d{1,15}$/.test(length) ? Number(length) : null });
      }
      if (got.size === 0) return `the device reported none of the ${files.length} per-device files as written and read back`;
      for (const [idx, { hash, length }] of got) if (files.some((f) => f.idx === idx)) await store.saveReadBack(job.id, idx, hash, length);
      for (const file of files) {
        const read = got.get(file.idx);
        const where = `per-device file ${file.path} (partition ${file.partition})`;
        if (!read) return `${where} was not reported as written and read back`;
        if (file.append === null) {
          if (read.hash !== file.sha256) return `${where} reads back as sha256 ${read.hash}, not ${file.sha256}`;
        } else if (read.length === null) {
          return `${where} was appended to, but the device did not report the length of the file it read back`;
        } else if (read.length < file.length) {
          return `${where} reads back as ${read.length} bytes, fewer than the ${file.length} bytes appended to it`;
        }
      }
      return null;
    },

    /** The job's files in its view, and in its verification sentence once it ended ok. */
    async decorate(job: JobRow, view: JobView): Promise<JobView> {
      // Only a deploy writes files: job lists (History, Devices) ask no more of backups.
      if (job.kind !== 'deploy') return view;
      const files = await store.jobFiles(job.id);
      if (files.length === 0) return view;
      const appended = files.filter((file) => file.append !== null).length;
      const whole = files.length - appended;
      const count = (n: number) => `${n} per-device ${n === 1 ? 'file' : 'files'}`;
      const said = [
        ...(whole > 0 ? [`${count(whole)} written and read back`] : []),
        // The device composed these files and compared what it read back; the server never read the image's own file.
        ...(appended > 0 ? [`${whole > 0 ? appended : count(appended)} appended to and read back by the device`] : []),
      ];
      const verification =
        view.verification && job.state === 'ok' ? { ...view.verification, summary: `${view.verification.summary}; ${said.join('; ')}` } : view.verification;
      return { ...view, verification, files: files.map(fileView) };
    },
  };
}
