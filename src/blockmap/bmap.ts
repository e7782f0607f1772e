/**
 * bmaptool's block map (.bmap, XML): which ranges of an image hold data, with a checksum per
 * range. Version 1.x uses SHA1 (`sha1="…"`), 2.x names the type (`<ChecksumType>`, `chksum="…"`).
 * https://github.com/yoctoproject/bmaptool (format description in its docs)
 */
export interface BmapRange {
  /** Byte offsets, end exclusive. */
  start: number;
  end: number;
  checksum: string | null;
}

export interface Bmap {
  imageSize: number;
  blockSize: number;
  checksumType: 'sha1' | 'sha256' | null;
  ranges: BmapRange[];
}

export class BmapError extends Error {
  override name = 'BmapError';
}

const tag = (xml: string, name: string) => new RegExp(`<${name}>\\s*([^<]*?)\\s*</${name}>`, 'i').exec(xml)?.[1];

export function parseBmap(xml: string): Bmap {
  if (!/<bmap\b/i.test(xml)) throw new BmapError('this is not a bmap file (no <bmap> element)');
  const version = /<bmap\s+version="(\d+)\./i.exec(xml)?.[1];
  const imageSize = Number(tag(xml, 'ImageSize'));
  const blockSize = Number(tag(xml, 'BlockSize'));
  if (!Number.isSafeInteger(imageSize) || imageSize <= 0) throw new BmapError('the bmap has no valid <ImageSize>');
  if (!Number.isSafeInteger(blockSize) || blockSize <= 0 || blockSize % 512 !== 0) throw new BmapError('the bmap has no valid <BlockSize>');
  const declared = tag(xml, 'ChecksumType')?.toLowerCase();
  const checksumType = declared === 'sha256' || declared === 'sha1' ? declared : version === '1' ? 'sha1' : null;
  const ranges: BmapRange[] = [];
  for (const match of xml.matchAll(/<Range([^>]*)>\s*(\d+)\s*(?:-\s*(\d+))?\s*<\/Range>/gi)) {
    const attributes = match[1]!;
    const first = Number(match[2]);
    const last = match[3] === undefined ? first : Number(match[3]);
    const checksum = /(?:chksum|sha1)="([0-9a-f]+)"/i.exec(attributes)?.[1]?.toLowerCase() ?? null;
    const start = first * blockSize;
    const end = Math.min((last + 1) * blockSize, imageSize);
    if (last < first || start >= imageSize) throw new BmapError(`the bmap range ${first}-${last} lies outside the image`);
    if (ranges.length && start < ranges.at(-1)!.end) throw new BmapError('the bmap ranges overlap or are out of order');
    ranges.push({ start, end, checksum });
  }
  if (ranges.length === 0) throw new BmapError('the bmap maps no ranges');
  return { imageSize, blockSize, checksumType, ranges };
}
