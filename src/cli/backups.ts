import type { Command } from 'commander';
import type { BackupView } from '../backups/service.js';
import type { JobView } from '../jobs/view.js';
import type { CommandContext } from './context.js';
import { afterOption, reportJob } from './devices.js';
import { printJson, printTable, size, when } from './output.js';

export function registerBackupCommands(program: Command, context: CommandContext) {
  const backup = context
    .command(program, 'backup', "read a device's eMMC into a stored backup (backup rm ID deletes one)")
    .argument('<mac>', 'the device, e.g. dc:a6:32:01:02:03')
    .option('--then <boot>', 'after it ends ok, boot: emmc (default) or netboot')
    .option('--wait', 'follow the job to its end; exit 1 if it fails')
    .option('--json', 'print JSON')
    .action(async (mac: string, options: { then?: string; wait?: boolean; json?: boolean }) => {
      const api = context.api(options);
      const job = await api.post<JobView>(`/api/devices/${encodeURIComponent(mac)}/backup`, { after: afterOption(options.then) });
      await reportJob(job, options, api);
    });

  context
    .command(backup, 'rm', 'delete a stored backup')
    .argument('<id>', 'backup id (see: cm4prov backups)')
    .option('--json', 'print JSON')
    .action(async (id: string, options: { json?: boolean }) => {
      await context.api(options).delete(`/api/backups/${encodeURIComponent(id)}`);
      if (options.json) return printJson({ deleted: Number(id) });
      console.log(`Deleted backup ${id}.`);
    });

  context
    .command(program, 'backups', 'list stored backups')
    .option('--device <mac>', 'only this device')
    .option('--json', 'print JSON')
    .action(async (options: { device?: string; json?: boolean }) => {
      const query = options.device ? `?device=${encodeURIComponent(options.device)}` : '';
      const { backups } = await context.api(options).get<{ backups: BackupView[] }>(`/api/backups${query}`);
      if (options.json) return printJson(backups);
      printTable(
        ['ID', 'DEVICE', 'CREATED', 'SIZE', 'SHA256', 'KNOWN'],
        backups.map((b) => [b.id, b.device_mac, when(b.created_at), size(b.size), b.sha256, b.verification.summary]),
        'No backups yet.',
      );
    });
}
