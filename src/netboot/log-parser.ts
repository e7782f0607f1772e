/**
 * dnsmasq's log (with log-dhcp, on stderr) tells each device's boot stage before its
 * provisioning client ever runs. Lines look like:
 *   Nov 25 20:29:39 dnsmasq-dhcp[7753]: 2019883336 DHCPDISCOVER(br0) dc:a6:32:01:02:03
 *   Nov 25 20:29:39 dnsmasq-dhcp[7753]: 2019883336 tags: rpi, br0
 *   Nov 25 20:29:39 dnsmasq-dhcp[7753]: 2019883336 DHCPACK(br0) 10.20.50.126 dc:a6:32:01:02:03
 *   Nov 25 20:29:36 dnsmasq-tftp[7753]: sent /srv/tftp/1234abcd/start4.elf to 10.20.50.126
 *   Nov 25 20:29:36 dnsmasq-tftp[7753]: file /srv/tftp/pieeprom.sig not found for 10.20.50.126
 * TFTP lines name the IP, not the MAC: the parser maps it back through the DHCP it saw.
 */
export type BootEventKind = 'dhcp-discover' | 'dhcp-offer' | 'dhcp-request' | 'dhcp-ack' | 'tftp-sent' | 'tftp-not-found' | 'tftp-failed';

export interface BootEvent {
  kind: BootEventKind;
  mac: string;
  ip: string | null;
  /** For TFTP events: the file, relative to the TFTP root. */
  file: string | null;
  /** dnsmasq put the rpi tag on this DHCP exchange (option 97 "RPi4"). */
  raspberryPi: boolean;
}

const DHCP = /dnsmasq-dhcp\[\d+\]: (\d+) DHCP(DISCOVER|OFFER|REQUEST|ACK)\(([^)]+)\) (?:(\d+\.\d+\.\d+\.\d+) )?([0-9a-f]{2}(?::[0-9a-f]{2}){5})/i;
const TAGS = /dnsmasq-dhcp\[\d+\]: (\d+) tags: (.*)$/;
const TFTP_SENT = /dnsmasq-tftp\[\d+\]: sent (\S+) to (\d+\.\d+\.\d+\.\d+)/;
const TFTP_MISSING = /dnsmasq-tftp\[\d+\]: file (\S+) not found for (\d+\.\d+\.\d+\.\d+)/;
const TFTP_FAILED = /dnsmasq-tftp\[\d+\]: failed sending (\S+) to (\d+\.\d+\.\d+\.\d+)/;

/**
 * Raspberry Pi Ltd's IEEE OUIs. A DHCP request from the netboot initramfs carries no option 97,
 * so its Pi-ness comes from the MAC (or from the same MAC's bootloader exchange, when seen).
 */
const RASPBERRY_PI_OUIS = ['b8:27:eb', 'dc:a6:32', 'e4:5f:01', '28:cd:c1', 'd8:3a:dd', '2c:cf:67', '88:a2:9e'];
export const hasRaspberryPiOui = (mac: string) => RASPBERRY_PI_OUIS.includes(mac.slice(0, 8).toLowerCase());

const KINDS: Record<string, BootEventKind> = { DISCOVER: 'dhcp-discover', OFFER: 'dhcp-offer', REQUEST: 'dhcp-request', ACK: 'dhcp-ack' };

export function createLogParser(tftpRoot: string) {
  const root = tftpRoot.replace(/\/+$/, '');
  const tagsByTransaction = new Map<string, boolean>();
  const macByTransaction = new Map<string, string>();
  /** MACs any exchange of which carried the rpi tag: a Pi stays a Pi across transactions. */
  const raspberryPis = new Set<string>();
  const macByIp = new Map<string, string>();
  const remember = <K, V>(map: Map<K, V>, key: K, value: V) => {
    map.set(key, value);
    if (map.size > 1000) map.delete(map.keys().next().value!);
  };
  const relative = (path: string) => (path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path);

  return {
    /** Teaches the parser an address it did not see acked (e.g. from the lease file after a restart). */
    learn(ip: string, mac: string, raspberryPi = false) {
      macByIp.set(ip, mac.toLowerCase());
      if (raspberryPi) raspberryPis.add(mac.toLowerCase());
    },

    parse(line: string): BootEvent | undefined {
      const tags = TAGS.exec(line);
      if (tags) {
        const isPi = tags[2]!.split(',').map((tag) => tag.trim()).includes('rpi');
        remember(tagsByTransaction, tags[1]!, isPi);
        const mac = macByTransaction.get(tags[1]!);
        if (isPi && mac) raspberryPis.add(mac);
        return undefined;
      }
      const dhcp = DHCP.exec(line);
      if (dhcp) {
        const [, xid, kind, , ip, macText] = dhcp;
        const mac = macText!.toLowerCase();
        remember(macByTransaction, xid!, mac);
        if (tagsByTransaction.get(xid!) || hasRaspberryPiOui(mac)) raspberryPis.add(mac);
        if (kind!.toUpperCase() === 'ACK' && ip) macByIp.set(ip, mac);
        return { kind: KINDS[kind!.toUpperCase()]!, mac, ip: ip ?? null, file: null, raspberryPi: raspberryPis.has(mac) };
      }
      for (const [pattern, kind] of [[TFTP_SENT, 'tftp-sent'], [TFTP_MISSING, 'tftp-not-found'], [TFTP_FAILED, 'tftp-failed']] as const) {
        const match = pattern.exec(line);
        if (!match) continue;
        const mac = macByIp.get(match[2]!);
        if (!mac) return undefined; // an address we never gave out: not a device we track
        return { kind, mac, ip: match[2]!, file: relative(match[1]!), raspberryPi: raspberryPis.has(mac) };
      }
      return undefined;
    },
  };
}

export type LogParser = ReturnType<typeof createLogParser>;

/** A boot event in words, as the dashboard and `cm4prov devices` show the last stage. */
export function describeBootEvent(event: Pick<BootEvent, 'kind' | 'ip' | 'file'>): string {
  switch (event.kind) {
    case 'dhcp-discover':
      return 'asked for an address (DHCP discover)';
    case 'dhcp-offer':
      return `offered ${event.ip}`;
    case 'dhcp-request':
      return `requested ${event.ip}`;
    case 'dhcp-ack':
      return `got ${event.ip} (DHCP ack)`;
    case 'tftp-sent':
      return `loaded ${event.file}`;
    case 'tftp-not-found':
      return `asked for ${event.file}: not found`;
    case 'tftp-failed':
      return `sending ${event.file} failed`;
  }
}
