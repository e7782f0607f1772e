import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { AllTools } from './context.js';
import { sha256File, type BenchImage } from './image.js';
import { run } from './proc.js';

/** Where each partition lies in the disk image, and what was put into it. */
export interface PiOsPartition {
  offset: number;
  bytes: number;
  files: number;
  fileBytes: number;
}

export interface PiOsImage extends BenchImage {
  /** MBR disk identifier: root=PARTUUID=<this>-02 in cmdline.txt, as Raspberry Pi OS has it. */
  diskId: string;
  boot: PiOsPartition;
  /** `usedPercent`: blocks in use (files and ext4's own metadata) of all blocks, from dumpe2fs. */
  root: PiOsPartition & { usedPercent: number };
}

type ImageTools = Pick<AllTools, 'sfdisk' | 'mkfs.vfat' | 'mcopy' | 'mke2fs' | 'dumpe2fs' | 'bmaptool' | 'dd'>;

const MIB = 1024 * 1024;
const SECTOR = 512;
const BOOT_OFFSET = 4 * MIB;
const DISK_ID = 'b8e4f3a1';
/** Kernels, firmware and overlays on a Raspberry Pi OS bootfs: ~35 MB. */
const BOOT_FILE_BYTES = 34 * MIB;
/** Share of the root filesystem's blocks in use (files and ext4's own metadata). */
const ROOT_USED = 0.35;
const KERNEL_NAMES = ['kernel8.img', 'kernel_2712.img', 'kernel7l.img', 'kernel7.img', 'kernel.img'];
const BOOT_SOURCES = ['/boot', '/usr/lib'];
const ROOT_SOURCES = ['/usr/lib', '/usr/share'];

const CMDLINE = `console=serial0,115200 console=tty1 root=PARTUUID=${DISK_ID}-02 rootfstype=ext4 fsck.repair=yes rootwait\n`;
/** A few settings a CM4 image sets (our own stand-in, not Raspberry Pi OS's file). */
const CONFIG = 'arm_64bit=1\nenable_uart=1\ndtoverlay=dwc2,dr_mode=host\n\n[cm4]\notg_mode=1\n';

/**
 * A whole-disk image shaped like Raspberry Pi OS: an MBR with a FAT32 bootfs (type c, from
 * 4 MiB) holding cmdline.txt, config.txt and host binaries standing in for kernels and
 * overlays, and an ext4 rootfs (type 83) filling the rest, ~35 % used by files copied from the
 * host. Each filesystem is built as its own file and copied in at its offset (dd conv=sparse),
 * then the bmap is made (bmaptool create). Built once and cached, like benchImage.
 */
export async function piOsImage(cacheDir: string, tools: ImageTools, bytes: number, bootBytes: number, log: (line: string) => void): Promise<PiOsImage> {
  const name = `pios-${bytes / MIB}M-boot${bootBytes / MIB}M`;
  const path = join(cacheDir, `${name}.img`);
  const metaFile = join(cacheDir, `${name}.json`);
  if (existsSync(metaFile) && existsSync(path) && existsSync(`${path}.bmap`)) {
    return { ...(JSON.parse(readFileSync(metaFile, 'utf8')) as PiOsImage), path, bmap: `${path}.bmap` };
  }

  const began = Date.now();
  const rootOffset = BOOT_OFFSET + bootBytes;
  const rootBytes = bytes - rootOffset;
  log(`building the test image ${path} (${bytes / MIB} MiB disk: ${bootBytes / MIB} MiB FAT32 bootfs, ${rootBytes / MIB} MiB ext4 rootfs)`);
  const work = join(cacheDir, `${name}.build`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    rmSync(path, { force: true });
    sparseFile(path, bytes);
    await partition(tools, path, bootBytes);
    const boot = await bootFilesystem(tools, work, bootBytes);
    const root = await rootFilesystem(tools, work, rootBytes);
    await run(tools.dd, [`if=${boot.file}`, `of=${path}`, 'bs=1M', `seek=${BOOT_OFFSET / MIB}`, 'conv=notrunc,sparse', 'status=none'], { timeoutMs: 600_000 });
    await run(tools.dd, [`if=${root.file}`, `of=${path}`, 'bs=1M', `seek=${rootOffset / MIB}`, 'conv=notrunc,sparse', 'status=none'], { timeoutMs: 600_000 });
    await run(tools.bmaptool, ['create', '-o', `${path}.bmap`, path], { timeoutMs: 600_000 });

    const bmap = readFileSync(`${path}.bmap`, 'utf8');
    const field = (tag: string) => Number(new RegExp(`<${tag}>\\s*(\\d+)\\s*</${tag}>`).exec(bmap)?.[1]);
    const image: PiOsImage = {
      path,
      bmap: `${path}.bmap`,
      bytes,
      sha256: await sha256File(path),
      mappedBytes: field('MappedBlocksCount') * field('BlockSize'),
      files: boot.files + root.files,
      fileBytes: boot.fileBytes + root.fileBytes,
      seconds: 0,
      diskId: DISK_ID,
      boot: { offset: BOOT_OFFSET, bytes: bootBytes, files: boot.files, fileBytes: boot.fileBytes },
      root: { offset: rootOffset, bytes: rootBytes, files: root.files, fileBytes: root.fileBytes, usedPercent: root.usedPercent },
    };
    image.seconds = (Date.now() - began) / 1000;
    writeFileSync(metaFile, JSON.stringify(image, null, 2));
    return image;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function sparseFile(path: string, bytes: number) {
  writeFileSync(path, '');
  truncateSync(path, bytes);
}

/** The MBR: partition 1 FAT32 (LBA) from 4 MiB, partition 2 Linux to the end of the disk. */
async function partition(tools: ImageTools, path: string, bootBytes: number) {
  const script = join(dirname(path), `${basename(path)}.sfdisk`);
  const start = BOOT_OFFSET / SECTOR;
  writeFileSync(script, `label: dos\nlabel-id: 0x${DISK_ID}\nunit: sectors\n\nstart=${start}, size=${bootBytes / SECTOR}, type=c\nstart=${start + bootBytes / SECTOR}, type=83\n`);
  try {
    await run(tools.sfdisk, ['--quiet', '--no-reread', '--no-tell-kernel', path], { timeoutMs: 60_000, stdinFile: script });
  } finally {
    rmSync(script, { force: true });
  }
}

/** bootfs: `mkfs.vfat -F 32 -n bootfs`, filled with mcopy (no mount needed). */
async function bootFilesystem(tools: ImageTools, work: string, bootBytes: number) {
  const file = join(work, 'boot.vfat');
  const dir = join(work, 'boot');
  sparseFile(file, bootBytes);
  await run(tools['mkfs.vfat'], ['-F', '32', '-n', 'bootfs', '-i', '5a7c3e91', '-h', String(BOOT_OFFSET / SECTOR), file], { timeoutMs: 60_000 });
  mkdirSync(join(dir, 'overlays'), { recursive: true });
  writeFileSync(join(dir, 'cmdline.txt'), CMDLINE);
  writeFileSync(join(dir, 'config.txt'), CONFIG);
  const copied = copyBootFiles(dir);
  const entries = readdirSync(dir).sort().map((entry) => join(dir, entry));
  await run(tools.mcopy, ['-i', file, '-s', '-Q', '-m', ...entries, '::/'], { timeoutMs: 300_000, env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
  return { file, files: copied.files + 2, fileBytes: copied.bytes + CMDLINE.length + CONFIG.length };
}

/**
 * Host binaries under Raspberry Pi OS's names: the first 4–12 MiB files as kernels (up to ~3/4
 * of the budget), then 4–256 KiB files as overlays/*.dtbo up to BOOT_FILE_BYTES.
 */
function copyBootFiles(dir: string) {
  let bytes = 0;
  let files = 0;
  const kernels = [...KERNEL_NAMES];
  const taken = new Set<string>();
  for (const source of BOOT_SOURCES) {
    for (const file of hostFiles(source)) {
      if (bytes > BOOT_FILE_BYTES - 256 * 1024) return { bytes, files };
      let target: string | undefined;
      if (kernels.length && file.size >= 4 * MIB && file.size <= 12 * MIB && bytes + file.size <= 0.75 * BOOT_FILE_BYTES) {
        target = join(dir, kernels.shift()!);
      } else if (file.size >= 4096 && file.size <= 256 * 1024 && bytes + file.size <= BOOT_FILE_BYTES) {
        // FAT names are case-insensitive, and a few characters are not allowed.
        const name = `${basename(file.path).replace(/[^A-Za-z0-9._+-]/g, '_')}.dtbo`;
        if (taken.has(name.toLowerCase())) continue;
        taken.add(name.toLowerCase());
        target = join(dir, 'overlays', name);
      }
      if (!target || !copy(file.path, target)) continue;
      bytes += file.size;
      files += 1;
    }
  }
  return { bytes, files };
}

/**
 * rootfs: `mke2fs -t ext4 -d DIR` from files copied from the host's /usr/lib and /usr/share, as
 * many as fill ROOT_USED of its blocks together with what an empty ext4 of that size uses
 * (journal, inode tables: 8 % of a small one).
 */
async function rootFilesystem(tools: ImageTools, work: string, rootBytes: number) {
  const file = join(work, 'root.ext4');
  const dir = join(work, 'root');
  sparseFile(file, rootBytes);
  const mke2fs = (...args: string[]) => run(tools.mke2fs, ['-q', '-F', '-t', 'ext4', '-L', 'rootfs', '-E', 'root_owner=0:0', ...args, file], { timeoutMs: 600_000 });
  await mke2fs();
  const empty = await blockUsage(tools, file);
  const copied = copyRootFiles(dir, (ROOT_USED * empty.total - empty.used) * empty.blockSize, empty.blockSize);
  await mke2fs('-d', dir);
  const filled = await blockUsage(tools, file);
  return { file, files: copied.files, fileBytes: copied.bytes, usedPercent: (100 * filled.used) / filled.total };
}

async function blockUsage(tools: ImageTools, file: string) {
  const header = (await run(tools.dumpe2fs, ['-h', file], { timeoutMs: 60_000 })).stdout;
  const field = (label: string) => Number(new RegExp(`^${label}:\\s+(\\d+)`, 'm').exec(header)?.[1]);
  return { total: field('Block count'), used: field('Block count') - field('Free blocks'), blockSize: field('Block size') };
}

/**
 * Files under their own paths, half of the budget from each source tree (as benchImage does);
 * each counts as the whole blocks it takes.
 */
function copyRootFiles(root: string, budget: number, blockSize: number) {
  let bytes = 0;
  let allocated = 0;
  let files = 0;
  ROOT_SOURCES.forEach((source, index) => {
    const limit = allocated + (budget - allocated) / (ROOT_SOURCES.length - index);
    for (const file of hostFiles(source)) {
      if (file.size >= 64 * MIB) continue;
      const blocks = Math.ceil(file.size / blockSize) * blockSize;
      if (allocated + blocks > limit) break;
      if (!copy(file.path, join(root, file.path))) continue;
      bytes += file.size;
      allocated += blocks;
      files += 1;
    }
  });
  return { bytes, files };
}

/** Regular, non-empty files under `dir`, in a stable (sorted) order; unreadable dirs skipped. */
function* hostFiles(dir: string): Generator<{ path: string; size: number }> {
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch {
    return;
  }
  for (const entry of entries) {
    const path = join(dir, entry);
    const stat = lstatSync(path, { throwIfNoEntry: false });
    if (stat?.isDirectory()) yield* hostFiles(path);
    else if (stat?.isFile() && stat.size > 0) yield { path, size: stat.size };
  }
}

/** Copies one file, making its directory; false when the source cannot be read. */
function copy(source: string, target: string) {
  try {
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(source, target);
    return true;
  } catch {
    return false;
  }
}
