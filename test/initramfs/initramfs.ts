import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { tempDir } from '../helpers/server.js';

export const INITRAMFS_DIR = resolve(import.meta.dirname, '../../network-boot-initramfs');
export const BUILD_SCRIPT = join(INITRAMFS_DIR, 'build.sh');

export interface Build {
  out: string;
  initrd: string;
  kernel: string;
  /** What build.sh printed (it reports on stderr). */
  log: string;
  seconds: number;
}

/**
 * Runs build.sh into a fresh temp out dir. The cache is build.sh's default, shared by every test
 * and run, so only the first build on a machine downloads the packages.
 */
export async function buildInitramfs(t: TestContext, args: string[] = [], env: Record<string, string> = {}): Promise<Build> {
  const out = join(tempDir(t, 'cm4prov-initramfs-'), 'out');
  const started = Date.now();
  const { stderr } = await promisify(execFile)(BUILD_SCRIPT, ['--out', out, ...args], {
    env: { ...process.env, ...env },
    timeout: 15 * 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return { out, initrd: join(out, 'initrd.img'), kernel: join(out, 'kernel8.img'), log: stderr, seconds: (Date.now() - started) / 1000 };
}

export interface CpioEntry {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  data: Buffer;
}

export const isSymlink = (entry: CpioEntry) => (entry.mode & 0o170000) === 0o120000;
export const isFile = (entry: CpioEntry) => (entry.mode & 0o170000) === 0o100000;

/** Reads a gzip-compressed newc ("070701") cpio archive, as the kernel's initramfs unpacker does. */
export function readInitrd(path: string): Map<string, CpioEntry> {
  const archive = gunzipSync(readFileSync(path));
  const entries = new Map<string, CpioEntry>();
  const align4 = (n: number) => (n + 3) & ~3;
  let offset = 0;
  for (;;) {
    const magic = archive.toString('latin1', offset, offset + 6);
    if (magic !== '070701') throw new Error(`not a newc cpio entry at byte ${offset}: ${JSON.stringify(magic)}`);
    const field = (index: number) => parseInt(archive.toString('latin1', offset + 6 + index * 8, offset + 14 + index * 8), 16);
    const [mode, uid, gid, mtime, fileSize, nameSize] = [field(1), field(2), field(3), field(5), field(6), field(11)];
    const name = archive.toString('utf8', offset + 110, offset + 110 + nameSize - 1);
    const dataStart = align4(offset + 110 + nameSize);
    if (name === 'TRAILER!!!') return entries;
    entries.set(name, { name, mode, uid, gid, mtime, data: archive.subarray(dataStart, dataStart + fileSize) });
    offset = align4(dataStart + fileSize);
  }
}
