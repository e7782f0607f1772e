import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { benchImage, type BenchImage } from './image.js';
import type { Tools } from './netns.js';
import type { Options, BenchmarkName } from './options.js';
import { which } from './proc.js';
import { GIB, MIB } from './stats.js';

export interface AllTools extends Tools {
  curl: string;
  busybox: string;
  nginx: string;
  bmaptool: string;
  mke2fs: string;
  dumpe2fs: string;
  dd: string;
  sfdisk: string;
  'mkfs.vfat': string;
  mcopy: string;
  /** Optional: put on the device client's PATH when the host has it. */
  zstd?: string;
}

/** Which tool each benchmark runs, and the Debian package that has it. */
const NEEDS: Record<keyof AllTools, { package: string; by: BenchmarkName[] }> = {
  ip: { package: 'iproute2', by: ['deploy', 'serving', 'backup', 'polls', 'line', 'many', 'copies'] },
  tc: { package: 'iproute2', by: ['deploy', 'many', 'copies'] },
  curl: { package: 'curl', by: ['deploy', 'serving', 'backup', 'many'] },
  busybox: { package: 'busybox', by: ['deploy', 'line', 'many'] },
  nginx: { package: 'nginx-light', by: ['deploy', 'serving', 'many', 'copies'] },
  bmaptool: { package: 'bmap-tools', by: ['deploy', 'serving', 'line', 'many', 'copies'] },
  mke2fs: { package: 'e2fsprogs', by: ['deploy', 'serving', 'line', 'many', 'copies'] },
  dumpe2fs: { package: 'e2fsprogs', by: ['many'] },
  dd: { package: 'coreutils', by: ['backup', 'many'] },
  sfdisk: { package: 'fdisk', by: ['many'] },
  'mkfs.vfat': { package: 'dosfstools', by: ['many'] },
  mcopy: { package: 'mtools', by: ['many'] },
  zstd: { package: 'zstd', by: [] },
};

/** Finds every tool the chosen benchmarks need; the sentence names the package of a missing one. */
export function findTools(only: BenchmarkName[]): { tools: AllTools } | { missing: string } {
  const path = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;
  const found: Record<string, string | undefined> = {};
  for (const [name, need] of Object.entries(NEEDS)) {
    found[name] = which(name, path);
    if (!found[name] && need.by.some((bench) => only.includes(bench))) {
      return { missing: `${name} is missing: install the Debian package ${need.package} (scripts/install-bench-deps.sh installs everything the benchmarks need).` };
    }
  }
  return { tools: found as unknown as AllTools };
}

export interface Sizes {
  imageBytes: number;
  /** Bytes of files put into the image (16 % of it; ext4's journal and tables map ~5 % more). */
  fileBytes: number;
  pollDevices: number;
  /** Devices ordered one at a time, and then as many again in one burst. */
  pollSample: number;
  /** The many-devices benchmark's Raspberry Pi OS-shaped disk image and its FAT32 boot partition. */
  piOsImageBytes: number;
  piOsBootBytes: number;
}

export const sizesFor = (quick: boolean): Sizes =>
  quick
    ? { imageBytes: 256 * MIB, fileBytes: 40 * MIB, pollDevices: 200, pollSample: 20, piOsImageBytes: 256 * MIB, piOsBootBytes: 64 * MIB }
    : { imageBytes: 2 * GIB, fileBytes: 330 * MIB, pollDevices: 1000, pollSample: 100, piOsImageBytes: 1 * GIB, piOsBootBytes: 256 * MIB };

/** What every benchmark gets: options, tools, scratch space, the shared test image. */
export interface BenchContext {
  options: Options;
  sizes: Sizes;
  tools: AllTools;
  cleanup: Cleanup;
  /** Scratch space of this run (targets, data dirs), removed at the end. */
  runDir: string;
  cacheDir: string;
  /** The block device under the scratch space, watched for idleness before each run. */
  disk: string | undefined;
  /** PATH for the device client: busybox applets, curl, zstd. */
  deviceBin: string;
  /** A data dir shared by the deploy and serving benchmarks, so the image is imported once. */
  libraryDataDir: string;
  log(line: string): void;
  image(): Promise<BenchImage>;
}

export function createContext(base: Omit<BenchContext, 'image' | 'libraryDataDir'>): BenchContext {
  let image: Promise<BenchImage> | undefined;
  return {
    ...base,
    libraryDataDir: join(base.runDir, 'library-data'),
    image: () => (image ??= benchImage(base.cacheDir, base.sizes.imageBytes, base.sizes.fileBytes, base.log)),
  };
}
