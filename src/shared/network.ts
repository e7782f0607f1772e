import { BlockList, isIP } from 'node:net';

export interface AddressAllowList {
  readonly cidrs: readonly string[];
  allows(address: string): boolean;
}

/** Strips the IPv4-mapped IPv6 prefix a dual-stack socket reports (`::ffff:10.20.50.7`). */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * Parses one CIDR (`10.20.50.0/24`, `fd00::/64`, or a bare address). Returns an error sentence
 * instead of throwing, so config loading can name the option it came from.
 */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | string {
  const [address = '', prefixText, extra] = text.trim().split('/');
  const version = isIP(address);
  if (version === 0 || extra !== undefined) return `'${text}' is not an address or CIDR like 10.20.50.0/24`;
  const family = version === 4 ? 'ipv4' : 'ipv6';
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || prefixText === '') {
    return `'${text}' has a bad prefix length (0 to ${max})`;
  }
  return { address, prefix, family };
}

export function createAllowList(cidrs: readonly string[]): AddressAllowList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const parsed = parseCidr(cidr);
    if (typeof parsed === 'string') throw new Error(parsed);
    list.addSubnet(parsed.address, parsed.prefix, parsed.family);
  }
  return {
    cidrs,
    allows(address: string): boolean {
      const plain = plainAddress(address);
      const version = isIP(plain);
      if (version === 0) return false;
      return list.check(plain, version === 4 ? 'ipv4' : 'ipv6');
    },
  };
}
