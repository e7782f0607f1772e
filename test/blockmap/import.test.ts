import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { decompress } from 'zstd-napi';
import { makeExt4Image } from '../helpers/ext4.js';
import { sha256OfFile } from '../helpers/files.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';

async function upload(server: TestServer, name: string, body: Buffer, query = '') {
  const response = await fetch(`${server.url}/api/images?name=${name}${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/octet-stream' },
    body,
  });
  return { status: response.status, body: (await response.json()) as any };
}

test('.img, .img.gz, .img.xz and .img.zst import to the same raw image, sha256 and block map; the stored file is sparse', async (t) => {
  const dir = tempDir(t);
  const { image } = makeExt4Image(dir, 64);
  const raw = readFileSync(image);
  const rawSha = await sha256OfFile(image);
  for (const [tool, suffix] of [['gzip', 'gz'], ['xz', 'xz'], ['zstd', 'zst']] as const) {
    execFileSync(tool, ['-k', '-q', image]);
    assert.ok(statSync(`${image}.${suffix}`).size < raw.length / 4, `${suffix} is small`);
  }
  const server = await startTestServer(t);
  const views = [];
  for (const [name, file] of [['raw', image], ['gz', `${image}.gz`], ['xz', `${image}.xz`], ['zst', `${image}.zst`]] as const) {
    const added = await upload(server, name, readFileSync(file));
    assert.equal(added.status, 201, JSON.stringify(added.body));
    views.push(added.body);
  }
  for (const view of views) {
    assert.equal(view.size, raw.length, view.name);
    assert.equal(view.sha256, rawSha, view.name);
    assert.deepEqual(view.block_map, { ...views[0].block_map, compression: view.block_map.compression }, view.name);
  }
  const map = views[0].block_map;
  assert.equal(map.source, 'zeros');
  assert.ok(map.mapped_bytes > 1024 * 1024 && map.mapped_bytes < raw.length / 2, `mapped ${map.mapped_bytes} of ${raw.length}`);

  const stored = await server.server.services.images.requireImage('zst');
  const onDisk = statSync(server.server.services.images.pathOf(stored));
  assert.equal(onDisk.size, raw.length);
  assert.ok(onDisk.blocks * 512 < raw.length / 2, 'zero MiBs are holes in the stored file');

  const broken = readFileSync(`${image}.gz`).subarray(0, 5000);
  const refused = await upload(server, 'broken', broken);
  assert.equal(refused.status, 400);
  assert.match(refused.body.message, /gzip data is damaged or cut/);
});

test('every mapped chunk is compressed once into the cache, as frames that decode to the chunk', async (t) => {
  const { image } = makeExt4Image(tempDir(t), 48);
  const server = await startTestServer(t);
  await upload(server, 'os', readFileSync(image));
  await server.server.services.caches.idle();
  const view = (await server.admin('GET', '/api/images/os')).body;
  assert.equal(view.block_map.compression.state, 'ready');
  assert.ok(view.block_map.compression.bytes < view.block_map.mapped_bytes / 2, 'compressed well below the mapped size');

  const { blockMaps } = server.server.services;
  const imageRow = await server.server.services.images.requireImage('os');
  const map = (await blockMaps.get(imageRow.block_map_id!))!;
  const cache = readFileSync(join(server.dataDir, map.cache_file!));
  const raw = readFileSync(image);
  for (const chunk of await blockMaps.chunks(map.id)) {
    const frame = cache.subarray(chunk.zoffset!, chunk.zoffset! + chunk.zlength!);
    assert.deepEqual(decompress(frame), raw.subarray(chunk.offset, chunk.offset + chunk.length), `chunk ${chunk.idx}`);
  }
});

test('a bmaptool bmap gives the map and its checksums are checked; an edited bmap, or an image that is not its own, is refused', async (t) => {
  const dir = tempDir(t);
  const { image, bmap } = makeExt4Image(dir, 32, { bmap: true });
  const server = await startTestServer(t);
  const xml = readFileSync(bmap!, 'utf8');
  const sendBmap = async (text: string) => {
    const response = await fetch(`${server.url}/api/images/bmaps`, { method: 'POST', headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/xml' }, body: text });
    return { status: response.status, body: (await response.json()) as any };
  };
  const declared = await sendBmap(xml);
  assert.equal(declared.status, 201, JSON.stringify(declared.body));
  assert.equal(declared.body.image_size, statSync(image).size);
  assert.equal(declared.body.checksum_type, 'sha256');
  const added = await upload(server, 'mapped', readFileSync(image), `&bmap=${declared.body.bmap}`);
  assert.equal(added.status, 201, JSON.stringify(added.body));
  assert.equal(added.body.block_map.source, 'bmap');
  assert.ok(added.body.block_map.mapped_bytes >= declared.body.mapped_bytes, 'every mapped byte is in a chunk');

  // bmaptool checks the bmap's own checksum first: an edited range checksum never gets to the image.
  const tampered = xml.replace(/chksum="([0-9a-f])/, (_, first: string) => `chksum="${first === '0' ? '1' : '0'}`);
  const edited = await sendBmap(tampered);
  assert.equal(edited.status, 400);
  assert.equal(edited.body.message, "bmap refused: the bmap's own checksum does not match: the file was edited or damaged");

  const ranges = [...xml.matchAll(/<Range chksum="[0-9a-f]+"> (\d+)(?:-(\d+))? <\/Range>/g)];
  const [, first, last] = ranges[1]!;
  const other = readFileSync(image);
  other[Number(first) * 4096 + 5] = other[Number(first) * 4096 + 5]! ^ 0xff;
  const fresh = await sendBmap(xml);
  const refused = await upload(server, 'changed', other, `&bmap=${fresh.body.bmap}`);
  assert.equal(refused.status, 400);
  assert.equal(refused.body.message, `image 'changed' was not added: the image does not match its bmap: range ${first}-${last ?? first} has another sha256 checksum`);
  assert.equal((await server.admin('GET', '/api/images')).body.images.length, 1);
});
