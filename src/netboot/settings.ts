import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type Config } from '../config.js';

export interface NetbootSettings {
  /** managed: the server runs dnsmasq; external: it only writes the config for a system dnsmasq. */
  mode: 'managed' | 'external';
  interface: string;
  /** This server on the LAN: next-server (TFTP) for the Pis. */
  address: string;
  prefix: number;
  network: string;
  netmask: string;
  /** Addresses handed out; absent in proxy mode, where another DHCP server owns them. */
  range?: { first: string; last: string };
  proxy: boolean;
  tftpRoot: string;
  /** dnsmasq.conf, leases, and the hosts dir with one boot-policy file per MAC. */
  stateDir: string;
  dnsmasqPath: string;
  nonPiClients: 'dhcp' | 'ignore';
}

const toInt = (ip: string) => ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
const toIp = (n: number) => [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');

/** Whether an IPv4 address lies inside the provisioning subnet (either form: `::ffff:10.20.50.7` too). */
export function inSubnet(settings: Pick<NetbootSettings, 'network' | 'prefix'>): (ip: string) => boolean {
  const size = 2 ** (32 - settings.prefix);
  const network = toInt(settings.network);
  return (ip) => {
    const plain = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(plain)) return false;
    return Math.floor(toInt(plain) / size) * size === network;
  };
}

export interface InterfaceProbe {
  exists(name: string): boolean;
  names(): string[];
}

/** Interfaces as the kernel lists them in /sys/class/net (present even without an address). */
export const sysfsInterfaces: InterfaceProbe = {
  exists: (name) => existsSync(join('/sys/class/net', name)),
  names: () => readdirSync('/sys/class/net').sort(),
};

/**
 * The netboot part of the configuration, checked as a whole: the address inside its subnet,
 * the range inside it too and not holding the server's own address, the interface present.
 * Undefined when netboot is off (no --netboot-interface). Throws ConfigError sentences.
 */
export function resolveNetbootSettings(config: Config, interfaces: InterfaceProbe = sysfsInterfaces): NetbootSettings | undefined {
  const { netbootInterface, netbootAddress, dhcpRange, dhcpProxy } = config;
  if (!netbootInterface) {
    const stray = netbootAddress ? '--netboot-address' : dhcpRange ? '--dhcp-range' : dhcpProxy ? '--dhcp-proxy' : undefined;
    if (stray) throw new ConfigError(`${stray} needs --netboot-interface (the provisioning LAN interface, e.g. eth1).`);
    return undefined;
  }
  if (!interfaces.exists(netbootInterface)) {
    throw new ConfigError(`There is no network interface '${netbootInterface}' here (have: ${interfaces.names().join(', ')}).`);
  }
  if (!netbootAddress) {
    throw new ConfigError(`--netboot-interface needs --netboot-address: this server's address on ${netbootInterface}, e.g. 10.20.50.1/24.`);
  }
  const [address = '', prefixText = ''] = netbootAddress.split('/');
  const prefix = Number(prefixText);
  if (prefix < 8 || prefix > 30) throw new ConfigError(`--netboot-address ${netbootAddress}: the prefix must be between /8 and /30.`);
  const size = 2 ** (32 - prefix);
  const networkInt = Math.floor(toInt(address) / size) * size;
  const broadcastInt = networkInt + size - 1;
  const inside = (ip: string) => toInt(ip) > networkInt && toInt(ip) < broadcastInt;
  if (!inside(address)) {
    throw new ConfigError(`--netboot-address ${netbootAddress} is the network or broadcast address of its subnet; use a host address like ${toIp(networkInt + 1)}/${prefix}.`);
  }
  const subnet = `${toIp(networkInt)}/${prefix}`;

  let range: NetbootSettings['range'];
  if (dhcpProxy && dhcpRange) throw new ConfigError('Use --dhcp-range or --dhcp-proxy, not both: in proxy mode another DHCP server hands out the addresses.');
  if (!dhcpProxy) {
    if (!dhcpRange) {
      throw new ConfigError(`Netboot needs --dhcp-range FIRST,LAST inside ${subnet} (or --dhcp-proxy when the LAN already has a DHCP server).`);
    }
    const [first = '', last = ''] = dhcpRange.split(',');
    if (!inside(first) || !inside(last)) throw new ConfigError(`--dhcp-range ${dhcpRange} is not inside ${subnet}.`);
    if (toInt(first) > toInt(last)) throw new ConfigError(`--dhcp-range ${dhcpRange} starts after it ends.`);
    if (toInt(address) >= toInt(first) && toInt(address) <= toInt(last)) {
      throw new ConfigError(`--dhcp-range ${dhcpRange} holds this server's own address ${address}; keep it out of the range.`);
    }
    range = { first, last };
  }

  const stateDir = join(config.dataDir, 'netboot');
  return {
    mode: config.dnsmasq,
    interface: netbootInterface,
    address,
    prefix,
    network: toIp(networkInt),
    netmask: toIp(2 ** 32 - size),
    range,
    proxy: dhcpProxy,
    tftpRoot: config.tftpRoot ?? join(config.dataDir, 'tftp'),
    stateDir,
    dnsmasqPath: config.dnsmasqPath,
    nonPiClients: config.nonPiClients,
  };
}
