import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A real ext4 image (mke2fs -d) with some compressible and some random files, like a small OS
 * image: block groups, inode tables and data extents spread over mostly empty space.
 */
export function makeExt4Image(dir: string, sizeMiB: number, options: { bmap?: boolean } = {}): { image: string; bmap?: string } {
  const content = join(dir, 'rootfs');
  mkdirSync(join(content, 'etc'), { recursive: true });
  mkdirSync(join(content, 'usr', 'lib'), { recursive: true });
  writeFileSync(join(content, 'etc', 'hostname'), 'reterminal\n');
  writeFileSync(join(content, 'etc', 'motd'), 'Provisioned by cm4-provisioning\n'.repeat(2000));
  writeFileSync(join(content, 'usr', 'lib', 'firmware.bin'), randomBytes(1024 * 1024));
  writeFileSync(join(content, 'usr', 'lib', 'text.txt'), Array.from({ length: 40_000 }, (_, i) => `line ${i} of a log that compresses\n`).join(''));
  const image = join(dir, 'rootfs.img');
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', content, '-E', 'root_owner=0:0', image, `${sizeMiB}M`], {
    env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' },
  });
  if (!options.bmap) return { image };
  const bmap = `${image}.bmap`;
  execFileSync('bmaptool', ['create', '-o', bmap, image], { stdio: 'ignore' });
  return { image, bmap };
}
