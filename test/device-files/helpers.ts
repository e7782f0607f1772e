import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tempDir, type TestServer } from '../helpers/server.js';

/** Partition 1: FAT32 from 1 MiB (36 MiB); partition 2: ext4 after it (8 MiB). */
export const FAT_START = 2048;
export const FAT_SECTORS = 36 * 2048;
export const EXT4_START = FAT_START + FAT_SECTORS;
export const EXT4_SECTORS = 8 * 2048;
export const FAT_OFFSET = FAT_START * 512;
export const EXT4_OFFSET = EXT4_START * 512;

/** A DOS partition table entry: type and first sector/length in 512-byte sectors (little-endian). */
function mbrEntry(mbr: Buffer, index: number, type: number, start: number, sectors: number) {
  const at = 446 + index * 16;
  mbr[at + 4] = type;
  mbr.writeUInt32LE(start, at + 8);
  mbr.writeUInt32LE(sectors, at + 12);
}

/**
 * An image like a Raspberry Pi OS one: an MBR, a FAT32 boot partition (made by mkfs.fat,
 * holding a cmdline.txt) and an ext4 root (mke2fs). Built with the real tools, not our code.
 */
export function makePartitionedImage(dir: string): string {
  const image = join(dir, 'os.img');
  const mbr = Buffer.alloc(512);
  mbrEntry(mbr, 0, 0x0c, FAT_START, FAT_SECTORS);
  mbrEntry(mbr, 1, 0x83, EXT4_START, EXT4_SECTORS);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  writeFileSync(image, Buffer.alloc((EXT4_START + EXT4_SECTORS) * 512));
  writeFileSync(image, mbr, { flag: 'r+' });
  execFileSync('mkfs.fat', ['-F', '32', '-s', '1', '-n', 'BOOTFS', '--offset', String(FAT_START), image, String(FAT_SECTORS / 2)], { stdio: 'ignore' });
  const cmdline = join(dir, 'cmdline.txt');
  writeFileSync(cmdline, 'console=serial0,115200 root=PARTUUID=01-02 rootwait\n');
  execFileSync('mcopy', ['-i', `${image}@@${FAT_OFFSET}`, cmdline, '::/cmdline.txt']);
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-E', `offset=${EXT4_OFFSET}`, image, `${EXT4_SECTORS / 2}k`], { stdio: 'ignore' });
  return image;
}

/** A file of `bytes` bytes with no partition table (no 0x55AA signature at byte 510). */
export function makeUnpartitionedImage(dir: string, bytes: number): string {
  const image = join(dir, 'raw.img');
  const data = Buffer.alloc(bytes, 0x5a);
  data[510] = 0;
  writeFileSync(image, data);
  return image;
}

/** Adds an image file through the admin API and waits until its map and cache are ready. */
export async function importImage(server: TestServer, file: string, name: string) {
  const response = await fetch(`${server.url}/api/images?name=${name}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}` },
    body: readFileSync(file),
  });
  assert.equal(response.status, 201, await response.clone().text());
  await server.server.services.caches.idle();
}

/** A file of the FAT partition as mtools on the host reads it from the target. */
export const fatFile = (target: string, path: string) => execFileSync('mtype', ['-i', `${target}@@${FAT_OFFSET}`, `::${path}`]).toString();

/** A file of the ext4 partition as debugfs on the host reads it from the target. */
export const ext4File = (target: string, path: string) =>
  execFileSync('debugfs', ['-R', `cat ${path}`, `${target}?offset=${EXT4_OFFSET}`], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();

export const scratch = (t: TestContext) => tempDir(t, 'cm4prov-device-files-');
