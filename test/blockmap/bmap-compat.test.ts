import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parseBmap } from '../../src/blockmap/bmap.js';
import { createChunker, MERGE_GAP_BYTES } from '../../src/blockmap/chunker.js';
import { runClient } from '../helpers/device-client.js';
import { makeExt4Image } from '../helpers/ext4.js';
import { makeFakeEmmc, sha256OfFile } from '../helpers/files.js';
import { MAC } from '../helpers/fixtures.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { bmaptoolCopy } from './bmaptool.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const EMMC_BYTES = 96 * MiB;

test('with a bmap, an unmapped gap merges into a chunk only when it is zeros, however the image arrives', () => {
  const size = 4 * MiB;
  const data = Buffer.alloc(size);
  randomBytes(64 * KiB).copy(data, 0);
  randomBytes(64 * KiB).copy(data, 96 * KiB); // zero gap [64 KiB, 96 KiB): merged
  randomBytes(64 * KiB).copy(data, 256 * KiB); // gap [160, 256) holds bytes at 200 KiB: not merged
  data.fill(0x5a, 200 * KiB, 204 * KiB);
  randomBytes(16 * KiB).copy(data, 448 * KiB); // after a zero gap of exactly the merge limit: merged
  data.fill(0x5a, 600 * KiB, 700 * KiB); // after the last range: nothing
  const ranges = [[0, 64], [96, 160], [256, 320], [320 + MERGE_GAP_BYTES / KiB, 464]].map(([from, to]) => ({ start: from! * KiB, end: to! * KiB, checksum: null }));
  const expected = [[0, 160 * KiB], [256 * KiB, 208 * KiB]];
  for (const piece of [4 * KiB, 28 * KiB, 1 * MiB + 4 * KiB]) {
    const chunker = createChunker(ranges);
    for (let at = 0; at < size; at += piece) chunker.push(at, data.subarray(at, Math.min(at + piece, size)));
    const { chunks } = chunker.finish(size);
    assert.deepEqual(chunks.map((chunk) => [chunk.offset, chunk.length]), expected, `pieces of ${piece}`);
  }
});

/** A real ext4 image and bmaptool's bmap of it, with bytes scribbled into a short unmapped gap. */
function imageWithDirtyGap(t: TestContext) {
  const dir = tempDir(t);
  const { image, bmap } = makeExt4Image(dir, 64, { bmap: true });
  const xml = readFileSync(bmap!, 'utf8');
  const { ranges, blockSize } = parseBmap(xml);
  const index = ranges.findIndex((range, i) => i > 0 && range.start > ranges[i - 1]!.end && range.start - ranges[i - 1]!.end <= MERGE_GAP_BYTES);
  assert.ok(index > 0, 'the ext4 image has a short gap between two mapped ranges');
  const gap = { start: ranges[index - 1]!.end, end: ranges[index]!.start };
  assert.ok(readFileSync(image).subarray(gap.start, gap.end).every((byte) => byte === 0), 'unmapped and empty before the scribble');
  const fd = openSync(image, 'r+');
  writeSync(fd, Buffer.alloc(gap.end - gap.start, 0x5a), 0, gap.end - gap.start, gap.start);
  closeSync(fd);

  // What bmaptool copy writes with this bmap: the reference the deploy must equal.
  const reference = join(dir, 'bmaptool-copy.img');
  const copied = bmaptoolCopy(bmap!, image, reference);
  assert.equal(copied.code, 0, copied.output);
  return { dir, image, xml, ranges, blockSize, gap, reference };
}

async function deployWithBmap(t: TestContext, env: Record<string, string>, order: Record<string, unknown>) {
  const source = imageWithDirtyGap(t);
  const server = await startTestServer(t);
  const declared = await fetch(`${server.url}/api/images/bmaps`, { method: 'POST', headers: { authorization: `Bearer ${server.token}` }, body: source.xml });
  assert.equal(declared.status, 201);
  const bmapId = ((await declared.json()) as { bmap: string }).bmap;
  const added = await fetch(`${server.url}/api/images?name=os&default=true&bmap=${bmapId}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/octet-stream' },
    body: readFileSync(source.image),
  });
  assert.equal(added.status, 201, await added.clone().text());
  const view = (await added.json()) as { size: number; block_map: { source: string; mapped_bytes: number } };
  assert.equal(view.block_map.source, 'bmap');
  await server.server.services.caches.idle();
  const { blockMaps, images } = server.server.services;
  const chunks = await blockMaps.chunks((await images.requireImage('os')).block_map_id!);
  assert.ok(chunks.every((chunk) => chunk.offset + chunk.length <= source.gap.start || chunk.offset >= source.gap.end), 'no chunk covers the scribbled gap');

  const emmc = join(tempDir(t), 'emmc.img');
  await makeFakeEmmc(emmc, EMMC_BYTES);
  const client = runClient(t, { server: server.url, target: emmc, mac: MAC, env });
  await waitFor('the client', async () => (await server.admin('GET', '/api/devices')).body.devices.length === 1);
  const ordered = await server.admin('POST', `/api/devices/${MAC}/deploy`, order);
  assert.equal(await client.exited, 0, client.output());
  const job = (await server.admin('GET', `/api/jobs/${ordered.body.id}`)).body;
  assert.equal(job.state, 'ok', job.error);
  assert.equal(job.bytes_verified, view.block_map.mapped_bytes);

  const target = readFileSync(emmc).subarray(0, view.size);
  const image = readFileSync(source.image);
  for (const range of source.ranges) assert.ok(target.subarray(range.start, range.end).equals(image.subarray(range.start, range.end)), `range at ${range.start}`);
  assert.ok(target.subarray(source.gap.start, source.gap.end).every((byte) => byte === 0), 'the scribbled unmapped bytes were not written');
  assert.equal(await sha256OfFile(emmc, view.size), await sha256OfFile(source.reference), 'the target holds what bmaptool copy writes');
  return job;
}

test('a bmap whose unmapped gap holds bytes deploys, with zstd, exactly as bmaptool copy writes it', async (t) => {
  const job = await deployWithBmap(t, {}, { full_match: true });
  assert.deepEqual(job.transfer, { mode: 'sparse', encoding: 'zstd', full_match: true });
});

test('a bmap whose unmapped gap holds bytes deploys, without zstd (the image\'s own ranges), exactly as bmaptool copy writes it', async (t) => {
  const job = await deployWithBmap(t, { PATH_WITHOUT_ZSTD: '1' }, {});
  assert.deepEqual(job.transfer, { mode: 'sparse', encoding: 'identity', full_match: false });
});

test('maps an earlier version made from bmaps are checked once at start: a map that does not match its file is replaced, one that does is kept', async (t) => {
  const source = imageWithDirtyGap(t);
  const server = await startTestServer(t);
  const upload = async (name: string) => {
    const declared = (await (await fetch(`${server.url}/api/images/bmaps`, { method: 'POST', headers: { authorization: `Bearer ${server.token}` }, body: source.xml })).json()) as { bmap: string };
    const added = await fetch(`${server.url}/api/images?name=${name}&bmap=${declared.bmap}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/octet-stream' },
      body: readFileSync(source.image),
    });
    assert.equal(added.status, 201);
  };
  await upload('stale');
  await upload('sound');
  await server.server.services.caches.idle();
  const { database, images } = server.server.services;
  const mapOf = async (name: string) => (await images.requireImage(name)).block_map_id!;
  const soundMap = await mapOf('sound');
  // What an earlier version recorded: a chunk hashed over a gap taken as zeros, unlike the file's bytes.
  await database.db.updateTable('block_map_chunks').set({ sha256: '0'.repeat(64) }).where('map_id', '=', await mapOf('stale')).where('idx', '=', 1).execute();
  await database.db.updateTable('block_maps').set({ needs_recheck: 1 }).execute();

  await server.restart();
  const view = await waitFor('the stale map to be replaced', async () => {
    const image = (await server.admin('GET', '/api/images/stale')).body;
    return image.block_map?.source === 'zeros' ? image : undefined;
  });
  assert.equal(view.broken, null);
  const after = server.server.services;
  assert.equal((await after.images.requireImage('sound')).block_map_id, soundMap, 'a map that matches its file is kept');
  await waitFor('the sound map to be marked checked', async () => (await after.blockMaps.get(soundMap))?.needs_recheck === 0 || undefined);
  const stale = await after.images.requireImage('stale');
  const replaced = (await after.blockMaps.get(stale.block_map_id!))!;
  const file = readFileSync(after.images.pathOf(stale));
  for (const chunk of await after.blockMaps.chunks(replaced.id)) {
    assert.equal(createHash('sha256').update(file.subarray(chunk.offset, chunk.offset + chunk.length)).digest('hex'), chunk.sha256, `chunk ${chunk.idx} hashes as its bytes`);
  }
});
