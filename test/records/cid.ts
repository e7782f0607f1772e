import { crc7 } from '../../src/records/emmc-cid.js';

export interface CidFields {
  mid: number;
  cbx: number;
  oid: number;
  pnm: string;
  prv: number;
  psn: number;
  month: number;
  yearCode: number;
  /** Leave the CRC byte 00, as Linux's sdhci hosts report it. */
  noCrc?: boolean;
}

/** A CID built field by field at the bit positions of JESD84 (eMMC CID register, 128 bits). */
export function buildCid(f: CidFields): string {
  let cid = 0n;
  const put = (value: number | bigint, high: number, width: number) => {
    cid |= (BigInt(value) & ((1n << BigInt(width)) - 1n)) << BigInt(high - width + 1);
  };
  put(f.mid, 127, 8);
  put(f.cbx, 113, 2);
  put(f.oid, 111, 8);
  put(BigInt(`0x${Buffer.from(f.pnm.padEnd(6, ' '), 'ascii').toString('hex')}`), 103, 48);
  put(f.prv, 55, 8);
  put(f.psn, 47, 32);
  put((f.month << 4) | f.yearCode, 15, 8);
  const hex = cid.toString(16).padStart(32, '0');
  if (f.noCrc) return hex;
  const crc = crc7(Buffer.from(hex.slice(0, 30), 'hex'));
  return hex.slice(0, 30) + ((crc << 1) | 1).toString(16).padStart(2, '0');
}

/** The CM4's kind of eMMC: Samsung BJTD4R, made March 2021. */
export const CM4_CID: CidFields = { mid: 0x15, cbx: 1, oid: 0x01, pnm: 'BJTD4R', prv: 0x12, psn: 0xa1b2c3d4, month: 3, yearCode: 8 };
