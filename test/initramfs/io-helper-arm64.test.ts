import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { before, describe } from 'node:test';
import { ioHelperCases } from '../device/io-helper-cases.js';
import { BUILD_SCRIPT, isFile, readInitrd } from './initramfs.js';

const LIBDIR = 'lib/aarch64-linux-gnu';

/**
 * The cm4prov-io that build.sh cross-compiles into the initrd, taken out of it with the libraries
 * shipped beside it and run under user-mode emulation (qemu-aarch64): the same cases as the
 * native build, on the arm64 code the CM4 runs.
 */
describe('cm4prov-io for arm64, from the initrd, under qemu-aarch64', () => {
  let command: string[] = [];
  before(() => {
    const root = mkdtempSync(join(tmpdir(), 'cm4prov-io-arm64-'));
    process.on('exit', () => rmSync(root, { recursive: true, force: true }));
    const out = join(root, 'out');
    execFileSync(BUILD_SCRIPT, ['--out', out], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 15 * 60_000 });
    const entries = readInitrd(join(out, 'initrd.img'));
    const helper = entries.get('bin/cm4prov-io');
    assert.ok(helper && isFile(helper), 'the initrd holds bin/cm4prov-io (build.sh had the cross compiler)');
    for (const entry of entries.values()) {
      if (!isFile(entry) || !(entry.name === 'bin/cm4prov-io' || entry.name.startsWith(`${LIBDIR}/`))) continue;
      mkdirSync(dirname(join(root, entry.name)), { recursive: true });
      writeFileSync(join(root, entry.name), entry.data, { mode: 0o755 });
    }
    assert.match(execFileSync('file', ['-b', join(root, 'bin/cm4prov-io')], { encoding: 'utf8' }), /ELF 64-bit LSB .*ARM aarch64/);
    // The loader run directly, told where the initrd's libraries are: qemu-aarch64 -L would follow
    // the initrd's absolute loader link into the host's own /lib.
    command = ['qemu-aarch64', join(root, LIBDIR, 'ld-linux-aarch64.so.1'), '--library-path', join(root, LIBDIR), join(root, 'bin/cm4prov-io')];
    assert.match(execFileSync(command[0]!, [...command.slice(1), '--version'], { encoding: 'utf8' }), /^cm4prov-io \d+\n$/);
  });
  ioHelperCases(() => command);
});
