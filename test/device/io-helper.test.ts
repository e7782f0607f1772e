import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { IO_HELPER, ioHelperDir } from '../helpers/io-helper.js';
import { tempDir } from '../helpers/server.js';
import { ioHelperCases, runIo } from './io-helper-cases.js';

// cm4prov-io built for this machine, as the tests' and benchmarks' clients use it.
ioHelperDir();
ioHelperCases(() => [IO_HELPER]);

test('a chunk at an offset direct I/O cannot take (not on a 4 KiB boundary) is read back through a dropped page cache', async (t) => {
  const dir = tempDir(t);
  const target = join(dir, 'emmc.img');
  writeFileSync(target, Buffer.alloc(0));
  truncateSync(target, 8 * 1024 * 1024);
  const data = randomBytes(3 * 1024 * 1024 + 512);
  const sha = createHash('sha256').update(data).digest('hex');
  const offset = 1024 * 1024 + 512;
  writeFileSync(join(dir, 'chunks'), `0 ${offset} ${data.length} ${sha} 0 0\n`);
  const run = await runIo([IO_HELPER], ['write', '--chunks', join(dir, 'chunks'), '--from', '0', '--target', target, '--verified', join(dir, 'verified')], data);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(readFileSync(join(dir, 'verified'), 'utf8'), `${sha}\n`);
  assert.ok(readFileSync(target).subarray(offset, offset + data.length).equals(data));
});
