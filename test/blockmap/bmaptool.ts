import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { truncate } from 'node:fs/promises';

/** The real bmaptool (Debian's bmap-tools) and its Python module, driven as a user would. */
const BMAPTOOL = execFileSync('sh', ['-c', 'command -v bmaptool']).toString().trim();
/** The interpreter bmaptool runs under (its #! line), so its module imports. */
const PYTHON = /^#!\s*(\S+)/.exec(readFileSync(BMAPTOOL, 'utf8'))![1]!;
/** Debian's bmap-tools 3.x installs `bmaptools`; upstream renamed it `bmaptool`. */
const MODULE = ['bmaptools', 'bmaptool'].find((name) => spawnSync(PYTHON, ['-c', `import ${name}.BmapCreate`]).status === 0)!;

/**
 * `bmaptool create` (sha256, format 2.0) or, for another checksum type, its BmapCreate class,
 * which takes any type Python's hashlib has. `checksums: false` is `--no-checksum`.
 */
export function createBmap(image: string, bmap: string, type = 'sha256', options: { checksums?: boolean } = {}): string {
  const checksums = options.checksums ?? true;
  if (type === 'sha256') {
    execFileSync(BMAPTOOL, ['create', ...(checksums ? [] : ['--no-checksum']), '-o', bmap, image], { stdio: 'pipe' });
  } else {
    const script = `import sys\nfrom ${MODULE} import BmapCreate\nBmapCreate.BmapCreate(sys.argv[1], sys.argv[2], sys.argv[3]).generate(sys.argv[4] == "1")`;
    execFileSync(PYTHON, ['-c', script, image, bmap, type, checksums ? '1' : '0'], { stdio: 'pipe' });
  }
  return readFileSync(bmap, 'utf8');
}

/** `bmaptool copy --bmap BMAP IMAGE TARGET`: its exit code and what it said. */
export function bmaptoolCopy(bmap: string, image: string, target: string): { code: number | null; output: string } {
  const run = spawnSync(BMAPTOOL, ['copy', '--bmap', bmap, image, target], { encoding: 'utf8' });
  return { code: run.status, output: `${run.stdout}${run.stderr}` };
}

/**
 * A sparse file of `size` bytes holding random data only in the given byte spans (block aligned
 * at their start): what the file system reports as mapped, and so what bmaptool maps.
 */
export async function sparseImage(path: string, size: number, spans: Array<[offset: number, length: number]>): Promise<Buffer> {
  const image = Buffer.alloc(size);
  const fd = openSync(path, 'w');
  closeSync(fd);
  await truncate(path, size);
  const file = openSync(path, 'r+');
  for (const [offset, length] of spans) {
    randomBytes(length).copy(image, offset);
    writeSync(file, image, offset, length, offset);
  }
  closeSync(file);
  return image;
}

export const hashHex = (type: string, data: Buffer | string) => createHash(type).update(data).digest('hex');

export type Version = '1.0' | '1.1' | '1.2' | '1.3' | '1.4';

/**
 * A bmap of an older format version, laid out here from the format's rules (not copied from any
 * file): 1.0 and 1.1 carry no checksums; 1.2 adds `sha1="…"` per range; 1.3 adds the file's own
 * SHA1 in <BmapFileSHA1>; 1.4 (= 2.0) names the type, `chksum="…"` and <BmapFileChecksum>. The
 * file checksum is the hash of the file with its digits written as "0"s.
 */
export function legacyBmap(version: Version, image: Buffer, blockSize: number, ranges: Array<[first: number, last: number]>): string {
  const named = version === '1.4';
  const type = named ? 'sha256' : 'sha1';
  const summed = version >= '1.2';
  const lines = ranges.map(([first, last]) => {
    const data = image.subarray(first * blockSize, Math.min((last + 1) * blockSize, image.length));
    const checksum = summed ? ` ${named ? 'chksum' : 'sha1'}="${hashHex(type, data)}"` : '';
    return `    <Range${checksum}> ${first === last ? first : `${first}-${last}`} </Range>`;
  });
  const mapped = ranges.reduce((sum, [first, last]) => sum + last - first + 1, 0);
  const zeros = '0'.repeat(hashHex(type, '').length);
  const ownTag = version === '1.3' ? 'BmapFileSHA1' : named ? 'BmapFileChecksum' : undefined;
  const text = [
    '<?xml version="1.0" ?>',
    `<!-- A block map in format ${version}, written by the test. -->`,
    `<bmap version="${version}">`,
    `  <ImageSize> ${image.length} </ImageSize>`,
    `  <BlockSize> ${blockSize} </BlockSize>`,
    `  <BlocksCount> ${Math.ceil(image.length / blockSize)} </BlocksCount>`,
    ...(named ? ['  <ChecksumType> sha256 </ChecksumType>'] : []),
    // Before 1.3 the mapped count came after the map; both places are valid.
    ...(version >= '1.3' ? [`  <MappedBlocksCount> ${mapped} </MappedBlocksCount>`] : []),
    ...(ownTag ? [`  <${ownTag}> ${zeros} </${ownTag}>`] : []),
    '  <BlockMap>',
    ...lines,
    '  </BlockMap>',
    ...(version < '1.3' ? [`  <MappedBlocksCount> ${mapped} </MappedBlocksCount>`] : []),
    '</bmap>',
    '',
  ].join('\n');
  return ownTag ? text.replace(`<${ownTag}> ${zeros} `, `<${ownTag}> ${hashHex(type, text)} `) : text;
}
