import { badRequest } from './errors.js';

const SEPARATED = /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/;
const CISCO_DOTTED = /^([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})$/;
const BARE = /^[0-9a-f]{12}$/;

/**
 * Normalises a MAC address to lower-case colon form (`dc:a6:32:01:02:03`).
 * Accepts colons, dashes, Cisco dots or bare hex; rejects anything that cannot be a
 * device's own (unicast, non-zero) address.
 */
export function normalizeMac(input: unknown): string {
  if (typeof input !== 'string' || input.trim() === '') {
    throw badRequest('a MAC address is required (like dc:a6:32:01:02:03)');
  }
  const raw = input.trim().toLowerCase();
  let hex: string | undefined;
  const separated = SEPARATED.exec(raw);
  if (separated) hex = separated.slice(1).join('');
  else if (CISCO_DOTTED.test(raw)) hex = raw.replaceAll('.', '');
  else if (BARE.test(raw)) hex = raw;
  if (!hex) {
    throw badRequest(`invalid MAC address '${printable(input)}': expected six hex byte pairs like dc:a6:32:01:02:03`);
  }
  const mac = hex.match(/../g)!.join(':');
  if (/^0+$/.test(hex)) throw badRequest(`invalid MAC address '${mac}': all zeros is not a device address`);
  // The least significant bit of the first octet marks group (multicast/broadcast) addresses.
  if (parseInt(hex.slice(0, 2), 16) & 1) {
    throw badRequest(`invalid MAC address '${mac}': it is a multicast/broadcast address, not a device's`);
  }
  return mac;
}

export function isValidMac(input: unknown): boolean {
  try {
    normalizeMac(input);
    return true;
  } catch {
    return false;
  }
}

function printable(value: string): string {
  const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
  return shown.replace(/[^\x20-\x7e]/g, '?');
}
