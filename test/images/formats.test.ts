import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeImageFile } from '../helpers/files.js';
import { MAC, poll, registerDevice } from '../helpers/fixtures.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function upload(server: TestServer, name: string, body: Buffer) {
  const response = await fetch(`${server.url}/api/images?name=${name}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/octet-stream' },
    body,
  });
  return { status: response.status, body: (await response.json()) as any };
}

/** Every image file in a data folder, content-addressed (images/sha256/) or older (images/). */
const imageFiles = (dataDir: string) => (readdirSync(join(dataDir, 'images'), { recursive: true }) as string[]).filter((name) => name.endsWith('.img'));

const storedBytes = async (server: TestServer, name: string) => {
  const { images } = server.server.services;
  return readFileSync(images.pathOf(await images.requireImage(name)));
};

/** Nothing of a refused upload is left: no image, no stored file, no spooled or partial file. */
async function assertNothingStored(server: TestServer, images = 0) {
  assert.equal((await server.admin('GET', '/api/images')).body.images.length, images);
  assert.equal(imageFiles(server.dataDir).length, images);
  assert.deepEqual(readdirSync(join(server.dataDir, 'tmp')), []);
}

/** Writes a zip with Python's zipfile (Debian's python3): `members` maps names to files, or null for a folder entry. */
function makeZip(path: string, members: Array<[string, string | null]>) {
  const script = `
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
    for i in range(2, len(sys.argv), 2):
        name, source = sys.argv[i], sys.argv[i + 1]
        if source == '-': z.writestr(name, '')
        else: z.write(source, name)
`;
  execFileSync('python3', ['-c', script, path, ...members.flatMap(([name, source]) => [name, source ?? '-'])]);
}

test('.bz2, .lz4 (frame and legacy) and a zip holding one image import to the raw image, byte for byte', async (t) => {
  const dir = tempDir(t);
  const image = join(dir, 'os.img');
  const rawSha = writeImageFile(image, 3 * 1024 * 1024 + 777);
  execFileSync('bzip2', ['-k', '-q', image]);
  execFileSync('lz4', ['-q', image, `${image}.lz4`]);
  execFileSync('lz4', ['-q', '-l', image, `${image}.legacy.lz4`]);
  makeZip(`${image}.zip`, [['os.img', image]]);
  makeZip(`${image}.dir.zip`, [['images/', null], ['images/os.img', image]]);
  const server = await startTestServer(t);
  for (const [name, suffix] of [['bz2', '.bz2'], ['lz4', '.lz4'], ['lz4-legacy', '.legacy.lz4'], ['zip', '.zip'], ['zip-in-folder', '.dir.zip']] as const) {
    const compressed = readFileSync(`${image}${suffix}`);
    assert.notEqual(sha256(compressed), rawSha);
    const added = await upload(server, name, compressed);
    assert.equal(added.status, 201, `${name}: ${JSON.stringify(added.body)}`);
    assert.equal(added.body.size, 3 * 1024 * 1024 + 777, name);
    assert.equal(added.body.sha256, rawSha, name);
    assert.ok((await storedBytes(server, name)).equals(readFileSync(image)), `${name}: the stored file is the raw image`);
  }
  assert.deepEqual(readdirSync(join(server.dataDir, 'tmp')), [], 'the spooled zips are gone');
});

test('a zip holding several files, or none, is refused naming what is inside', async (t) => {
  const dir = tempDir(t);
  const image = join(dir, 'os.img');
  writeImageFile(image, 200_000);
  writeFileSync(join(dir, 'README.txt'), 'flash me');
  makeZip(join(dir, 'two.zip'), [['os.img', image], ['README.txt', join(dir, 'README.txt')]]);
  makeZip(join(dir, 'folder-only.zip'), [['empty/', null]]);
  execFileSync('python3', ['-c', `import zipfile; zipfile.ZipFile('${join(dir, 'empty.zip')}', 'w').close()`]);
  const server = await startTestServer(t);

  const two = await upload(server, 'two', readFileSync(join(dir, 'two.zip')));
  assert.equal(two.status, 400);
  assert.match(two.body.message, /^image 'two' was not added: the zip holds 2 files \("os\.img", "README\.txt"\), not one image/);
  for (const name of ['folder-only', 'empty']) {
    const none = await upload(server, name, readFileSync(join(dir, `${name}.zip`)));
    assert.equal(none.status, 400, name);
    assert.match(none.body.message, /the zip holds no file/, name);
  }
  const cut = await upload(server, 'cut', readFileSync(join(dir, 'two.zip')).subarray(0, 50_000));
  assert.equal(cut.status, 400);
  assert.match(cut.body.message, /the zip is damaged or cut/);
  assert.doesNotMatch(cut.body.message, /\/tmp|\.zip\b/, 'no server path in the message');
  await assertNothingStored(server);
});

test('archives and disk formats that are not raw images are refused, the format named', async (t) => {
  const dir = tempDir(t);
  const image = join(dir, 'os.img');
  writeImageFile(image, 100_000);
  execFileSync('tar', ['-cf', join(dir, 'os.tar'), '-C', dir, 'os.img']);
  const tail = randomBytes(4096);
  const header = (magic: number[] | string) => Buffer.concat([Buffer.from(magic as any, typeof magic === 'string' ? 'latin1' : undefined), tail]);
  const server = await startTestServer(t);
  const cases: Array<[string, Buffer, RegExp]> = [
    ['tar', readFileSync(join(dir, 'os.tar')), /the upload is a tar archive \(\.tar\), which is not an image/],
    ['sevenzip', header([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0x00, 0x04]), /a 7-Zip archive \(\.7z\)/],
    ['qcow2', header('QFI\xfb\x00\x00\x00\x03'), /a QEMU qcow disk \(qemu-img convert -O raw makes it raw\)/],
    ['android', header([0x3a, 0xff, 0x26, 0xed, 0x01, 0x00, 0x00, 0x00]), /an Android sparse image/],
    ['rar', header('Rar!\x1a\x07\x01\x00'), /a RAR archive/],
    ['vhdx', header('vhdxfile'), /a VHDX disk/],
  ];
  for (const [name, body, pattern] of cases) {
    const refused = await upload(server, name, body);
    assert.equal(refused.status, 400, name);
    assert.match(refused.body.message, pattern, name);
    assert.match(refused.body.message, /upload the raw image \(\.img\), or it compressed as/, name);
  }
  await assertNothingStored(server);
});

test('a body that matches no known signature is stored as it is: raw bytes', async (t) => {
  // A raw disk image has no magic of its own (its first sector is boot code, a partition table
  // or zeros), so only the signatures of known formats are interpreted; everything else IS the
  // image. Near misses of those signatures must therefore be stored byte for byte.
  const server = await startTestServer(t);
  const bodies: Array<[string, Buffer]> = [
    ['random', randomBytes(70_000)],
    ['bzh-no-digit', Buffer.concat([Buffer.from('BZhx'), randomBytes(5000)])],
    ['pk-not-zip', Buffer.concat([Buffer.from('PK\x01\x02', 'latin1'), randomBytes(5000)])],
    ['mbr', Buffer.concat([Buffer.alloc(510), Buffer.from([0x55, 0xaa]), randomBytes(3000)])],
  ];
  for (const [name, body] of bodies) {
    const added = await upload(server, name, body);
    assert.equal(added.status, 201, `${name}: ${JSON.stringify(added.body)}`);
    assert.equal(added.body.sha256, sha256(body), name);
    assert.ok((await storedBytes(server, name)).equals(body), name);
  }
});

test('damaged .bz2 and .lz4 are refused naming the format; a missing program is named with its Debian package', async (t) => {
  const dir = tempDir(t);
  const image = join(dir, 'os.img');
  writeImageFile(image, 1024 * 1024);
  execFileSync('bzip2', ['-k', '-q', image]);
  execFileSync('lz4', ['-q', image, `${image}.lz4`]);
  const server = await startTestServer(t);
  const bz2 = await upload(server, 'bz2', readFileSync(`${image}.bz2`).subarray(0, 300_000));
  assert.equal(bz2.status, 400);
  assert.match(bz2.body.message, /^image 'bz2' was not added: the bzip2 data is damaged or cut: /);
  const lz4 = await upload(server, 'lz4', readFileSync(`${image}.lz4`).subarray(0, 300_000));
  assert.equal(lz4.status, 400);
  assert.match(lz4.body.message, /^image 'lz4' was not added: the lz4 data is damaged or cut: /);

  // The server runs in this process: an empty PATH makes its spawn of bzip2 fail as on a host without it.
  const path = process.env.PATH;
  process.env.PATH = tempDir(t);
  try {
    const missing = await upload(server, 'no-bzip2', readFileSync(`${image}.bz2`));
    assert.equal(missing.status, 400);
    assert.match(missing.body.message, /cannot decompress the bzip2 data: the bzip2 program is missing on the server \(install the Debian package bzip2\)/);
  } finally {
    process.env.PATH = path;
  }
  await assertNothingStored(server);
});

test('an empty upload is refused; 1 to 5 bytes (and sizes around the sniffed head) are stored exactly and served back', async (t) => {
  const server = await startTestServer(t);
  const empty = await upload(server, 'empty', Buffer.alloc(0));
  assert.equal(empty.status, 400);
  assert.equal(empty.body.message, "image 'empty' was not added: the image is empty (0 bytes)");
  const gzipOfNothing = execFileSync('gzip', ['-c'], { input: Buffer.alloc(0) });
  const nothing = await upload(server, 'gz-empty', gzipOfNothing);
  assert.equal(nothing.status, 400);
  assert.match(nothing.body.message, /the gzip data holds no bytes: the image is empty/);
  await assertNothingStored(server);

  for (const length of [1, 2, 3, 4, 5, 6, 511, 512, 513]) {
    // 0x1f alone is half a gzip magic: still raw bytes.
    const body = length === 1 ? Buffer.from([0x1f]) : randomBytes(length);
    const added = await upload(server, `tiny-${length}`, body);
    assert.equal(added.status, 201, `${length}: ${JSON.stringify(added.body)}`);
    assert.equal(added.body.size, length);
    assert.equal(added.body.sha256, sha256(body));
    assert.ok((await storedBytes(server, `tiny-${length}`)).equals(body), `${length} bytes stored exactly`);
  }

  // And a device deploying the 3-byte image downloads exactly those 3 bytes.
  await registerDevice(server);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, { image: 'tiny-3' });
  assert.equal(ordered.status, 201, JSON.stringify(ordered.body));
  const job = await poll(server);
  const download = await fetch(job.url);
  assert.equal(download.status, 200);
  assert.ok(Buffer.from(await download.arrayBuffer()).equals(await storedBytes(server, 'tiny-3')));
});

test('an empty golden.img is refused and not imported; replaced by 3 bytes, those are published exactly', async (t) => {
  const dataDir = join(tempDir(t), 'data');
  mkdirSync(dataDir, { recursive: true });
  const golden = join(dataDir, 'golden.img');
  const past = () => utimesSync(golden, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  writeFileSync(golden, '');
  past();
  const server = await startTestServer(t, { dataDir });
  await server.server.services.golden.check();
  await assertNothingStored(server);

  writeFileSync(golden, Buffer.from([0xfd, 0x37, 0x7a]));
  past();
  await server.server.services.golden.check();
  const [image] = (await server.admin('GET', '/api/images')).body.images;
  assert.equal(image?.name, 'golden');
  assert.equal(image.size, 3, 'three bytes that begin like an xz magic are still raw bytes');
  assert.ok((await storedBytes(server, 'golden')).equals(Buffer.from([0xfd, 0x37, 0x7a])));
});
