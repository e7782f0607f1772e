import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A PATH directory holding only busybox applets, curl and (when the host has it) zstd: what the
 * netboot initramfs gives the device client. The curl | dd baseline uses the same tools.
 */
export function deviceToolsDir(dir: string, tools: { busybox: string; curl: string; zstd?: string }): string {
  mkdirSync(dir, { recursive: true });
  for (const applet of execFileSync(tools.busybox, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
    symlinkSync(tools.busybox, join(dir, applet));
  }
  symlinkSync(tools.curl, join(dir, 'curl'));
  if (tools.zstd) symlinkSync(tools.zstd, join(dir, 'zstd'));
  return dir;
}
