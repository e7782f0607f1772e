import type { Command } from 'commander';
import { orderedByText, stateText } from '../jobs/view.js';
import { recordsToCsv, type DeviceRecord } from '../records/index.js';
import type { ApiClient } from './api-client.js';
import type { CommandContext } from './context.js';
import { CliError, EXIT } from './errors.js';
import { firstBootDetail } from './first-boot.js';
import { printJson, printTable, say, size, when } from './output.js';

type Page = { records: DeviceRecord[]; total: number; next: string | null };

/** Every record matching the search, page after page (for --json and --csv). */
async function allRecords(api: ApiClient, search: string | undefined): Promise<DeviceRecord[]> {
  const records: DeviceRecord[] = [];
  let cursor: string | null = null;
  do {
    const query = new URLSearchParams({ limit: '500', ...(search ? { search } : {}), ...(cursor ? { cursor } : {}) });
    const page: Page = await api.get<Page>(`/api/records?${query}`);
    records.push(...page.records);
    cursor = page.next;
  } while (cursor);
  return records;
}

export function registerRecordCommands(program: Command, context: CommandContext) {
  const recordsCommand = context
    .command(program, 'records', 'one record per device (by serial, else MAC): eMMC, every job and backup (records show KEY: one in full)')
    .option('--search <text>', 'part of a MAC (any separators), an IP, a serial, a model or an eMMC CID')
    .option('--limit <n>', 'at most this many devices in the table (up to 500)', '100')
    .option('--cursor <next>', 'continue the table where it ended')
    .option('--json', 'print every matching record as JSON')
    .option('--csv', 'print every matching record as CSV, one row per job (for an MES)')
    // `records show KEY --json`: options after a subcommand are the subcommand's (see main.ts).
    .enablePositionalOptions()
    .action(async (options: { search?: string; limit: string; cursor?: string; json?: boolean; csv?: boolean }) => {
      if (options.json && options.csv) throw new CliError('--json and --csv cannot be given together', EXIT.usage);
      const api = context.api(options);
      if (options.json || options.csv) {
        const records = await allRecords(api, options.search);
        if (options.json) printJson(records);
        else process.stdout.write(recordsToCsv(records));
        return;
      }
      const query = new URLSearchParams({ limit: options.limit, ...(options.search ? { search: options.search } : {}), ...(options.cursor ? { cursor: options.cursor } : {}) });
      const page = await api.get<Page>(`/api/records?${query}`);
      printTable(
        ['SERIAL', 'MACS', 'MODEL', 'EMMC', 'JOBS', 'LAST JOB', 'LAST SEEN'],
        page.records.map((r) => {
          const last = r.jobs.at(-1);
          return [
            r.serial ?? '(none)', r.macs.map((m) => m.mac).join(' '), r.model,
            r.emmc ? `${r.emmc.manufacturer} ${r.emmc.name} ${size(r.storage_bytes)}` : size(r.storage_bytes),
            r.jobs.length, last ? `${last.id} ${last.kind} ${stateText(last)}` : '', when(r.last_seen_at),
          ];
        }),
        options.search ? 'No device matches.' : 'No device has registered yet.',
      );
      if (page.next) console.error(`${page.records.length} of ${page.total} devices shown; narrow with --search, or add --cursor ${page.next}`);
    });

  context
    .command(recordsCommand, 'show', 'one record in full: identity, every job (with its first boot) and backup')
    .argument('<key>', "the device's serial, or any of its MACs")
    .option('--json', 'print JSON')
    .action(async (key: string, options: { json?: boolean }) => {
      const record = await context.api(options).get<DeviceRecord>(`/api/records/${encodeURIComponent(key.trim())}`);
      if (options.json) return printJson(record);
      printRecord(record);
    });
}

function printRecord(record: DeviceRecord) {
  say(`Record ${record.key} (by ${record.keyed_by}): ${record.model ?? 'model unknown'}, eMMC ${record.emmc ? `${record.emmc.manufacturer} ${record.emmc.name} ` : ''}${size(record.storage_bytes)}`);
  for (const mac of record.macs) say(`MAC ${mac.mac}${mac.ip ? ` (${mac.ip})` : ''}: first seen ${when(mac.first_seen_at)}, last seen ${when(mac.last_seen_at)}`);
  if (record.jobs.length === 0) console.log('No jobs yet.');
  for (const job of record.jobs) {
    const what = job.kind === 'deploy' ? `deploy ${job.image?.name ?? '(image deleted)'}` : `backup${job.backup_id ? ` ${job.backup_id}` : ''}`;
    const result = job.verification?.summary ?? job.error;
    say(`job ${job.id} ${what} on ${job.device_mac} by ${orderedByText(job)}, ${when(job.queued_at)}: ${stateText(job)}${result ? `; ${result}` : ''}`);
    if (job.first_boot) say(`  first boot: ${firstBootDetail(job.first_boot)}`);
  }
  for (const backup of record.backups) {
    say(`backup ${backup.id} of ${backup.device_mac}, ${when(backup.created_at)}: ${size(backup.size)}, sha256 ${backup.sha256}${backup.deleted_at ? `, deleted ${when(backup.deleted_at)}` : ''}`);
  }
}
