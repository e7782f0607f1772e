import type { Command } from 'commander';
import type { BackupView } from '../backups/service.js';
import type { ImageView } from '../images/library.js';
import type { JobView } from '../jobs/view.js';
import type { CommandContext } from './context.js';
import { afterOption, finishOption, reportJob } from './devices.js';
import { CliError, EXIT } from './errors.js';
import { macArgument } from './mac-argument.js';
import { printJson, printTable, say, size, when } from './output.js';

export function registerBackupCommands(program: Command, context: CommandContext) {
  const backup = context
    .command(program, 'backup', "read a device's eMMC into a stored backup (backup rm ID deletes one; backup promote ID makes it an image)")
    .argument('<mac>', 'the device, e.g. dc:a6:32:01:02:03', macArgument)
    .option('--then <boot>', 'after it ends ok, boot: emmc (default) or netboot')
    .option('--finish <what>', 'after it ends ok, the device: reboot (default), poweroff, or wait (LED steady on)')
    .option('--wait', 'follow the job to its end; exit 1 if it fails')
    .option('--json', 'print JSON')
    // `backup rm 7 --json`: options after a subcommand are the subcommand's (see main.ts).
    .enablePositionalOptions()
    .action(async (mac: string, options: { then?: string; finish?: string; wait?: boolean; json?: boolean }) => {
      const api = context.api(options);
      const job = await api.post<JobView>(`/api/devices/${encodeURIComponent(mac)}/backup`, { after: afterOption(options.then), finish: finishOption(options.finish) });
      await reportJob(job, options, api);
    });

  context
    .command(backup, 'rm', 'delete a stored backup')
    .argument('<id>', 'backup id (see: cm4prov backups)', backupId)
    .option('--json', 'print JSON')
    .action(async (id: number, options: { json?: boolean }) => {
      await context.api(options).delete(`/api/backups/${id}`);
      if (options.json) return printJson({ deleted: id });
      console.log(`Deleted backup ${id}.`);
    });

  context
    .command(backup, 'promote', 'make a stored backup an image in the library, to deploy to other devices (a hard link, no copy)')
    .argument('<id>', 'backup id (see: cm4prov backups)', backupId)
    .option('--name <name>', 'image name (default: backup-<mac>-<id>, as the dashboard suggests)')
    .option('--default', 'make it the image Deploy uses by default')
    .option('--json', 'print JSON')
    .action(async (id: number, options: { name?: string; default?: boolean; json?: boolean }) => {
      const api = context.api(options);
      const name = options.name ?? suggestedName(await api.get<BackupView>(`/api/backups/${id}`));
      let image = await api.post<ImageView>(`/api/backups/${id}/promote`, { name });
      if (options.default) image = await api.post<ImageView>(`/api/images/${encodeURIComponent(image.name)}/default`);
      if (options.json) return printJson(image);
      say(`Made image ${image.name} from backup ${id}: ${size(image.size)}, sha256 ${image.sha256}${image.default ? ' (default)' : ''}.`);
    });

  context
    .command(program, 'backups', 'list stored backups')
    .option('--device <mac>', 'only this device', macArgument)
    .option('--cursor <next>', 'continue a listing: older backups than the one it ended with')
    .option('--json', 'print JSON')
    .action(async (options: { device?: string; cursor?: string; json?: boolean }) => {
      const query = new URLSearchParams();
      if (options.device) query.set('device', options.device);
      if (options.cursor) query.set('cursor', options.cursor);
      const { backups, total, next } = await context.api(options).get<{ backups: BackupView[]; total: number; next: string | null }>(`/api/backups?${query}`);
      if (options.json) printJson(backups);
      else printTable(
        ['ID', 'DEVICE', 'CREATED', 'SIZE', 'SHA256', 'KNOWN'],
        backups.map((b) => [b.id, b.device_mac, when(b.created_at), size(b.size), b.sha256, b.verification.summary]),
        options.device ? 'No backups of this device.' : 'No backups yet.',
      );
      if (next) console.error(`${backups.length} of ${total} backups shown; for older ones add --cursor ${next}`);
    });
}

/** A backup id as the API takes it; anything else is a usage error, not a request. */
function backupId(input: string): number {
  if (/^[1-9]\d{0,8}$/.test(input.trim())) return Number(input.trim());
  throw new CliError(`'${input}' is not a backup id: expected a number from the ID column of \`cm4prov backups\``, EXIT.usage);
}

/** The dashboard's suggestion: backup-dca632010203-7. */
const suggestedName = (backup: BackupView) => `backup-${backup.device_mac.replaceAll(':', '')}-${backup.id}`;
