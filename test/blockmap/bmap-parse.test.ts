import assert from 'node:assert/strict';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { BmapError, MAX_BMAP_RANGES, parseBmap, type Bmap } from '../../src/blockmap/bmap.js';
import { writeBlockImage } from '../../src/blockmap/image-writer.js';
import { tempDir } from '../helpers/server.js';
import { bmaptoolCopy, createBmap, hashHex, legacyBmap, sparseImage, type Version } from './bmaptool.js';

const KiB = 1024;
const BLOCK = 4096;
/** Not a whole number of blocks: the last range ends with the image, inside its last block. */
const SIZE = 2 * 1024 * KiB + 1234;
const SPANS: Array<[number, number]> = [[0, 3 * BLOCK], [5 * BLOCK, BLOCK], [40 * BLOCK, 24 * BLOCK], [512 * BLOCK, 1234]];
const BLOCK_RANGES: Array<[number, number]> = [[0, 2], [5, 5], [40, 63], [512, 512]];
const BYTE_RANGES = [[0, 3 * BLOCK], [5 * BLOCK, 6 * BLOCK], [40 * BLOCK, 64 * BLOCK], [512 * BLOCK, SIZE]];
/** Python's hashlib name → Node's, for the checksums the test computes itself. */
const NODE_HASH: Record<string, string> = {
  sha512_224: 'sha512-224', sha512_256: 'sha512-256', sha3_224: 'sha3-224', sha3_256: 'sha3-256', sha3_384: 'sha3-384',
  sha3_512: 'sha3-512', blake2b: 'blake2b512', blake2s: 'blake2s256',
};
const TYPES = ['sha256', 'md5', 'sha1', 'sha224', 'sha384', 'sha512', ...Object.keys(NODE_HASH)];

const importWith = (image: Buffer, bmap: Bmap) => writeBlockImage(Readable.from([image]), null, { bmap });
const flipped = (image: Buffer, offset: number) => {
  const copy = Buffer.from(image);
  copy[offset] = copy[offset]! ^ 0xff;
  return copy;
};

test('bmaps bmaptool writes, with each checksum type it can write, map the blocks that hold data and have every range checked', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'disk.img');
  const image = await sparseImage(path, SIZE, SPANS);
  for (const type of TYPES) {
    const bmap = parseBmap(createBmap(path, join(dir, `${type}.bmap`), type));
    assert.equal(bmap.checksumType, type);
    assert.deepEqual(bmap.ranges.map((range) => [range.start, range.end]), BYTE_RANGES, type);
    for (const range of bmap.ranges) assert.equal(range.checksum, hashHex(NODE_HASH[type] ?? type, image.subarray(range.start, range.end)), type);
    const imported = await importWith(image, bmap);
    assert.equal(imported.mapSource, 'bmap');
    // The all-zero gap of blocks 3-4 is merged into the first chunk.
    assert.deepEqual(imported.chunks.map((c) => [c.offset, c.length]), [[0, 6 * BLOCK], [40 * BLOCK, 24 * BLOCK], [512 * BLOCK, 1234]], type);
    await assert.rejects(importWith(flipped(image, 50 * BLOCK + 7), bmap), new RegExp(`range 40-63 has another ${type} checksum`), type);
    // bmaptool copy never reads unmapped blocks, so it does not check them either; a gap that is
    // not zeros is not merged.
    const dirtyGap = await importWith(flipped(image, 3 * BLOCK + 100), bmap);
    assert.deepEqual(dirtyGap.chunks.map((c) => [c.offset, c.length]), [[0, 3 * BLOCK], [5 * BLOCK, BLOCK], [40 * BLOCK, 24 * BLOCK], [512 * BLOCK, 1234]], type);
  }
  const fromFile = await writeBlockImage(createReadStream(path), null, { bmap: parseBmap(readFileSync(join(dir, 'sha256.bmap'), 'utf8')) });
  assert.equal(fromFile.size, SIZE);
});

test('a bmap made with --no-checksum says its ranges carry none; its own checksum is still checked', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'disk.img');
  const image = await sparseImage(path, SIZE, SPANS);
  const xml = createBmap(path, join(dir, 'plain.bmap'), 'sha256', { checksums: false });
  const bmap = parseBmap(xml);
  assert.equal(bmap.checksumType, null);
  assert.ok(bmap.ranges.every((range) => range.checksum === null));
  assert.equal((await importWith(flipped(image, 50 * BLOCK), bmap)).chunks.length, 3, 'nothing to check against');
  assert.throws(() => parseBmap(xml.replace(/<Range> 5 <\/Range>\s*/, '')), /own checksum does not match: the file was edited or damaged/);
});

test('format versions 1.0 to 1.4, laid out from the format, read as bmaptool copy reads them', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'disk.img');
  const image = await sparseImage(path, SIZE, SPANS);
  const expected: Record<Version, string | null> = { '1.0': null, '1.1': null, '1.2': 'sha1', '1.3': 'sha1', '1.4': 'sha256' };
  for (const version of Object.keys(expected) as Version[]) {
    const xml = legacyBmap(version, image, BLOCK, BLOCK_RANGES);
    const file = join(dir, `v${version}.bmap`);
    writeFileSync(file, xml);
    const copied = bmaptoolCopy(file, path, join(dir, `copy-${version}.img`));
    assert.equal(copied.code, 0, `bmaptool copy takes the ${version} bmap: ${copied.output}`);
    assert.match(copied.output, new RegExp(`block map format version ${version.replace('.', '\\.')}`));
    const bmap = parseBmap(xml);
    assert.equal(bmap.checksumType, expected[version], version);
    assert.deepEqual(bmap.ranges.map((range) => [range.start, range.end]), BYTE_RANGES, version);
    await importWith(image, bmap);
    if (expected[version]) await assert.rejects(importWith(flipped(image, BLOCK), bmap), /range 0-2 has another/, version);
    else await importWith(flipped(image, BLOCK), bmap); // nothing to check: as bmaptool

    if (version === '1.3' || version === '1.4') {
      const edited = xml.replace('> 5 </Range>', '> 6 </Range>');
      writeFileSync(file, edited);
      assert.notEqual(bmaptoolCopy(file, path, join(dir, `edited-${version}.img`)).code, 0, 'bmaptool refuses the edited bmap');
      assert.throws(() => parseBmap(edited), /own checksum does not match/, version);
    }
  }
});

test("a bmap edited after bmaptool wrote it is refused, as bmaptool copy refuses it", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'disk.img');
  await sparseImage(path, SIZE, SPANS);
  for (const type of ['sha256', 'md5', 'sha512']) {
    const xml = createBmap(path, join(dir, `${type}.bmap`), type);
    const edits = [
      xml.replace(/chksum="(.)/, (_, first: string) => `chksum="${first === 'a' ? 'b' : 'a'}`), // one range's checksum
      xml.replace(/\s*<Range[^\n]*> 5 <\/Range>/, ''), // a range dropped
      xml.replace('<BlockMap>', '<BlockMap> '), // only spacing
    ];
    for (const edited of edits) {
      assert.notEqual(edited, xml);
      assert.throws(() => parseBmap(edited), { name: 'BmapError', message: "the bmap's own checksum does not match: the file was edited or damaged" });
      const file = join(dir, 'edited.bmap');
      writeFileSync(file, edited);
      const copied = bmaptoolCopy(file, path, join(dir, 'copy.img'));
      assert.notEqual(copied.code, 0);
      assert.match(copied.output, /checksum mismatch for bmap file/);
    }
  }
});

test('a checksum type this server does not check is refused with a sentence naming it', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'disk.img');
  await sparseImage(path, SIZE, SPANS);
  // hashlib has ripemd160 here, so BmapCreate writes it and bmaptool copy reads it.
  const file = join(dir, 'ripemd.bmap');
  createBmap(path, file, 'ripemd160');
  assert.equal(bmaptoolCopy(file, path, join(dir, 'copy.img')).code, 0);
  assert.throws(() => parseBmap(readFileSync(file, 'utf8')), {
    message: "the bmap's checksum type 'ripemd160' is not one this server checks (md5, sha1, sha224, sha256, sha384, sha512, sha512_224, sha512_256, sha3_224, sha3_256, sha3_384, sha3_512, blake2b, blake2s)",
  });
});

/** A small bmap without its own checksum, so each edit below meets the check it is about. */
const small = (body: string, head = '<ImageSize> 40960 </ImageSize><BlockSize> 4096 </BlockSize><BlocksCount> 10 </BlocksCount>', version = '2.0') =>
  `<?xml version="1.0" ?>\n<bmap version="${version}">${head}<ChecksumType> sha256 </ChecksumType><BlockMap>${body}</BlockMap></bmap>\n`;

test('bmaps that do not hold together are refused with a reason', () => {
  assert.deepEqual(parseBmap(small('<Range> 0-1 </Range><Range>9</Range>')).ranges, [
    { start: 0, end: 8192, checksum: null },
    { start: 36864, end: 40960, checksum: null },
  ]);
  const cases: Array<[string, RegExp]> = [
    [small('<Range> 1 </Range>', '<ImageSize> 40960 </ImageSize><BlockSize> 4096 </BlockSize><BlocksCount> 11 </BlocksCount>'), /<BlocksCount> 11 does not fit its 40960-byte image of 4096-byte blocks \(10\)/],
    [small('<Range> 1 </Range>').replace('<BlockMap>', '<MappedBlocksCount> 2 </MappedBlocksCount><BlockMap>'), /<MappedBlocksCount> says 2 blocks, its ranges hold 1/],
    [small('<Range> 5 </Range><Range> 2-3 </Range>'), /overlap or are out of order/],
    [small('<Range> 2-4 </Range><Range> 4 </Range>'), /overlap or are out of order/],
    [small('<Range> 8-10 </Range>'), /range 8-10 lies outside the image \(10 blocks\)/],
    [small('<Range> 5-3 </Range>'), /range 5-3 ends before it starts/],
    [small('<Range> 1-x </Range>'), /range '1-x' that is not "first-last"/],
    [small('<Range chksum="xyz"> 1 </Range>'), /range 1-1 has a malformed checksum/],
    [small('<Range chksum="ab"> 1 </Range>').replace('<ChecksumType> sha256 </ChecksumType>', ''), /has a checksum but the bmap has no <ChecksumType>/],
    [small('<Range> 1 </Range>', undefined, '3.0'), /format version 3\.0 is not one bmaptool wrote/],
    [small('<Range> 1 </Range>').replace(' version="2.0"', ''), /has no format version/],
    [small('<Range> 1 </Range>').replace('<BlockMap>', '<ImageSize> 4096 </ImageSize><BlockMap>'), /more than one <ImageSize>/],
    [small('<Range> 1 </Range>').replace('<BlockSize> 4096 ', '<BlockSize> 1000 '), /block size 1000 is not a multiple of 512/],
    [small('<Range> 1 </Range>').replace('<ImageSize> 40960 ', '<ImageSize> -1 '), /no valid <ImageSize>/],
    [small('<Range> 1 <b/> </Range>'), /an element <b> inside <Range>/],
    [small('<Range> 1 </Range>').slice(0, 150), /the file is cut/],
    [small('<Range> 1 </Range>').replace('<?xml version="1.0" ?>', '<!DOCTYPE bmap [<!ENTITY a "1">]>'), /DOCTYPE/],
    [`-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n${small('<Range> 1 </Range>')}`, /GPG-clearsigned/],
    ['ImageSize 40960', /this is not a bmap file/],
    ['<html><body/></html>', /this is not a bmap file/],
    [`${small('<Range> 1 </Range>')}<bmap/>`, /more than one top element/],
  ];
  for (const [xml, reason] of cases) assert.throws(() => parseBmap(xml), (error: Error) => error instanceof BmapError && reason.test(error.message), xml);
});

test('crafted bodies are read in one pass: a 5 KB and a 1 MB one end (the old regexes froze on them)', { timeout: 60_000 }, () => {
  const head = '<bmap version="2.0"><ImageSize> 40960 </ImageSize><BlockSize> 4096 </BlockSize><BlockMap>';
  const bodies = (n: number) => [
    head + '<Range'.repeat(n / 6),
    head + `<Range chksum="${'a'.repeat(n)}"> 1 </Range></BlockMap></bmap>`,
    head + `<Range chksum="${'a'.repeat(n)}> 1 </Range></BlockMap></bmap>`,
    `<bmap version="2.0"><ImageSize>${' '.repeat(n)}`,
    `<bmap version="2.0"><ImageSize>${' '.repeat(n)}1${' '.repeat(n)}</ImageSize`,
    head + `<Range>${' 1'.repeat(n / 2)}-</Range></BlockMap></bmap>`,
    head + '<Range> 1 </Range>'.repeat(n / 18) + '<Range> 1',
    '<!--'.repeat(n / 4),
    '<bmap '.repeat(n / 6),
    `<bmap version="2.0" ${Array.from({ length: n / 10 }, (_, i) => `attribute${i}="1"`).join(' ')}>`,
    `<${'a'.repeat(n)}>`,
    '<a>'.repeat(n / 3),
  ];
  let outcomes = 0;
  for (const size of [5 * KiB, 1024 * KiB]) {
    for (const body of bodies(size)) {
      assert.ok(body.length >= size * 0.9, 'as large as meant');
      try {
        parseBmap(body);
      } catch (error) {
        assert.ok(error instanceof BmapError, String(error));
      }
      outcomes += 1;
    }
  }
  assert.equal(outcomes, 24);
});

test('a map of many ranges parses; more ranges than the limit, or a body over 16 MiB, is refused', () => {
  const many = (count: number) => {
    const ranges = Array.from({ length: count }, (_, i) => `<Range> ${2 * i} </Range>`).join('\n');
    return small(ranges, `<ImageSize> ${2 * count * 512} </ImageSize><BlockSize> 512 </BlockSize>`);
  };
  assert.equal(parseBmap(many(200_000)).ranges.length, 200_000);
  assert.throws(() => parseBmap(many(MAX_BMAP_RANGES + 1)), new RegExp(`more than ${MAX_BMAP_RANGES} ranges`));
  assert.throws(() => parseBmap(`${small('<Range> 1 </Range>')}${' '.repeat(16 * 1024 * KiB)}`), /larger than 16 MiB/);
});
