import { readFileSync } from 'node:fs';

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
