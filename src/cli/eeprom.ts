import type { Command } from 'commander';
import { BootOrderError, describeBootOrder, parseBootOrder } from '../eeprom/boot-order.js';
import { renderCloudInit } from '../eeprom/cloud-init.js';
import { CliError, EXIT } from './errors.js';

export function registerEepromCommands(program: Command) {
  const eeprom = program.command('eeprom').description("the CM4 bootloader EEPROM (BOOT_ORDER is read right to left)");

  eeprom
    .command('cloud-init')
    .description('print cloud-init user-data that sets BOOT_ORDER on an already-flashed CM4 at first boot')
    .option('--boot-order <hex>', '0xf12 = network first (default); 0x21 = eMMC first, then network', '0xf12')
    .option('--no-reboot', 'do not reboot after staging the change (it applies at the next reboot)')
    .action((options: { bootOrder: string; reboot: boolean }) => {
      let bootOrder: string;
      try {
        bootOrder = parseBootOrder(options.bootOrder);
      } catch (error) {
        if (error instanceof BootOrderError) throw new CliError(error.message, EXIT.usage);
        throw error;
      }
      process.stderr.write(`BOOT_ORDER=${bootOrder}: ${describeBootOrder(bootOrder)}.\n`);
      process.stdout.write(renderCloudInit({ bootOrder, reboot: options.reboot }));
    });
}
