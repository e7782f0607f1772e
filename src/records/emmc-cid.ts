import { badRequest } from '../shared/errors.js';

/**
 * The eMMC's CID register decoded. Layout from JEDEC JESD84-B51 (eMMC 5.1) §7.2, "CID register"
 * (128 bits, most significant first):
 *   MID [127:120] manufacturer id · CBX [113:112] device type · OID [111:104] OEM/application id
 *   PNM [103:56] product name (6 ASCII) · PRV [55:48] revision (BCD n.m) · PSN [47:16] serial
 *   MDT [15:8] month [15:12], year [11:8] · CRC [7:1] CRC7 · bit 0 always 1.
 * Linux gives it as 32 hex digits in /sys/block/mmcblkN/device/cid.
 */
export interface EmmcIdentity {
  /** The 32 hex digits, lower case, as stored. */
  cid: string;
  manufacturer_id: string;
  /** The manufacturer's name for ids known here, else "unknown manufacturer 0xNN". */
  manufacturer: string;
  type: 'removable device' | 'BGA (discrete embedded)' | 'POP' | 'reserved';
  oem_id: string;
  name: string;
  revision: string;
  serial: string;
  manufactured: Manufactured;
  /** 'absent': the host controller strips the CRC and Linux reports zeros there (sdhci does). */
  crc: 'valid' | 'invalid' | 'absent';
}

/**
 * MDT's 4-bit year counts from 1997, or from 2013 when EXT_CSD_REV > 4 (eMMC v4.41 and later).
 * The CID alone does not say which applies: both readings are given, the later one first.
 */
export interface Manufactured {
  month: number | null;
  year: number;
  year_if_before_v4_41: number;
  text: string;
}

/** Manufacturer ids of eMMC makers (as Linux drivers/mmc/core/card.h and mmc-utils name them). */
const MANUFACTURERS: Record<number, string> = {
  0x11: 'Toshiba (Kioxia)',
  0x13: 'Micron',
  0x15: 'Samsung',
  0x45: 'SanDisk',
  0x70: 'Kingston',
  0x88: 'Longsys (Foresee)',
  0x90: 'SK Hynix',
  0xfe: 'Micron (Numonyx)',
};

const TYPES: EmmcIdentity['type'][] = ['removable device', 'BGA (discrete embedded)', 'POP', 'reserved'];
const hex = (value: number, digits: number) => `0x${value.toString(16).padStart(digits, '0')}`;
const printable = (byte: number) => (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`);

/** The CRC7 of the CID's first 15 bytes (polynomial x^7 + x^3 + 1, as for every MMC command and register). */
export function crc7(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const feedback = ((crc >> 6) & 1) ^ ((byte >> bit) & 1);
      crc = (crc << 1) & 0x7f;
      if (feedback) crc ^= 0x09;
    }
  }
  return crc;
}

/** The stored form of a CID from a registration, or a 400 with a sentence; empty means not given. */
export function normalizeEmmcCid(text: string | undefined): string | null {
  const cid = text?.trim().toLowerCase() ?? '';
  if (cid === '') return null;
  if (!/^[0-9a-f]{32}$/.test(cid)) {
    throw badRequest(`invalid emmc_cid '${cid.slice(0, 40)}': expected the eMMC's CID register as 32 hex digits, as in /sys/block/mmcblk0/device/cid`);
  }
  return cid;
}

export function decodeEmmcCid(cid: string): EmmcIdentity {
  const bytes = Uint8Array.from(cid.match(/../g)!.map((pair) => parseInt(pair, 16)));
  const mid = bytes[0]!;
  const prv = bytes[9]!;
  const psn = ((bytes[10]! << 24) >>> 0) + (bytes[11]! << 16) + (bytes[12]! << 8) + bytes[13]!;
  const last = bytes[15]!;
  return {
    cid,
    manufacturer_id: hex(mid, 2),
    manufacturer: MANUFACTURERS[mid] ?? `unknown manufacturer ${hex(mid, 2)}`,
    type: TYPES[bytes[1]! & 0x03]!,
    oem_id: hex(bytes[2]!, 2),
    name: Array.from(bytes.subarray(3, 9), printable).join('').trimEnd(),
    revision: `${prv >> 4}.${prv & 0x0f}`,
    serial: hex(psn, 8),
    manufactured: manufactured(bytes[14]!),
    crc: last === 0 ? 'absent' : last === ((crc7(bytes.subarray(0, 15)) << 1) | 1) ? 'valid' : 'invalid',
  };
}

function manufactured(mdt: number): Manufactured {
  const month = mdt >> 4 >= 1 && mdt >> 4 <= 12 ? mdt >> 4 : null;
  const year = 2013 + (mdt & 0x0f);
  const older = 1997 + (mdt & 0x0f);
  const at = (y: number) => (month === null ? `${y} (month code ${mdt >> 4} is not a month)` : `${y}-${String(month).padStart(2, '0')}`);
  return { month, year, year_if_before_v4_41: older, text: `${at(year)} (${at(older)} if the eMMC predates v4.41)` };
}
