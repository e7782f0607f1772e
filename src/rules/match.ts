import type { DeviceRow } from '../devices/store.js';
import { badRequest } from '../shared/errors.js';
import { formatBytes } from '../shared/format.js';
import type { RuleRow } from './store.js';

/** What the device's records say about the rule's image, for `match_holds_image`. */
export type HoldsImage = { holds: boolean; why: string };

/**
 * A MAC pattern in the stored form: lower-case, ':' between byte pairs. `DC-A6-32` and
 * `dc:a6:32:*` are the same pattern; without * or ? it is a prefix.
 */
export function normalizeMacPattern(input: string): string {
  const pattern = input.trim().toLowerCase().replaceAll('-', ':');
  if (!/^[0-9a-f:*?]{1,17}$/.test(pattern)) {
    throw badRequest(`invalid MAC pattern '${input.slice(0, 40)}': use hex digits, ':' or '-', and the wildcards * and ?`);
  }
  return pattern;
}

function globToRegExp(glob: string): RegExp {
  const body = [...glob].map((char) => (char === '*' ? '.*' : char === '?' ? '.' : char.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('');
  return new RegExp(`^${body}$`, 'i');
}

const isGlob = (pattern: string) => /[*?]/.test(pattern);

export function macMatches(pattern: string, mac: string): boolean {
  return isGlob(pattern) ? globToRegExp(pattern).test(mac) : mac.startsWith(pattern);
}

/** The serial patterns stored as JSON; empty when the rule does not look at serials. */
export function serialPatterns(rule: RuleRow): string[] {
  return rule.match_serial === null ? [] : (JSON.parse(rule.match_serial) as string[]);
}

/**
 * Why the device does not meet the rule's match fields, in one sentence; null when it does.
 * A field the device has not reported (no serial, no model, no eMMC size) does not match.
 * `holdsImage` (which reads the device's jobs) is asked last, only when the rule looks at it.
 */
export async function mismatch(rule: RuleRow, device: DeviceRow, holdsImage: () => Promise<HoldsImage>): Promise<string | null> {
  if (rule.match_mac !== null && !macMatches(rule.match_mac, device.mac)) {
    return `MAC ${device.mac} does not match '${rule.match_mac}'`;
  }
  const serials = serialPatterns(rule);
  if (serials.length > 0) {
    if (device.serial === null) return 'the device has not reported a serial';
    if (!serials.some((glob) => globToRegExp(glob).test(device.serial!))) {
      return `serial ${device.serial} matches none of ${serials.map((glob) => `'${glob}'`).join(', ')}`;
    }
  }
  if (rule.match_model !== null) {
    if (device.model === null) return 'the device has not reported a model';
    if (!device.model.toLowerCase().includes(rule.match_model.toLowerCase())) {
      return `model '${device.model}' does not contain '${rule.match_model}'`;
    }
  }
  if (rule.min_emmc_bytes !== null || rule.max_emmc_bytes !== null) {
    const size = device.storage_bytes;
    if (size === null) return 'the device has not reported its eMMC size';
    if (rule.min_emmc_bytes !== null && size < rule.min_emmc_bytes) {
      return `eMMC ${formatBytes(size)} is smaller than ${formatBytes(rule.min_emmc_bytes)}`;
    }
    if (rule.max_emmc_bytes !== null && size > rule.max_emmc_bytes) {
      return `eMMC ${formatBytes(size)} is larger than ${formatBytes(rule.max_emmc_bytes)}`;
    }
  }
  if (rule.match_holds_image !== null) {
    const { holds, why } = await holdsImage();
    if (holds !== (rule.match_holds_image === 1)) return why;
  }
  return null;
}
