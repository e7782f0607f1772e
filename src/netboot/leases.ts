import { readFileSync, statSync } from 'node:fs';

export interface Lease {
  mac: string;
  ip: string;
  hostname: string | null;
  /** When the lease runs out (dnsmasq writes the expiry, not the start). */
  expires_at: string | null;
}

/**
 * dnsmasq's lease file: one line per lease, `EXPIRY MAC IP HOSTNAME CLIENT-ID`, EXPIRY in epoch
 * seconds (0 for infinite), `*` for an unknown hostname.
 */
export function readLeases(path: string): Lease[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const leases: Lease[] = [];
  for (const line of text.split('\n')) {
    const [expiry, mac, ip, hostname] = line.trim().split(/\s+/);
    if (!expiry || !mac || !ip || !/^[0-9a-f:]{17}$/i.test(mac)) continue;
    leases.push({
      mac: mac.toLowerCase(),
      ip,
      hostname: hostname && hostname !== '*' ? hostname : null,
      expires_at: expiry === '0' ? null : new Date(Number(expiry) * 1000).toISOString(),
    });
  }
  return leases.sort((a, b) => a.ip.localeCompare(b.ip, 'en', { numeric: true }));
}

/** Who holds which address on the provisioning LAN, by the DHCP server's own leases. */
export interface LeaseBook {
  /** True for an address inside the subnet whose leases this server hands out. */
  manages(ip: string): boolean;
  ipOf(mac: string): string | undefined;
  macAt(ip: string): string | undefined;
}

/**
 * The lease file as a lookup, read again only when dnsmasq has rewritten it (size or mtime
 * changed): a thousand polling devices cost a stat each, not a parse.
 */
export function createLeaseBook(path: string, inSubnet: (ip: string) => boolean): LeaseBook {
  let seen = '';
  let byMac = new Map<string, string>();
  let byIp = new Map<string, string>();
  const current = () => {
    let stamp = 'absent';
    try {
      const stats = statSync(path);
      stamp = `${stats.size}:${stats.mtimeMs}`;
    } catch {
      // No lease file yet: nobody holds an address.
    }
    if (stamp !== seen) {
      seen = stamp;
      const leases = readLeases(path);
      byMac = new Map(leases.map((lease) => [lease.mac, lease.ip]));
      byIp = new Map(leases.map((lease) => [lease.ip, lease.mac]));
    }
  };
  return {
    manages: inSubnet,
    ipOf(mac) {
      current();
      return byMac.get(mac);
    },
    macAt(ip) {
      current();
      return byIp.get(ip);
    },
  };
}
