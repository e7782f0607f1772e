import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';

const IO_HELPER_SOURCE = resolve(import.meta.dirname, '../../device/io-helper');

/**
 * A PATH directory holding only busybox applets, curl, (when the host has it) zstd and cm4prov-io
 * built for this machine: what the netboot initramfs gives the device client. The curl | dd
 * baseline uses the same tools.
 */
export function deviceToolsDir(dir: string, tools: { busybox: string; curl: string; zstd?: string }): string {
  mkdirSync(dir, { recursive: true });
  for (const applet of execFileSync(tools.busybox, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
    symlinkSync(tools.busybox, join(dir, applet));
  }
  symlinkSync(tools.curl, join(dir, 'curl'));
  if (tools.zstd) symlinkSync(tools.zstd, join(dir, 'zstd'));
  symlinkSync(buildIoHelper(join(dir, '..', 'io-helper')), join(dir, 'cm4prov-io'));
  return dir;
}

function buildIoHelper(out: string): string {
  try {
    execFileSync('make', ['-s', '-C', IO_HELPER_SOURCE, `OUT=${out}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const output = (error as { stderr?: Buffer }).stderr?.toString() ?? String(error);
    throw new Error(`cm4prov-io could not be built (scripts/install-bench-deps.sh installs gcc, libssl-dev and libzstd-dev): ${output}`);
  }
  return join(out, 'cm4prov-io');
}
