import type { Command } from 'commander';
import type { DeviceView } from '../devices/service.js';
import type { Lease } from '../netboot/leases.js';
import type { NetbootStatus } from '../netboot/service.js';
import type { CommandContext } from './context.js';
import { macArgument } from './mac-argument.js';
import { printJson, printTable, say, when } from './output.js';

/** `cm4prov netboot …`: DHCP/TFTP status, leases, boot stages and each device's boot policy. */
export function registerNetbootCommands(program: Command, context: CommandContext): Command {
  const netboot = program.command('netboot').description('network boot: status, leases, boot stages, boot policy, boot files');

  context
    .command(netboot, 'status', "show the provisioning LAN's DHCP/TFTP set-up and dnsmasq's state")
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const status = await context.api(options).get<NetbootStatus>('/api/netboot');
      if (options.json) return printJson(status);
      if (!status.enabled) {
        console.log('Netboot is off: start the server with --netboot-interface IF --netboot-address ADDR/PREFIX --dhcp-range FIRST,LAST.');
        return;
      }
      const dnsmasq = status.dnsmasq;
      const lines: Array<[string, string | null | undefined]> = [
        ['interface', `${status.interface} (${status.address}, subnet ${status.subnet})`],
        ['DHCP', status.proxy ? 'proxy (another server hands out addresses)' : `hands out ${status.range}`],
        ['other hosts', status.non_pi_clients === 'ignore' ? 'ignored' : 'plain DHCP'],
        ['TFTP root', status.tftp_root],
        ['dnsmasq config', status.config_file],
        ['dnsmasq', dnsmasq ? `${dnsmasq.state}${dnsmasq.pid ? ` (pid ${dnsmasq.pid})` : ''} since ${when(dnsmasq.since)}, ${dnsmasq.restarts} restarts${dnsmasq.last_exit ? `, last exit: ${dnsmasq.last_exit}` : ''}` : `external (mode ${status.mode}): run by the system`],
      ];
      for (const [label, value] of lines) say(`${label.padEnd(15)} ${value ?? '-'}`);
    });

  context
    .command(netboot, 'leases', 'list the DHCP leases dnsmasq handed out')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const { leases } = await context.api(options).get<{ leases: Lease[] }>('/api/netboot/leases');
      if (options.json) return printJson(leases);
      printTable(['MAC', 'IP', 'HOSTNAME', 'EXPIRES'], leases.map((l) => [l.mac, l.ip, l.hostname, when(l.expires_at)]), 'No DHCP leases.');
    });

  context
    .command(netboot, 'events', "show a device's boot stages: DHCP, each TFTP file, files not found")
    .argument('<mac>', 'the device', macArgument)
    .option('--limit <n>', 'at most this many, newest last', '50')
    .option('--json', 'print JSON')
    .action(async (mac: string, options: { limit: string; json?: boolean }) => {
      const { events } = await context.api(options).get<{ events: Array<{ at: string; text: string }> }>(
        `/api/devices/${encodeURIComponent(mac)}/boot-events?limit=${encodeURIComponent(options.limit)}`,
      );
      if (options.json) return printJson(events);
      printTable(['TIME', 'STAGE'], events.reverse().map((e) => [when(e.at), e.text]), 'No boot events for this device yet.');
    });

  for (const [name, enabled, description] of [
    ['enable', true, 'let a device netboot again (it gets the Raspberry Pi boot offer)'],
    ['disable', false, 'boot a device from its eMMC next: its MAC gets no PXE offer'],
  ] as const) {
    context
      .command(netboot, name, description)
      .argument('<mac>', 'the device', macArgument)
      .option('--json', 'print JSON')
      .action(async (mac: string, options: { json?: boolean }) => {
        const device = await context.api(options).post<DeviceView>(`/api/devices/${encodeURIComponent(mac)}/netboot`, { enabled });
        if (options.json) return printJson(device);
        console.log(
          device.netboot.enabled
            ? `${device.mac} netboots again at its next boot.`
            : `${device.mac} boots from its eMMC next: its MAC gets no Raspberry Pi boot offer.`,
        );
      });
  }
  return netboot;
}
