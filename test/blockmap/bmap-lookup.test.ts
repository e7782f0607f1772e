import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bmapBeside } from '../../src/cli/images.js';
import { runCli } from '../helpers/cli.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { createBmap, sparseImage } from './bmaptool.js';

/** Which bmap `bmaptool copy IMAGE` discovers by itself (it logs the one it takes), or null. */
function bmaptoolFinds(image: string, target: string): string | null {
  const run = spawnSync('bmaptool', ['copy', image, target], { encoding: 'utf8' });
  return /discovered bmap file '([^']+)'/.exec(run.stderr)?.[1] ?? null;
}

test('the CLI finds the bmap beside an image under the names bmaptool looks for, in its order', async (t) => {
  const dir = tempDir(t);
  const raw = join(dir, 'raw.img');
  await sparseImage(raw, 256 * 1024, [[0, 4096], [64 * 1024, 8192]]);
  const bmap = join(dir, 'made.bmap');
  createBmap(raw, bmap);
  copyFileSync(raw, join(dir, 'x.img'));
  execFileSync('xz', ['-k', '-q', join(dir, 'x.img')]);
  const image = join(dir, 'x.img.xz');
  const names = ['x.img.xz.bmap', 'x.img.bmap', 'x.bmap'];
  for (const name of names) copyFileSync(bmap, join(dir, name));

  for (const name of names) {
    const expected = join(dir, name);
    assert.equal(bmapBeside(image), expected);
    assert.equal(bmaptoolFinds(image, join(dir, 'target')), expected, 'bmaptool takes the same one');
    rmSync(expected);
  }
  assert.equal(bmapBeside(image), undefined);
  assert.equal(bmaptoolFinds(image, join(dir, 'target')), null);

  // Not a file: passed over. Only the image's own name loses extensions, never its folder's.
  mkdirSync(join(dir, 'x.img.bmap'));
  copyFileSync(bmap, join(dir, 'x.bmap'));
  assert.equal(bmapBeside(image), join(dir, 'x.bmap'));
  mkdirSync(join(dir, 'os.d'));
  copyFileSync(raw, join(dir, 'os.d', 'disk'));
  copyFileSync(bmap, join(dir, 'os.bmap'));
  assert.equal(bmapBeside(join(dir, 'os.d', 'disk')), undefined);
  assert.equal(bmaptoolFinds(join(dir, 'os.d', 'disk'), join(dir, 'target')), null);
  // A leading dot does not start an extension (Python's splitext): `.img` looks for `.img.bmap` only.
  copyFileSync(raw, join(dir, '.img'));
  copyFileSync(bmap, join(dir, '.bmap'));
  assert.equal(bmapBeside(join(dir, '.img')), undefined);
  assert.equal(bmaptoolFinds(join(dir, '.img'), join(dir, 'target')), null);
  copyFileSync(bmap, join(dir, '.img.bmap'));
  assert.equal(bmapBeside(join(dir, '.img')), join(dir, '.img.bmap'));
});

test('image add takes the bmap bmaptool would take for a compressed image and says what it maps', async (t) => {
  const dir = tempDir(t);
  const image = join(dir, 'os.img');
  await sparseImage(image, 256 * 1024, [[0, 4096], [64 * 1024, 8192]]);
  createBmap(image, join(dir, 'os.img.bmap'));
  execFileSync('zstd', ['-q', '--rm', image]);
  const server = await startTestServer(t);
  const added = await runCli(['image', 'add', `${image}.zst`], { CM4PROV_SERVER: server.url, CM4PROV_TOKEN: server.token });
  assert.equal(added.code, 0, added.stderr);
  assert.ok(added.stderr.includes(`Using ${image}.bmap: 12.0 KiB mapped in 2 ranges with sha256 checksums.`), added.stderr);
  assert.equal((await server.admin('GET', '/api/images/os')).body.block_map.source, 'bmap');
});
