import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Queries } from '../db/database.js';
import type { DeviceRow } from '../devices/store.js';
import type { JobRow } from '../jobs/store.js';
import type { Clock } from '../shared/clock.js';
import { guarded } from '../shared/background.js';
import { badRequest, conflict, notFound } from '../shared/errors.js';
import type { EventBus } from '../shared/events.js';
import { parseDeviceTable, serialKey } from './device-table.js';
import { createJobFileReports, FIRST_BOOT_HOOK_SOURCE, sourceWords } from './job-report.js';
import { appendsToFirstLine, checkProfile, oneLine, type ProfileInput } from './profiles.js';
import { createDeviceFilesStore, type AppendTo, type DeviceFilesStore, type JobFileRow, type NewJobFile, type ProfileFile, type ProfileRow } from './store.js';
import { render, VARIABLES, type Lookup } from './template.js';
import { hookConflict, hookFiles, type FirstBootHook } from '../first-boot/hook-files.js';

/** What an order tells the render besides the device: `rule_sequence` exists only for a rule's order. */
export interface OrderContext {
  image: { name: string };
  /** The ordering rule's number for this device (1 for the first device it took on); absent: a person ordered. */
  ruleSequence?: number;
  /**
   * The deploy asks for first-boot confirmation (src/first-boot/): its one-time token, the URL
   * the installed OS calls back (null: unknown), and the hook whose files follow the profile's.
   */
  firstBoot?: { token: string; url: string | null; hook: FirstBootHook };
}

/** Stores a prepared order's files once its job exists: in the caller's transaction `tx` when given. */
export type StoreJobFiles = (job: JobRow, tx?: Queries) => Promise<void>;

/** The manifest's MODE: the octal mode, prefixed `a` (append at the end) or `f` (append to the first line). */
const MODE_PREFIX: Record<NonNullable<AppendTo> | 'whole', string> = { whole: '', end: 'a', first_line: 'f' };

const ENDED = new Set(['ok', 'unconfirmed', 'failed', 'cancelled']);
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const pad = (n: number) => String(n).padStart(2, '0');

/**
 * Per-device files: profiles (named sets of templates), the imported device table, and the
 * files rendered for each deploy, which its device writes after the image and reads back.
 */
export function createDeviceFilesService(deps: { store: DeviceFilesStore; clock: Clock; bus: EventBus; log: Logger }) {
  const { store, clock, bus } = deps;

  // A file's content may hold a secret from the device table: it is kept only while the job runs.
  const dropContents = guarded(deps.log, 'dropping the contents of an ended job\'s files', (jobId: number) => store.dropContents(jobId));
  bus.on('job.changed', ({ jobId, state }) => {
    if (ENDED.has(state)) dropContents(jobId);
  });

  async function requireProfile(name: string): Promise<ProfileRow> {
    const profile = await store.profile(name);
    if (!profile) throw notFound(`there is no profile '${name}'`);
    return profile;
  }

  /**
   * The variables of one device and order; `job_id` is a stand-in until the job exists. The
   * device's table row is read up front (from `from`), so rendering itself reads nothing.
   */
  async function lookupFor(
    from: DeviceFilesStore,
    device: DeviceRow,
    context: { image: string; jobId: number; sequence: number; ruleSequence?: number; firstBoot?: OrderContext['firstBoot']; at: number },
  ): Promise<Lookup> {
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
    const table = await from.table();
    const key = table?.key_column === 'serial' ? (device.serial ? serialKey(device.serial) : null) : device.mac;
    const row = table && key !== null ? await from.tableRow(key) : undefined;
    return (name) => {
      if (name === 'rule_sequence' && context.ruleSequence === undefined) {
        return { missing: 'a person placed this order, and {{rule_sequence}} exists only for orders placed by a rule' };
      }
      if (name === 'first_boot_token' || name === 'first_boot_url') {
        if (!context.firstBoot) return { missing: `this deploy does not ask for first-boot confirmation, and {{${name}}} exists only for one that does` };
        const value = name === 'first_boot_token' ? context.firstBoot.token : context.firstBoot.url;
        return value
          ? { value }
          : { missing: `the server does not know where device ${device.mac} reaches it (its client never called with a Host header, and there is no --public-url) to tell the installed OS where to call back` };
      }
      if (!name.startsWith('table.')) {
        const value = fixed[name];
        return value ? { value } : { missing: `device ${device.mac} has no ${name} (its client did not report one)` };
      }
      const column = name.slice(6);
      if (!table) return { missing: 'no device table has been imported' };
      if (!table.columns.includes(column)) return { missing: `the device table has no column ${column}` };
      if (key === null) return { missing: `device ${device.mac} has no serial to find its row in the device table by` };
      if (!row) return { missing: `the device table has no row for ${table.key_column} ${key}` };
      const value = row[column] ?? '';
      return value !== '' ? { value } : { missing: `the device table row for ${table.key_column} ${key} has no value in column ${column}` };
    };
  }

  /** Renders `files`, each with its source (a profile's name, or FIRST_BOOT_HOOK_SOURCE). */
  function renderAll(files: { file: ProfileFile; source: string }[], lookup: Lookup, device: DeviceRow): NewJobFile[] {
    // The hook reads the serial on the device; the one the client reported is only its fallback.
    const hookLookup: Lookup = (name) => {
      const found = lookup(name);
      return name === 'serial' && 'missing' in found ? { value: '' } : found;
    };
    return files.map(({ file, source }, idx) => {
      const rendered = render(file.template, source === FIRST_BOOT_HOOK_SOURCE ? hookLookup : lookup);
      const of = `file ${file.path} (partition ${file.partition}) of ${sourceWords(source)}`;
      if ('missing' in rendered) {
        throw badRequest(`${of} needs {{${rendered.name}}} for ${device.mac}, but ${rendered.missing}; nothing was queued`);
      }
      const append: AppendTo = !file.append ? null : appendsToFirstLine(file.path) ? 'first_line' : 'end';
      // The kernel command line is one line: its addition loses the template's final line break.
      const text = append === 'first_line' ? oneLine(rendered.text) : rendered.text;
      if (append === 'first_line' && /[\r\n]/.test(text)) {
        throw badRequest(`${of} is appended to the kernel command line, which is one line, but its text for ${device.mac} has a line break (from a variable's value); nothing was queued`);
      }
      const content = Buffer.from(text, 'utf8');
      return { idx, profile: source, partition: file.partition, fs: file.fs, path: file.path, mode: file.mode, sha256: sha256(content), length: content.length, content, append };
    });
  }

  return {
    variables: () => [...VARIABLES, 'table.COLUMN'],
    profiles: () => store.profiles(),
    profile: requireProfile,
    saveProfile: (input: ProfileInput): Promise<ProfileRow> => store.saveProfile(input.name, checkProfile(input), clock.now()),
    async deleteProfile(name: string): Promise<void> {
      if (!(await store.deleteProfile(name))) throw notFound(`there is no profile '${name}'`);
    },

    /** Replaces the device table with a CSV's rows. */
    importTable(csv: string) {
      const table = parseDeviceTable(csv);
      return store.replaceTable(table.keyColumn, table.columns, table.rows, clock.now());
    },
    table: async () => (await store.table()) ?? null,

    /**
     * Renders a profile for a deploy about to be ordered. Throws (400, one sentence naming the
     * file and the variable) when the device lacks a value, so nothing is queued; otherwise
     * returns what stores the files once the job exists (its id and sequence number filled in).
     * The caller runs that in the transaction creating the job, so that no device is handed the
     * job before its files are stored, and no job stays without them when storing them fails.
     */
    async prepare(profileName: string | undefined, device: DeviceRow, order: OrderContext): Promise<StoreJobFiles> {
      const profile = profileName === undefined ? undefined : await store.profile(profileName);
      if (profileName !== undefined && !profile) throw badRequest(`there is no profile '${profileName}'; nothing was queued`);
      if (order.firstBoot) {
        const clash = hookConflict(order.firstBoot.hook, profile?.files ?? [], profileName);
        if (clash) throw badRequest(`${clash}; nothing was queued`);
      }
      const files = [
        ...(profile?.files ?? []).map((file) => ({ file, source: profile!.name })),
        ...(order.firstBoot ? hookFiles(order.firstBoot.hook) : []).map((file) => ({ file, source: FIRST_BOOT_HOOK_SOURCE })),
      ];
      const context = { image: order.image.name, ruleSequence: order.ruleSequence, firstBoot: order.firstBoot, at: clock.now() };
      // {{sequence}} is the profile's counter; without a profile it is the job's own number 1.
      renderAll(files, await lookupFor(store, device, { ...context, jobId: 0, sequence: profile?.next_sequence ?? 1 }), device);
      return async (job, tx) => {
        if (files.length === 0) return;
        const target = tx ? createDeviceFilesStore(tx) : store;
        const sequence = profile ? await target.takeSequence(profile.name) : 1;
        if (sequence === undefined) throw conflict(`profile '${profile!.name}' was deleted while this order was placed; nothing was queued`);
        await target.saveJobFiles(job.id, renderAll(files, await lookupFor(target, device, { ...context, jobId: job.id, sequence }), device));
      };
    },

    ...createJobFileReports(store),

    /**
     * The device's file list: `file IDX PARTITION FS MODE LENGTH SHA256 PATH` lines. MODE is the
     * octal mode, prefixed `a` when the text is appended at the end of the image's file and `f`
     * when it is appended to its first line; LENGTH and SHA256 are of the text served.
     */
    async listText(job: JobRow): Promise<string> {
      const files = await store.jobFiles(job.id);
      const line = (f: JobFileRow) => `file ${f.idx} ${f.partition} ${f.fs} ${MODE_PREFIX[f.append ?? 'whole']}${f.mode} ${f.length} ${f.sha256} ${f.path}`;
      return [`FILES=${files.length}`, ...files.map(line), ''].join('\n');
    },
    async content(job: JobRow, idx: number): Promise<Buffer> {
      const file = (await store.jobFiles(job.id)).find((row) => row.idx === idx);
      if (!file?.content) throw notFound(`job ${job.id} has no file ${idx}`);
      return file.content;
    },

  };
}

export type DeviceFilesService = ReturnType<typeof createDeviceFilesService>;
