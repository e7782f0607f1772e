import { join } from 'node:path';
import type { NetbootSettings } from './settings.js';

/** Tags the boot-policy files put on a device: boot from its eMMC next, or netboot. */
export const NO_NETBOOT_TAG = 'cm4prov-emmc-next';
export const NETBOOT_TAG = 'cm4prov-netboot';

export const dnsmasqPaths = (settings: Pick<NetbootSettings, 'stateDir'>) => ({
  config: join(settings.stateDir, 'dnsmasq.conf'),
  leases: join(settings.stateDir, 'dnsmasq.leases'),
  hostsDir: join(settings.stateDir, 'hosts'),
  /** Where a system dnsmasq logs (external mode), so the server can still follow boot stages. */
  log: join(settings.stateDir, 'dnsmasq.log'),
});

/**
 * The dnsmasq configuration for the provisioning LAN. DNS is off (port=0); DHCP answers on the
 * one interface; the Raspberry Pi 4/CM4 bootloader is recognised by option 97 and given the PXE
 * offer it insists on (option 43 "Raspberry Pi Boot", built by pxe-service), unless its MAC is
 * tagged to boot from eMMC next. See ../shared/NOTES.md and
 * https://www.raspberrypi.com/documentation/computers/raspberry-pi.html#network-booting
 */
export function renderDnsmasqConfig(settings: NetbootSettings): string {
  const paths = dnsmasqPaths(settings);
  const lines = [
    '# Written by cm4-provisioning at every start: edits here are overwritten.',
    '# DNS off: only DHCP and TFTP.',
    'port=0',
    `interface=${settings.interface}`,
    'bind-interfaces',
    settings.proxy
      ? `dhcp-range=${settings.network},proxy,${settings.netmask}`
      : `dhcp-range=${settings.range!.first},${settings.range!.last},${settings.netmask},1h`,
    `dhcp-leasefile=${paths.leases}`,
    '# One file per MAC: a device whose work is done gets the no-netboot tag, so its bootloader',
    '# ignores the offer and falls through to eMMC (read via inotify: no restart or SIGHUP).',
    `dhcp-hostsdir=${paths.hostsDir}`,
    '# Without no-ping dnsmasq probes each new address for ~3 s before offering it.',
    'no-ping',
    'log-dhcp',
    // Managed: dnsmasq logs to stderr, which the server reads; external: to a file it follows.
    settings.mode === 'managed' ? 'log-facility=-' : `log-facility=${paths.log}`,
    'enable-tftp',
    `tftp-root=${settings.tftpRoot}`,
    '# The Pi 4/CM4 bootloader sends option 97 starting 0 + "RPi4"; newer firmware reverses the four bytes.',
    'dhcp-match=set:rpi,97,0:52:50:69:34',
    'dhcp-match=set:rpi,97,0:34:69:50:52',
    '# Option 43 with PXE sub-options; dnsmasq builds it from this, and only for clients that sent option 93.',
    `pxe-service=tag:rpi,tag:!${NO_NETBOOT_TAG},0,"Raspberry Pi Boot"`,
    '# Stay root instead of dropping to nobody: the TFTP root and the hosts dir live in the',
    "# server's private data folder (0750), which nobody cannot read.",
    'user=root',
  ];
  if (settings.nonPiClients === 'ignore') {
    lines.push('# Only Raspberry Pis are answered on this LAN.', 'dhcp-ignore=tag:!rpi');
  }
  // Settings are checked at start-up; this is the last line of defence: one setting, one line.
  const injected = lines.find((line) => /[\u0000-\u001f\u007f]/.test(line));
  if (injected !== undefined) throw new Error(`refusing to write a dnsmasq setting with a control character: ${JSON.stringify(injected)}`);
  return `${lines.join('\n')}\n`;
}
