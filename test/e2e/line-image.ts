import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { EXT4_SECTORS, EXT4_START, makePartitionedImage } from '../device-files/helpers.js';

/** Partition 3: random bytes after the ext4 root, which per-device files never touch. */
const DATA_START = EXT4_START + EXT4_SECTORS;
const DATA_SECTORS = 4 * 2048;
/** Bytes after the last partition, so that the image is not a whole number of sectors. */
const STRAY_BYTES = 321;

export interface LineImage {
  path: string;
  bytes: number;
  sha256: string;
  /** Where the image's bytes that no per-device file can change begin again (partition 3). */
  untouchedFrom: number;
}

/**
 * An image as a line deploys it: the MBR, FAT32 boot partition and ext4 root of
 * makePartitionedImage (made by mkfs.fat and mke2fs), then a partition 3 of random bytes
 * (incompressible, so no layer can cheat) and a few stray bytes.
 */
export function makeLineImage(dir: string): LineImage {
  const path = makePartitionedImage(dir);
  appendFileSync(path, randomBytes(DATA_SECTORS * 512 + STRAY_BYTES));
  // DOS partition entry 3 (byte 446 + 2 × 16): type 0xda ("non-FS data"), first sector, length.
  const entry = Buffer.alloc(16);
  entry[4] = 0xda;
  entry.writeUInt32LE(DATA_START, 8);
  entry.writeUInt32LE(DATA_SECTORS, 12);
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, entry, 0, 16, 446 + 2 * 16);
  } finally {
    closeSync(fd);
  }
  const data = readFileSync(path);
  return { path, bytes: data.length, sha256: createHash('sha256').update(data).digest('hex'), untouchedFrom: DATA_START * 512 };
}
