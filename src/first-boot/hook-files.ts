import { readFileSync } from 'node:fs';
import type { ProfileFile } from '../device-files/store.js';

/**
 * Which first-boot hook a confirming deploy writes into the image's boot partition (partition 1,
 * FAT) after the image and the profile's files:
 * - `cmdline`: hook/firstboot.sh.tmpl as /cm4prov-firstboot.sh, started from cmdline.txt by
 *   `systemd.run=/boot/firmware/…` the way Raspberry Pi Imager starts its firstrun.sh; for images
 *   that mount the boot partition at /boot/firmware (Raspberry Pi OS Bookworm and later).
 * - `cmdline-boot`: the same for images that mount it at /boot (Bullseye and earlier).
 * - `none`: the profile carries the hook (e.g. hook/user-data-phone-home.tmpl for a cloud-init
 *   seed); the order is refused unless one of its files uses {{first_boot_token}}.
 */
export const FIRST_BOOT_HOOKS = ['cmdline', 'cmdline-boot', 'none'] as const;
export type FirstBootHook = (typeof FIRST_BOOT_HOOKS)[number];
export const DEFAULT_FIRST_BOOT_HOOK: FirstBootHook = 'cmdline';

export const HOOK_SCRIPT_PATH = '/cm4prov-firstboot.sh';
const CMDLINE_PATH = '/cmdline.txt';

const template = (name: string) => readFileSync(new URL(`./hook/${name}`, import.meta.url), 'utf8');
const SCRIPT = template('firstboot.sh.tmpl');
const CMDLINE_ADDITION: Record<Exclude<FirstBootHook, 'none'>, string> = {
  cmdline: template('cmdline-addition.tmpl'),
  'cmdline-boot': template('cmdline-addition-boot.tmpl'),
};

/** The files `hook` adds to a deploy's per-device files (none for `none`). */
export function hookFiles(hook: FirstBootHook): ProfileFile[] {
  if (hook === 'none') return [];
  return [
    { partition: 1, fs: 'vfat', path: HOOK_SCRIPT_PATH, mode: '0755', append: false, template: SCRIPT },
    { partition: 1, fs: 'vfat', path: CMDLINE_PATH, mode: '0644', append: true, template: CMDLINE_ADDITION[hook] },
  ];
}

/** Why `files` (a profile's) cannot go with `hook`, or null when they can. */
export function hookConflict(hook: FirstBootHook, files: readonly ProfileFile[], profile: string | undefined): string | null {
  const named = profile === undefined ? 'no profile' : `profile '${profile}'`;
  if (hook === 'none') {
    return files.some((file) => file.template.includes('{{first_boot_token}}'))
      ? null
      : `first_boot_hook is none, but ${named} has no file using {{first_boot_token}}: nothing would call back, so the job could never be confirmed`;
  }
  const clash = files.find((file) => file.partition === 1 && file.path.toLowerCase() === HOOK_SCRIPT_PATH);
  return clash ? `${named} writes ${HOOK_SCRIPT_PATH} on partition 1, which the first-boot hook writes; order with first_boot_hook none if the profile carries its own hook` : null;
}
