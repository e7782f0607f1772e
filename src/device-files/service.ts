import { createHash } from 'node:crypto';
import type { DeviceRow } from '../devices/store.js';
import type { JobRow } from '../jobs/store.js';
import type { JobView } from '../jobs/view.js';
import type { Clock } from '../shared/clock.js';
import { badRequest, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { parseDeviceTable, serialKey } from './device-table.js';
import { appendsToFirstLine, checkProfile, oneLine, type ProfileInput } from './profiles.js';
import type { AppendTo, DeviceFilesStore, JobFileRow, NewJobFile, ProfileRow } from './store.js';
import { render, VARIABLES, type Lookup } from './template.js';

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

/** What an order tells the render besides the device: `rule_sequence` exists only for a rule's order. */
export interface OrderContext {
  image: { name: string };
  /** The ordering rule's number for this device (1 for the first device it took on); absent: a person ordered. */
  ruleSequence?: number;
}

/** The manifest's MODE: the octal mode, prefixed `a` (append at the end) or `f` (append to the first line). */
const MODE_PREFIX: Record<NonNullable<AppendTo> | 'whole', string> = { whole: '', end: 'a', first_line: 'f' };

const ENDED = new Set(['ok', 'unconfirmed', 'failed', 'cancelled']);
const SHA256 = /^[0-9a-f]{64}$/;
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const pad = (n: number) => String(n).padStart(2, '0');

/**
 * Per-device files: profiles (named sets of templates), the imported device table, and the
 * files rendered for each deploy, which its device writes after the image and reads back.
 */
export function createDeviceFilesService(deps: { store: DeviceFilesStore; clock: Clock; bus: EventBus }) {
  const { store, clock, bus } = deps;

  // A file's content may hold a secret from the device table: it is kept only while the job runs.
  bus.on('job.changed', ({ jobId, state }) => {
    if (ENDED.has(state)) store.dropContents(jobId);
  });

  function requireProfile(name: string): ProfileRow {
    const profile = store.profile(name);
    if (!profile) throw notFound(`there is no profile '${name}'`);
    return profile;
  }

  /** The variables of one device and order; `job_id` is a stand-in until the job exists. */
  function lookupFor(device: DeviceRow, context: { image: string; jobId: number; sequence: number; ruleSequence?: number; at: number }): Lookup {
    const at = new Date(context.at);
    const plain = device.mac.replaceAll(':', '');
    const fixed: Record<string, string | null> = {
      serial: device.serial,
      mac: device.mac,
      mac_plain: plain,
      mac_dash: device.mac.replaceAll(':', '-').toUpperCase(),
      model: device.model,
      emmc_cid: device.emmc_cid,
      job_id: String(context.jobId),
      image: context.image,
      sequence: String(context.sequence),
      rule_sequence: context.ruleSequence === undefined ? null : String(context.ruleSequence),
      date: `${at.getUTCFullYear()}-${pad(at.getUTCMonth() + 1)}-${pad(at.getUTCDate())}`,
      time: `${pad(at.getUTCHours())}:${pad(at.getUTCMinutes())}:${pad(at.getUTCSeconds())}`,
    };
    const table = store.table();
    return (name) => {
      if (name === 'rule_sequence' && context.ruleSequence === undefined) {
        return { missing: 'a person placed this order, and {{rule_sequence}} exists only for orders placed by a rule' };
      }
      if (!name.startsWith('table.')) {
        const value = fixed[name];
        return value ? { value } : { missing: `device ${device.mac} has no ${name} (its client did not report one)` };
      }
      const column = name.slice(6);
      if (!table) return { missing: 'no device table has been imported' };
      if (!table.columns.includes(column)) return { missing: `the device table has no column ${column}` };
      const key = table.key_column === 'serial' ? (device.serial ? serialKey(device.serial) : null) : device.mac;
      if (key === null) return { missing: `device ${device.mac} has no serial to find its row in the device table by` };
      const row = store.tableRow(key);
      if (!row) return { missing: `the device table has no row for ${table.key_column} ${key}` };
      const value = row[column] ?? '';
      return value !== '' ? { value } : { missing: `the device table row for ${table.key_column} ${key} has no value in column ${column}` };
    };
  }

  function renderAll(profile: ProfileRow, lookup: Lookup, device: DeviceRow): NewJobFile[] {
    return profile.files.map((file, idx) => {
      const rendered = render(file.template, lookup);
      if ('missing' in rendered) {
        throw badRequest(
          `file ${file.path} (partition ${file.partition}) of profile '${profile.name}' needs {{${rendered.name}}} for ${device.mac}, but ${rendered.missing}; nothing was queued`,
        );
      }
      const append: AppendTo = !file.append ? null : appendsToFirstLine(file.path) ? 'first_line' : 'end';
      // The kernel command line is one line: its addition loses the template's final line break.
      const text = append === 'first_line' ? oneLine(rendered.text) : rendered.text;
      if (append === 'first_line' && /[\r\n]/.test(text)) {
        throw badRequest(
          `file ${file.path} (partition ${file.partition}) of profile '${profile.name}' is appended to the kernel command line, which is one line, but its text for ${device.mac} has a line break (from a variable's value); nothing was queued`,
        );
      }
      const content = Buffer.from(text, 'utf8');
      return { idx, profile: profile.name, partition: file.partition, fs: file.fs, path: file.path, mode: file.mode, sha256: sha256(content), length: content.length, content, append };
    });
  }

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
    variables: () => [...VARIABLES, 'table.COLUMN'],
    profiles: () => store.profiles(),
    profile: requireProfile,
    saveProfile(input: ProfileInput): ProfileRow {
      store.saveProfile(input.name, checkProfile(input), clock.now());
      return store.profile(input.name)!;
    },
    deleteProfile(name: string) {
      if (!store.deleteProfile(name)) throw notFound(`there is no profile '${name}'`);
    },

    /** Replaces the device table with a CSV's rows. */
    importTable(csv: string) {
      const table = parseDeviceTable(csv);
      store.replaceTable(table.keyColumn, table.columns, table.rows, clock.now());
      return store.table()!;
    },
    table: () => store.table() ?? null,

    /**
     * Renders a profile for a deploy about to be ordered. Throws (400, one sentence naming the
     * file and the variable) when the device lacks a value, so nothing is queued; otherwise
     * returns what stores the files once the job exists (its id and sequence number filled in).
     */
    prepare(profileName: string, device: DeviceRow, order: OrderContext): (job: JobRow) => void {
      const profile = store.profile(profileName);
      if (!profile) throw badRequest(`there is no profile '${profileName}'; nothing was queued`);
      const context = { image: order.image.name, ruleSequence: order.ruleSequence, at: clock.now() };
      renderAll(profile, lookupFor(device, { ...context, jobId: 0, sequence: profile.next_sequence }), device);
      return (job) => {
        const sequence = store.takeSequence(profile.name);
        store.saveJobFiles(job.id, renderAll(profile, lookupFor(device, { ...context, jobId: job.id, sequence }), device));
      };
    },

    hasFiles: (jobId: number) => store.hasJobFiles(jobId),

    /** Why a device that cannot write files must not take this job, or null. */
    handOutProblem(job: JobRow, features: ReadonlySet<string>): string | null {
      const files = store.jobFiles(job.id);
      if (files.length === 0) return null;
      if (!features.has('files')) {
        return `not started: this deploy writes ${files.length} per-device files (profile '${files[0]!.profile}'), and the device's client did not say it can write them (no 'files' in its poll features; it needs mtools); nothing was written`;
      }
      const appended = files.filter((file) => file.append !== null);
      if (appended.length > 0 && !features.has('files_append')) {
        return `not started: this deploy appends to ${appended[0]!.path} (profile '${appended[0]!.profile}'), and the device's client did not say it can append (no 'files_append' in its poll features); nothing was written`;
      }
      return null;
    },

    /**
     * The device's file list: `file IDX PARTITION FS MODE LENGTH SHA256 PATH` lines. MODE is the
     * octal mode, prefixed `a` when the text is appended at the end of the image's file and `f`
     * when it is appended to its first line; LENGTH and SHA256 are of the text served.
     */
    listText(job: JobRow): string {
      const files = store.jobFiles(job.id);
      const line = (f: JobFileRow) => `file ${f.idx} ${f.partition} ${f.fs} ${MODE_PREFIX[f.append ?? 'whole']}${f.mode} ${f.length} ${f.sha256} ${f.path}`;
      return [`FILES=${files.length}`, ...files.map(line), ''].join('\n');
    },
    content(job: JobRow, idx: number): Buffer {
      const file = store.jobFiles(job.id).find((row) => row.idx === idx);
      if (!file?.content) throw notFound(`job ${job.id} has no file ${idx}`);
      return file.content;
    },

    /**
     * Checks the device's `files=IDX:SHA256[:LENGTH],…` against what was rendered and records
     * what it read back. An appended file is reported as the whole file the device read back
     * (LENGTH its bytes): the server has not read the image's own file, so it records that hash
     * and checks only that the file is at least as long as the text appended; the device compared
     * it with the file it meant to write. Null when every file passes (or the job has none); else
     * the one sentence the job fails with.
     */
    reportProblem(job: JobRow, reported: string | undefined): string | null {
      const files = store.jobFiles(job.id);
      if (files.length === 0) return null;
      const got = new Map<number, { hash: string; length: number | null }>();
      for (const item of (reported ?? '').split(',').filter(Boolean)) {
        const [idx, hash, length] = item.split(':');
        if (idx === undefined || !/^\d+$/.test(idx) || !hash || !SHA256.test(hash.toLowerCase())) continue;
        got.set(Number(idx), { hash: hash.toLowerCase(), length: length !== undefined && /^\d{1,15}$/.test(length) ? Number(length) : null });
      }
      if (got.size === 0) return `the device reported none of the ${files.length} per-device files as written and read back`;
      for (const [idx, { hash, length }] of got) if (files.some((f) => f.idx === idx)) store.saveReadBack(job.id, idx, hash, length);
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
    decorate(job: JobRow, view: JobView): JobView {
      const files = store.jobFiles(job.id);
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

export type DeviceFilesService = ReturnType<typeof createDeviceFilesService>;
