import type { Command } from 'commander';
import { recordsToCsv, type DeviceRecord } from '../records/index.js';
import type { ApiClient } from './api-client.js';
import type { CommandContext } from './context.js';
import { CliError, EXIT } from './errors.js';
import { printJson, printTable, size, when } from './output.js';

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
  context
    .command(program, 'records', 'one record per device (by serial, else MAC): eMMC, every job and backup')
    .option('--search <text>', 'part of a MAC (any separators), an IP, a serial, a model or an eMMC CID')
    .option('--limit <n>', 'at most this many devices in the table (up to 500)', '100')
    .option('--cursor <next>', 'continue the table where it ended')
    .option('--json', 'print every matching record as JSON')
    .option('--csv', 'print every matching record as CSV, one row per job (for an MES)')
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
            r.jobs.length, last ? `${last.id} ${last.kind} ${last.state}` : '', when(r.last_seen_at),
          ];
        }),
        options.search ? 'No device matches.' : 'No device has registered yet.',
      );
      if (page.next) console.error(`${page.records.length} of ${page.total} devices shown; narrow with --search, or add --cursor ${page.next}`);
    });
}
