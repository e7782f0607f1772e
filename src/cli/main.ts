import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { PACKAGED_CONFIG_FILE } from '../config.js';
import { registerAdminCommands } from './admin.js';
import { registerDbCommands } from './db.js';
import { registerBackupCommands } from './backups.js';
import { createCommandContext } from './context.js';
import { registerDeviceCommands } from './devices.js';
import { registerEepromCommands } from './eeprom.js';
import { CliError, EXIT } from './errors.js';
import { printable } from './output.js';
import { registerImageCommands } from './images.js';
import { registerJobCommands } from './jobs.js';
import { registerLabelCommands } from './labels.js';
import { registerWebhookCommands } from './webhooks.js';
import { registerNetbootCommands } from './netboot.js';
import { registerRuleCommands } from './rules.js';
import { registerRecordCommands } from './records.js';
import { registerDeviceFileCommands } from './device-files.js';
import { registerBootFileCommands } from './netboot-files.js';
import { registerServeCommand } from './serve.js';
import { registerStationCommands } from './stations.js';
import type { CliSurroundings } from './server-location.js';

/** The whole CLI. `cli.defaultConfigFile` is the settings file read when nothing names one. */
export function buildProgram(cli: CliSurroundings): Command {
  const program = new Command('cm4prov')
    .description('Provision Raspberry Pi CM4 eMMCs over the network: deploy images, take backups.')
    .version(packageVersion())
    .showHelpAfterError('(run with --help for usage)')
    // With `backup`'s own: options after a subcommand (`backup rm 7 --json`) belong to the subcommand.
    .enablePositionalOptions()
    .exitOverride();
  const context = createCommandContext(cli);
  registerServeCommand(program, cli);
  registerDeviceCommands(program, context);
  registerBackupCommands(program, context);
  registerJobCommands(program, context);
  registerWebhookCommands(program, context);
  registerLabelCommands(program, context);
  registerRecordCommands(program, context);
  registerImageCommands(program, context);
  registerStationCommands(program, context);
  registerRuleCommands(program, context);
  registerDeviceFileCommands(program, context);
  registerBootFileCommands(registerNetbootCommands(program, context), cli.env, cli.defaultConfigFile);
  registerAdminCommands(program, cli);
  registerDbCommands(program, cli);
  registerEepromCommands(program);
  return program;
}

function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

async function main() {
  const program = buildProgram({ env: process.env, defaultConfigFile: PACKAGED_CONFIG_FILE });
  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exit(error.exitCode === 0 ? EXIT.ok : EXIT.usage);
    }
    if (error instanceof CliError) {
      process.stderr.write(`cm4prov: ${printable(error.message)}\n`);
      process.exit(error.exitCode);
    }
    process.stderr.write(`cm4prov: unexpected error: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(EXIT.failed);
  }
}

await main();
