/** What an upload's first bytes say it is: the encodings we decode, and formats we refuse. */
export type Decodable = 'gzip' | 'xz' | 'zstd' | 'bzip2' | 'lz4' | 'zip';
export type ImageEncoding = 'raw' | Decodable;

/** Enough of the head for every signature below (tar's "ustar" sits at offset 257). */
export const HEAD_BYTES = 512;

interface Signature {
  /** Bytes at `at`; a string is taken as latin1. */
  magic: string | number[];
  at?: number;
  /** Extra test on the head, for magics too short to trust alone. */
  also?: (head: Buffer) => boolean;
}

const ascii = (s: string) => [...Buffer.from(s, 'latin1')];
const matches = (head: Buffer, { magic, at = 0, also }: Signature) => {
  const bytes = typeof magic === 'string' ? ascii(magic) : magic;
  return head.length >= at + bytes.length && bytes.every((byte, i) => head[at + i] === byte) && (also?.(head) ?? true);
};

const DECODABLE: Array<[Decodable, Signature[]]> = [
  ['gzip', [{ magic: [0x1f, 0x8b] }]], // RFC 1952 §2.3.1
  ['xz', [{ magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] }]],
  ['zstd', [{ magic: [0x28, 0xb5, 0x2f, 0xfd] }]], // RFC 8878 §3.1.1
  ['bzip2', [{ magic: 'BZh', also: (head) => head.length >= 4 && head[3]! >= 0x31 && head[3]! <= 0x39 }]],
  // lz4 frame format, and the legacy format the lz4 program still reads.
  ['lz4', [{ magic: [0x04, 0x22, 0x4d, 0x18] }, { magic: [0x02, 0x21, 0x4c, 0x18] }]],
  // A local file header, or the end record alone (an empty archive); APPNOTE.TXT §4.3.
  ['zip', [{ magic: [0x50, 0x4b, 0x03, 0x04] }, { magic: [0x50, 0x4b, 0x05, 0x06] }, { magic: [0x50, 0x4b, 0x07, 0x08] }]],
];

/** lzma-alone has no magic: properties 0x5D, then a power-of-two dictionary, then the size. */
const looksLikeLzma = (head: Buffer) => {
  if (head.length < 13) return false;
  const dictionary = head.readUInt32LE(1);
  const unknownSize = head.subarray(5, 13).every((byte) => byte === 0xff);
  return dictionary >= 4096 && (dictionary & (dictionary - 1)) === 0 && (unknownSize || head[12] === 0);
};

/** Containers and compressors that are never decoded here, each with what to do instead. */
const REFUSED: Array<[string, Signature[]]> = [
  ['a 7-Zip archive (.7z)', [{ magic: [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c] }]],
  ['a RAR archive (.rar)', [{ magic: 'Rar!\x1a\x07' }]],
  ['a tar archive (.tar)', [{ magic: 'ustar', at: 257 }]],
  ['lzip data (.lz)', [{ magic: 'LZIP' }]],
  ['lzma data (.lzma)', [{ magic: [0x5d, 0x00, 0x00], also: looksLikeLzma }]],
  ['Unix compress data (.Z)', [{ magic: [0x1f, 0x9d] }]],
  ['lzop data (.lzo)', [{ magic: [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a] }]],
  ['an Android sparse image (simg2img makes it raw)', [{ magic: [0x3a, 0xff, 0x26, 0xed] }]],
  ['a QEMU qcow disk (qemu-img convert -O raw makes it raw)', [{ magic: 'QFI\xfb' }]],
  ['a VHDX disk (qemu-img convert -O raw makes it raw)', [{ magic: 'vhdxfile' }]],
  ['a dynamic VHD disk (qemu-img convert -O raw makes it raw)', [{ magic: 'conectix' }]],
  ['a VMDK disk (qemu-img convert -O raw makes it raw)', [{ magic: 'KDMV' }, { magic: '# Disk DescriptorFile' }]],
  ['a VirtualBox VDI disk (qemu-img convert -O raw makes it raw)', [{ magic: [0x7f, 0x10, 0xda, 0xbe], at: 64 }]],
];

export type Sniffed = { encoding: ImageEncoding } | { refused: string };

/**
 * Tells an upload's format from its first bytes (at most HEAD_BYTES; fewer when the body is
 * shorter). A disk image has no magic of its own (its first sector is boot code, a partition
 * table, or zeros), so anything that matches none of these signatures is taken as raw bytes.
 */
export function sniffFormat(head: Buffer): Sniffed {
  for (const [encoding, signatures] of DECODABLE) {
    if (signatures.some((signature) => matches(head, signature))) return { encoding };
  }
  for (const [format, signatures] of REFUSED) {
    if (signatures.some((signature) => matches(head, signature))) return { refused: format };
  }
  return { encoding: 'raw' };
}
