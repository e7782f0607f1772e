import { createHash } from 'node:crypto';
import { copyFileSync, createReadStream, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { run } from './proc.js';

export interface BenchImage {
  path: string;
  bmap: string;
  bytes: number;
  sha256: string;
  /** Bytes the bmap marks as mapped (what a sparse-aware writer must write). */
  mappedBytes: number;
  files: number;
  fileBytes: number;
  seconds: number;
}

const SOURCES = ['/usr/lib', '/usr/share'];
const MIB = 1024 * 1024;

/**
 * An ext4 image like a real root filesystem: `bytes` large, holding about `fileBytes` of real,
 * compressible files copied from the host (mke2fs -d), with its bmap (bmaptool create). Built
 * once and cached; a second run with the same sizes reuses it.
 */
export async function benchImage(cacheDir: string, bytes: number, fileBytes: number, log: (line: string) => void): Promise<BenchImage> {
  const name = `ext4-${bytes / MIB}M-${Math.round(fileBytes / MIB)}M`;
  const path = join(cacheDir, `${name}.img`);
  const metaFile = join(cacheDir, `${name}.json`);
  if (existsSync(metaFile) && existsSync(path) && existsSync(`${path}.bmap`)) {
    return { ...(JSON.parse(readFileSync(metaFile, 'utf8')) as BenchImage), path, bmap: `${path}.bmap` };
  }

  const began = Date.now();
  log(`building the test image ${path} (${bytes / MIB} MiB ext4, ~${Math.round(fileBytes / MIB)} MiB of files from ${SOURCES.join(', ')})`);
  mkdirSync(cacheDir, { recursive: true });
  const root = join(cacheDir, `${name}.root`);
  rmSync(root, { recursive: true, force: true });
  const copied = copyFiles(root, fileBytes);
  rmSync(path, { force: true });
  writeFileSync(path, '');
  truncateSync(path, bytes);
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'cm4bench', '-E', 'root_owner=0:0', '-d', root, path], { timeoutMs: 600_000 });
  rmSync(root, { recursive: true, force: true });
  await run('bmaptool', ['create', '-o', `${path}.bmap`, path], { timeoutMs: 600_000 });

  const bmap = readFileSync(`${path}.bmap`, 'utf8');
  const field = (tag: string) => Number(new RegExp(`<${tag}>\\s*(\\d+)\\s*</${tag}>`).exec(bmap)?.[1]);
  const image: BenchImage = {
    path,
    bmap: `${path}.bmap`,
    bytes,
    sha256: await sha256File(path),
    mappedBytes: field('MappedBlocksCount') * field('BlockSize'),
    files: copied.files,
    fileBytes: copied.bytes,
    seconds: (Date.now() - began) / 1000,
  };
  writeFileSync(metaFile, JSON.stringify(image, null, 2));
  return image;
}

/** Copies regular files, in a stable order, from the host's /usr/lib and /usr/share into `root`. */
function copyFiles(root: string, budget: number) {
  let bytes = 0;
  let files = 0;
  let limit = 0;
  const walk = (dir: string): boolean => {
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch {
      return true;
    }
    for (const entry of entries) {
      const source = join(dir, entry);
      const stat = lstatSync(source, { throwIfNoEntry: false });
      if (!stat) continue;
      if (stat.isDirectory()) {
        if (!walk(source)) return false;
      } else if (stat.isFile() && stat.size > 0 && stat.size < 64 * MIB) {
        if (bytes + stat.size > limit) return false;
        const target = join(root, source);
        try {
          mkdirSync(dirname(target), { recursive: true });
          copyFileSync(source, target);
        } catch {
          continue; // unreadable: skip it
        }
        bytes += stat.size;
        files += 1;
      }
    }
    return true;
  };
  // Half from each tree: libraries and binaries compress well, /usr/share is text, icons and
  // already-compressed documentation, as on a real root filesystem.
  SOURCES.forEach((source, index) => {
    limit = bytes + (budget - bytes) / (SOURCES.length - index);
    walk(source);
  });
  return { bytes, files };
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path, { highWaterMark: 4 * MIB })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}
