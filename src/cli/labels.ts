import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { DeliveryView, LabelSettingsView } from '../notify/index.js';
import type { CommandContext } from './context.js';
import { CliError, EXIT } from './errors.js';
import { printJson, say } from './output.js';
import { numericId, printDeliveries } from './webhooks.js';

/** `cm4prov labels …`: the ZPL label printed for each job that ends ok. */
export function registerLabelCommands(program: Command, context: CommandContext) {
  const labels = context
    .command(program, 'labels', 'ZPL labels printed when a job ends ok (labels show, set, off, reprint JOB)')
    .enablePositionalOptions();

  context
    .command(labels, 'show', 'the label settings, template and the last labels sent')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const settings = await context.api(options).get<LabelSettingsView>('/api/labels');
      if (options.json) return printJson(settings);
      say(`Labels: ${settings.enabled ? 'on' : 'off'}${settings.backups ? ' (deploys and backups)' : ' (deploys)'}; output: ${settings.output ?? 'none'}`);
      console.log(`Variables: ${settings.variables.map((name) => `{{${name}}}`).join(' ')}`);
      if (settings.template) say(`Template:\n${settings.template}`);
      printDeliveries(settings.recent, 'No labels sent yet.');
    });

  context
    .command(labels, 'set', 'set the template and where labels go, and turn them on')
    .option('--template <file>', 'a ZPL file with {{variables}}')
    .option('--printer <address>', "the printer's raw port: tcp://host:9100")
    .option('--spool <dir>', 'a folder on the server to write each label into instead')
    .option('--backups', 'print a label for backups that end ok too')
    .option('--no-backups', 'print labels for deploys only')
    .option('--json', 'print JSON')
    .action(async (options: { template?: string; printer?: string; spool?: string; backups?: boolean; json?: boolean }) => {
      if (options.printer && options.spool) throw new CliError('give --printer or --spool, not both', EXIT.usage);
      const body = { enabled: true, template: options.template === undefined ? undefined : readTemplate(options.template), output: options.printer ?? options.spool, backups: options.backups };
      const settings = await context.api(options).post<LabelSettingsView>('/api/labels', body);
      if (options.json) return printJson(settings);
      say(`Labels are on; they go to ${settings.output}.`);
    });

  context
    .command(labels, 'off', 'stop printing labels (the settings are kept)')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const settings = await context.api(options).post<LabelSettingsView>('/api/labels', { enabled: false });
      if (options.json) return printJson(settings);
      console.log('Labels are off.');
    });

  context
    .command(labels, 'reprint', "print a finished job's label again")
    .argument('<job>', 'job id (see: cm4prov jobs)', numericId('job'))
    .option('--json', 'print JSON')
    .action(async (job: number, options: { json?: boolean }) => {
      const delivery = await context.api(options).post<DeliveryView>(`/api/jobs/${job}/label`);
      if (options.json) return printJson(delivery);
      say(`Label of job ${job} queued for ${delivery.target} (delivery ${delivery.id}).`);
    });
}

function readTemplate(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read the template ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, EXIT.usage);
  }
}
